"""The site's figures as inline SVG strings (``leaderboard.svgplot``): learning curves, learning-rate
sensitivity and performance profiles. No JavaScript, no external references; text is escaped."""
from __future__ import annotations

import math

import numpy as np

from rootbench.leaderboard.svgplot import Axes, Figure

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def styles(optimizers, pairs=()) -> dict:
    """A stable colour, dash and marker per optimizer: a pair shares a colour, root-free is dashed.

    An optimizer keeps the colour of its first pair; a further partner (a variant declaring the same
    counterpart) gets a colour of its own, so no two pairs are drawn alike.
    """
    out, colour = {}, iter(PALETTE * 8)
    for root, free in pairs:
        if (root not in optimizers and free not in optimizers) or (root in out and free in out):
            continue
        c = next(colour)
        out.setdefault(root, {"color": c, "dash": False, "marker": "o"})
        out.setdefault(free, {"color": c, "dash": True, "marker": "s"})
    for o in sorted(optimizers):
        if o not in out:
            out[o] = {"color": next(colour), "dash": False, "marker": "o"}
    return out


def _style(style_map: dict, o: str) -> dict:
    return style_map.get(o, {"color": "#555555", "dash": False, "marker": "o"})


def _legend(fig: Figure, names, style_map: dict, x: float, y: float, columns: int, markers: bool = True):
    fig.legend([(o, {**_style(style_map, o), **({} if markers else {"marker": None})}) for o in names],
               x, y, columns)


def curves_svg(curves: dict, metric_name: str, style_map: dict, title: str = "") -> str:
    """2x2 panels: training loss and test metric against steps and against train-clock seconds."""
    names = list(curves)
    columns = min(len(names), 5) or 1
    rows = math.ceil(len(names) / columns)
    fig = Figure(900, 560 + 16 * rows, title=title or "learning curves")
    panels = (("train_loss", "step", "training loss", "step"), ("test_metric", "step", f"test {metric_name}", "step"),
              ("train_loss", "time", "training loss", "train clock [s]"),
              ("test_metric", "time", f"test {metric_name}", "train clock [s]"))
    for k, (series_name, x, ylabel, xlabel) in enumerate(panels):
        lo = [float(s[series_name]["lo"].min()) for s in curves.values() if series_name in s]
        hi = [float(s[series_name]["hi"].max()) for s in curves.values() if series_name in s]
        log = series_name == "train_loss" and lo and min(lo) > 0 and max(hi) / min(lo) > 10
        ax = fig.add(Axes(70 + (k % 2) * 445, 20 + (k // 2) * 265, 360, 200, xlabel, ylabel, ylog=bool(log)))
        for o, series in curves.items():
            d = series.get(series_name)
            if d is None or d.empty:
                continue
            st = _style(style_map, o)
            if (d["n"] > 1).any():
                ax.band(d[x], d["lo"], d["hi"], st["color"])
            ax.line(d[x], d["mean"], st["color"], dash=st["dash"])
    _legend(fig, names, style_map, 70, 555, columns, markers=False)
    return fig.svg()


def sensitivity_svg(sens: dict, metric_name: str, higher_is_better: bool, style_map: dict, title: str = "") -> str:
    """Mean final validation metric of each configuration against its learning rate (log x)."""
    names = list(sens)
    fig = Figure(720, 330, title=title or "learning-rate sensitivity")
    ax = fig.add(Axes(70, 15, 460, 260, "learning rate (hp lr)", f"final validation {metric_name}", xlog=True))
    for o, d in sens.items():
        st = _style(style_map, o)
        ok = d[~d["failed"] & np.isfinite(d["val"])]
        if len(ok):
            best = ok.groupby("lr")["val"].max() if higher_is_better else ok.groupby("lr")["val"].min()
            ax.line(best.index, best.values, st["color"], dash=st["dash"], width=1.2, opacity=0.8)
            ax.scatter(ok["lr"], ok["val"], st["color"], marker=st["marker"], size=2.6, opacity=0.7)
        bad = d[d["failed"] | ~np.isfinite(d["val"])]
        if len(bad):
            ax.edge_marks(bad["lr"], st["color"])
    _legend(fig, names, style_map, 560, 25, 1)
    return fig.svg("plot plot-small")


def profile_svg(profile: dict, style_map: dict, xlabel: str = "τ (time-to-target / fastest)", title: str = "") -> str:
    """Performance profiles rho(tau) as step curves over [1, tau_max]; legend sorted by score."""
    taus = np.asarray(profile["taus"], dtype=float)
    order = sorted(profile["rho"], key=lambda o: (-np.nan_to_num(profile["score"].get(o, 0.0)), o))
    fig = Figure(720, max(330, 40 + 16 * len(order)), title=title or "performance profile")
    ax = fig.add(Axes(70, 15, 430, 260, xlabel, "fraction of tasks", xlim=(taus[0], taus[-1]), ylim=(-0.02, 1.02)))
    for o in order:
        st = _style(style_map, o)
        ax.step(taus, profile["rho"][o], st["color"], dash=st["dash"])
    labels = [(f"{o} ({profile['score'][o]:.2f})" if math.isfinite(profile["score"].get(o, float("nan"))) else o,
               {**_style(style_map, o), "marker": None}) for o in order]
    fig.legend(labels, 530, 25, 1)
    return fig.svg("plot plot-small")
