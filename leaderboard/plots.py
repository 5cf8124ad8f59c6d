"""The site's figures as inline SVG strings (``leaderboard.svgplot``): learning curves, every configuration's
validation curve, learning-rate sensitivity, performance profiles, a run's own curves, and on the front page the
forest plot of every root vs root-free difference and the tally of verdicts. No JavaScript, no external
references; text is escaped. Lines and markers carry ``data-opt`` (and ``data-cfg``) so that a page can show
or hide them, and tests can check their styles.

Styles: one colour per declared root / root-free pair, the root-based side solid with filled markers, the
root-free side dashed with hollow markers; the SGD reference dark grey; other optimizers their own colours.
"""

from __future__ import annotations

import math

import numpy as np

from rootbench.leaderboard import series
from rootbench.leaderboard.aggregate import CNN_REFERENCE
from rootbench.leaderboard.svgplot import FONT, Axes, Figure, esc, nice_ticks, tick_label

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
)
REFERENCE_COLOR = "#333333"
STYLE_NOTE = "One colour per root / root-free pair | solid: root-based · dashed: root-free"
DIRECTION_COLORS = {
    "root-free better": "#1a7f37",
    "not significant": "#8a94a6",
    "root better": "#c2410c",
    "untestable": "#c9ced8",
}
VERDICT_COLORS = {"supported": "#1a7f37", "contradicted": "#c2410c", "not testable": "#c9ced8"}
SPLIT_COLORS = {"train_batch": "#b8c0cc", "train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def styles(optimizers, pairs=()) -> dict:
    """A stable colour, dash and marker per optimizer: a pair shares a colour, root-free is dashed and hollow.

    Colours go to the declared pairs in their declared order (only pairs with a side in ``optimizers``); an
    optimizer keeps the colour of its first pair, so a further partner (a variant declaring the same
    counterpart) gets a colour of its own and no two pairs are drawn alike.
    """
    present = set(optimizers)
    out, colour = {}, iter(PALETTE * 8)
    for root, free in pairs:
        members = [o for o in (root, free) if o in present]
        if not members or all(o in out for o in members):
            continue
        c = next(colour)
        if root in present and root not in out:
            out[root] = {"color": c, "dash": False, "marker": "o", "hollow": False, "pair": (root, free)}
        if free in present and free not in out:
            out[free] = {"color": c, "dash": True, "marker": "s", "hollow": True, "pair": (root, free)}
    for o in sorted(present):
        if o not in out:
            c = REFERENCE_COLOR if o == CNN_REFERENCE else next(colour)
            out[o] = {"color": c, "dash": False, "marker": "o", "hollow": False, "pair": None}
    return out


def _style(style_map: dict, o: str) -> dict:
    return style_map.get(o, {"color": "#555555", "dash": False, "marker": "o", "hollow": False, "pair": None})


def opt_attr(o: str) -> str:
    return f'data-opt="{esc(o)}"'


def _legend(fig: Figure, names, style_map: dict, x: float, y: float, columns: int, markers: bool = True):
    entries = [
        (o, {**_style(style_map, o), "attrs": opt_attr(o), **({} if markers else {"marker": None})}) for o in names
    ]
    fig.legend(entries, x, y, columns, note=STYLE_NOTE)


# ---------------------------------------------------------------------------------------------
# task pages

CURVE_PANELS = (
    ("train", "loss", "step", "training loss"),
    ("test", None, "step", "test {metric}"),
    ("train", "loss", "time", "training loss"),
    ("test", None, "time", "test {metric}"),
)


def curve_panel(curves: dict, split: str, metric: str, x: str, ylabel: str, style_map: dict, title: str) -> str:
    """One panel: the selected configurations' mean curves (band = min..max over seeds) against step or train
    clock. ``curves``: ``{optimizer: DataFrame(step, time, mean, lo, hi, n)}``."""
    names = list(curves)
    columns = 3
    fig = Figure(480, 0, title=title)
    fig.height = 300 + fig.legend_height(len(names), columns)
    lo = [float(d["lo"].min()) for d in curves.values()]
    hi = [float(d["hi"].max()) for d in curves.values()]
    log = metric == "loss" and lo and min(lo) > 0 and max(hi) / min(lo) > 10
    ax = fig.add(Axes(64, 14, 396, 226, "step" if x == "step" else "train clock [s]", ylabel, ylog=bool(log)))
    for o, d in curves.items():
        st = _style(style_map, o)
        if (d["n"] > 1).any():
            ax.band(d[x], d["lo"], d["hi"], st["color"], attrs=opt_attr(o))
        ax.line(d[x], d["mean"], st["color"], dash=st["dash"], attrs=opt_attr(o))
    _legend(fig, names, style_map, 14, 300, columns, markers=False)
    return fig.svg("plot plot-panel")


def config_overlay(lines: list[dict], metric_name: str, style_map: dict, title: str) -> str:
    """Every configuration's mean validation curve; only the selected ones are shown until chosen
    (``lines``: dicts with optimizer, config_id, selected, step, mean)."""
    opts = sorted({line["optimizer"] for line in lines})
    fig = Figure(640, 0, title=title)
    fig.height = 330 + fig.legend_height(len(opts), 4)
    ax = fig.add(Axes(64, 14, 556, 256, "step", f"validation {metric_name}"))
    for line in lines:
        st = _style(style_map, line["optimizer"])
        cls = "cfg" if line["selected"] else "cfg off"
        ax.line(
            line["step"],
            line["mean"],
            st["color"],
            dash=st["dash"],
            width=1.8 if line["selected"] else 1.2,
            attrs=f'class="{cls}" {opt_attr(line["optimizer"])} data-cfg="{esc(line["config_id"])}"',
        )
    _legend(fig, opts, style_map, 14, 330, 4, markers=False)
    return fig.svg("plot plot-wide")


def sensitivity_svg(sens: dict, metric_name: str, higher_is_better: bool, style_map: dict, title: str = "") -> str:
    """Every configuration's mean final validation metric against its learning rate (log x, padded axes), and
    per optimizer the best configuration in each half-decade of learning rate (the envelope)."""
    names = list(sens)
    fig = Figure(640, 0, title=title or "learning-rate sensitivity")
    fig.height = 330 + fig.legend_height(len(names), 4)
    ax = fig.add(Axes(64, 14, 556, 256, "learning rate (hp lr)", f"final validation {metric_name}", xlog=True))
    ax.xpad = 0.04
    for o, d in sens.items():
        st, attrs = _style(style_map, o), opt_attr(o)
        lo, hi, best = series.envelope(d, higher_is_better)
        if len(best):
            ax.segments(lo, hi, best, st["color"], dash=st["dash"], width=2.2, attrs=attrs)
        ok = d[~d["failed"] & np.isfinite(d["val"])]
        if len(ok):
            ax.scatter(
                ok["lr"],
                ok["val"],
                st["color"],
                marker=st["marker"],
                size=3.2,
                opacity=0.85,
                attrs=attrs,
                hollow=st["hollow"],
            )
        bad = d[d["failed"] | ~np.isfinite(d["val"])]
        if len(bad):
            ax.edge_marks(bad["lr"], st["color"], attrs=attrs)
    _legend(fig, names, style_map, 14, 330, 4)
    return fig.svg("plot plot-wide")


# ---------------------------------------------------------------------------------------------
# across tasks


def profile_svg(profile: dict, style_map: dict, xlabel: str = "τ (time-to-target / fastest)", title: str = "") -> str:
    """Performance profiles rho(tau) as step curves over [1, tau_max]; legend sorted by score."""
    taus = np.asarray(profile["taus"], dtype=float)
    order = sorted(profile["rho"], key=lambda o: (-np.nan_to_num(profile["score"].get(o, 0.0)), o))
    fig = Figure(560, 0, title=title or "performance profile")
    fig.height = 300 + fig.legend_height(len(order), 3)
    ax = fig.add(Axes(64, 14, 476, 230, xlabel, "fraction of tasks", xlim=(taus[0], taus[-1]), ylim=(-0.02, 1.02)))
    for o in order:
        st = _style(style_map, o)
        ax.step(taus, profile["rho"][o], st["color"], dash=st["dash"], attrs=opt_attr(o))
    labels = [
        (
            f"{o} ({profile['score'][o]:.2f})" if math.isfinite(profile["score"].get(o, float("nan"))) else o,
            {**_style(style_map, o), "marker": None, "attrs": opt_attr(o)},
        )
        for o in order
    ]
    fig.legend(labels, 14, 300, 3, note="in brackets: the score · " + STYLE_NOTE)
    return fig.svg("plot plot-panel")


# ---------------------------------------------------------------------------------------------
# run pages


def run_curves_svg(per_seed: dict, metric_name: str, title: str = "") -> str:
    """A configuration's curves: losses and the task metric per split against step, one line per seed
    (``per_seed``: label -> (``series.run_curves`` of the run, step where it diverged or None)); a diverged seed
    gets a marker where it diverged."""
    panels = [("loss", "loss"), (metric_name, metric_name)] if metric_name != "loss" else [("loss", "loss")]
    fig = Figure(480 * len(panels), 0, title=title or "curves")
    keys = sorted(
        {k[0] for cur, _ in per_seed.values() for k in cur},
        key=lambda s: list(SPLIT_COLORS).index(s) if s in SPLIT_COLORS else 9,
    )
    fig.height = 290 + fig.legend_height(len(keys), 4)
    for i, (metric, ylabel) in enumerate(panels):
        ys = [v[1] for cur, _ in per_seed.values() for k, v in cur.items() if k[1] == metric]
        lo = min((float(np.min(y)) for y in ys), default=1.0)
        hi = max((float(np.max(y)) for y in ys), default=1.0)
        log = metric == "loss" and lo > 0 and hi / lo > 10
        ax = fig.add(Axes(64 + 480 * i, 14, 396, 226, "step", ylabel, ylog=log))
        for label, (cur, diverged_at) in per_seed.items():
            for (sp, m), (steps, values) in cur.items():
                if m == metric:
                    ax.line(
                        steps,
                        values,
                        SPLIT_COLORS.get(sp, "#555"),
                        width=1.1 if sp == "train_batch" else 1.6,
                        attrs=f'data-split="{esc(sp)}" data-seed="{esc(label)}"',
                    )
            if diverged_at is not None and math.isfinite(diverged_at):
                ax.vline(diverged_at, "#b42318", f"{label} diverged at step {int(diverged_at):,}")
    fig.legend(
        [(sp, {"color": SPLIT_COLORS.get(sp, "#555"), "marker": None}) for sp in keys],
        14,
        290,
        4,
        note="one line per seed" if len(per_seed) > 1 else "",
    )
    return fig.svg("plot plot-run")


# ---------------------------------------------------------------------------------------------
# the front page


def forest_svg(rows: list[dict], groups: list[tuple[str, int]], title: str) -> str:
    """Every root vs root-free difference with its 95 % CI, one row per (task, pair), oriented so that right
    is better for the root-free method, coloured by ``direction``; ``groups``: (heading, rows in it)."""
    row_h, top, label_w, plot_w, right_w = 22, 26, 250, 330, 190
    n_heads = len(groups)
    height = top + row_h * len(rows) + 24 * n_heads + 56
    x0, x1 = label_w, label_w + plot_w
    lows = [r["low"] for r in rows if math.isfinite(r["low"])] + [
        r["oriented"] for r in rows if math.isfinite(r["oriented"])
    ]
    highs = [r["high"] for r in rows if math.isfinite(r["high"])] + [
        r["oriented"] for r in rows if math.isfinite(r["oriented"])
    ]
    lo, hi = min(lows + [0.0]), max(highs + [0.0])
    pad = (hi - lo) * 0.06 or 0.05
    lo, hi = lo - pad, hi + pad

    def X(v):
        return x0 + (v - lo) / (hi - lo) * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {label_w + plot_w + right_w} {height}" '
        f'class="plot plot-forest" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>',
        f'<g {FONT} font-size="12">',
    ]
    ticks = nice_ticks(lo, hi, 6)
    bottom = height - 44
    for t in ticks:
        out.append(
            f'<line x1="{X(t):.1f}" y1="{top - 6}" x2="{X(t):.1f}" y2="{bottom}" stroke="#e3e6eb"/>'
            f'<text x="{X(t):.1f}" y="{bottom + 14}" text-anchor="middle" fill="#444">'
            f"{esc(tick_label(t))}</text>"
        )
    out.append(f'<line x1="{X(0):.1f}" y1="{top - 6}" x2="{X(0):.1f}" y2="{bottom}" stroke="#555" stroke-width="1.2"/>')
    out.append(
        f'<text x="{X(0) - 6:.1f}" y="{top - 10}" text-anchor="end" fill="{DIRECTION_COLORS["root better"]}">'
        f'← root better</text><text x="{X(0) + 6:.1f}" y="{top - 10}" fill="'
        f'{DIRECTION_COLORS["root-free better"]}">root-free better →</text>'
    )
    y, i = top, 0
    for heading, n in groups:
        y += 18
        out.append(f'<text x="4" y="{y}" font-weight="600" fill="#222">{esc(heading)}</text>')
        y += 6
        for r in rows[i : i + n]:
            cy = y + row_h / 2
            colour = DIRECTION_COLORS.get(r["direction"], "#8a94a6")
            label = f"{r['task']} · {r['root']} → {r['free']}"
            out.append(
                f'<g id="{esc(r["fig_id"])}" class="frow" data-direction="{esc(r["direction"])}" '
                f'data-k="{esc(r["task"])} {esc(r["root"])} {esc(r["free"])}">'
            )
            out.append(
                f'<a href="{esc(r["href"])}"><text x="4" y="{cy + 4:.1f}" fill="#1f5fbf">{esc(label)}</text></a>'
            )
            if math.isfinite(r["low"]) and math.isfinite(r["high"]):
                out.append(
                    f'<line x1="{X(r["low"]):.1f}" y1="{cy:.1f}" x2="{X(r["high"]):.1f}" y2="{cy:.1f}" '
                    f'stroke="{colour}" stroke-width="2.4"/>'
                )
            if math.isfinite(r["oriented"]):
                out.append(f'<circle cx="{X(r["oriented"]):.1f}" cy="{cy:.1f}" r="4.2" fill="{colour}"/>')
            out.append(f'<text x="{x1 + 10}" y="{cy + 4:.1f}" fill="#333">{esc(r["right"])}</text></g>')
            y += row_h
        i += n
    out.append(
        f'<text x="{x0 + plot_w / 2:.1f}" y="{bottom + 32}" text-anchor="middle" fill="#222">'
        f"root-free − root, test metric, signed so that positive favours root-free (95 % Welch CI)</text>"
    )
    out.append("</g></svg>")
    return "".join(out)


def tally_svg(bars: list[dict], colors: dict, title: str) -> str:
    """Stacked horizontal bars, one per claim: ``bars`` = dicts with label and ``counts`` {category: n}."""
    width, label_w, bar_w, row_h = 600, 215, 370, 30
    height = 40 + row_h * len(bars) + 26
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="plot plot-tally" '
        f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title><g {FONT} font-size="12">'
    ]
    for i, b in enumerate(bars):
        y = 12 + i * row_h
        total = sum(b["counts"].values()) or 1
        out.append(f'<text x="4" y="{y + 15}" fill="#222">{esc(b["label"])}</text>')
        x = label_w
        for cat, n in b["counts"].items():
            if not n:
                continue
            w = bar_w * n / total
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="20" fill="{colors.get(cat, "#999")}">'
                f"<title>{esc(cat)}: {n}</title></rect>"
            )
            if w > 16:
                fill = "#222" if cat in ("untestable", "not testable") else "#fff"
                out.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + 14.5}" text-anchor="middle" fill="{fill}" '
                    f'font-weight="600">{n}</text>'
                )
            x += w
    ly = 16 + row_h * len(bars)
    x = label_w
    for cat, colour in colors.items():
        out.append(
            f'<rect x="{x}" y="{ly}" width="11" height="11" fill="{colour}"/>'
            f'<text x="{x + 15}" y="{ly + 10}" fill="#333">{esc(cat)}</text>'
        )
        x += 22 + 7 * len(cat)
    out.append("</g></svg>")
    return "".join(out)
