"""The site's pages: one function per page, each turning model tables into plain dicts and rendering one template.

Jinja runs with ``autoescape=True``; figures are inline SVG (``leaderboard.plots``) marked safe because
``svgplot`` escapes every text it writes, and each is also written as a file under ``fig/`` (the figure's
download link). Pages are written into the folder being built (``out``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pandas as pd
from markupsafe import Markup

from rootbench.harness.stats import TAU_MAX
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import plots as P
from rootbench.leaderboard import series, tables
from rootbench.leaderboard.comparisons import DIRECTIONS, direction_tally, verdict_tally
from rootbench.leaderboard.fmt import anchor, config_page, num, run_href, run_page, task_href, task_slug, tier_view
from rootbench.leaderboard.model import groups
from rootbench.leaderboard.run_view import config_view, manifest_roles

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
PAGE_VERSION = "2"  # bump when run pages change in a way the template hash does not see
# the modules a run page is made by, besides the templates (a change to them re-renders every run page)
RUN_PAGE_MODULES = ("pages.py", "run_view.py", "fmt.py", "aggregate.py", "plots.py", "svgplot.py", "series.py")
CLAIM_HEADINGS = {1: "CNN tasks (claim 1 is decided against SGD: see the verdicts)", 2: "Transformer tasks (claim 2)"}
PAIR_GROUPS = {1: "CNN tasks", 2: "transformer tasks"}
CLAIM_SHORT = {1: "gap to SGD on CNNs", 2: "transformers", 3: "bf16"}


def env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=False,
        lstrip_blocks=False,
        undefined=jinja2.ChainableUndefined,
    )


def write_page(path: str, content: str, fresh: bool = False) -> None:
    """Write a page; ``fresh``: the folder is new, so no file is there yet (skips a check per run page)."""
    if not fresh:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):  # maybe a hard link into the previous site: never write through it
            os.unlink(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def figure(out: str, name: str, svg: str, root: str, caption: str = "") -> dict:
    """A figure for a template: the inline markup, its id (permalink), caption and the href of its SVG file."""
    fid = anchor("fig", name)
    write_page(os.path.join(out, "fig", f"{fid}.svg"), svg)
    return {"svg": Markup(svg), "id": fid, "href": f"{root}fig/{fid}.svg", "caption": caption}


def render_pages(model: dict, out: str, jinja, site: dict, warnings: list[str], plots: bool = True) -> dict:
    """index, pairs, across, methodology and one page per (tier, task); returns timings."""
    summary = model["summary"]
    all_opts = sorted(summary["optimizer"].astype(str).unique()) if len(summary) else []
    style = P.styles(all_opts, model["pairs"])
    common = {"site": site}
    ov_by_task = by_task(model["overview"])
    t0 = time.perf_counter()
    timings = task_pages(model, out, jinja, common, style, plots, ov_by_task)
    timings["task_pages"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index_page(model, out, jinja, warnings, common, plots, ov_by_task)
    timings["index"] = time.perf_counter() - t0
    pairs_page(model, out, jinja, common)
    t0 = time.perf_counter()
    across_page(model, out, jinja, common, style, plots)
    timings["across"] = time.perf_counter() - t0
    methodology_page(model, out, jinja, common)
    return timings


# ---------------------------------------------------------------------------------------------
# the front page: the verdict, the forest plot, the leaderboards, the reference runs


def _forest_rows(cmp: pd.DataFrame) -> tuple[list[dict], list[tuple[str, int]]]:
    rows, heads = [], []
    for claim, g in cmp.groupby(cmp["claim"].fillna(0), sort=True):
        kinds = sorted({str(k) for k in g["model_kind"].dropna()}) or ["undeclared"]
        heads.append((CLAIM_HEADINGS.get(int(claim), f"No claim · {', '.join(kinds)}"), len(g)))
        for r in g.to_dict("records"):
            n = f"n {int(r['root_n'])}/{int(r['free_n'])}" if r["root_n"] == r["root_n"] else ""
            rows.append(
                {
                    **r,
                    "fig_id": anchor("f", r["anchor"]),
                    "href": f"pairs.html#{r['anchor']}",
                    "right": f"{r['metric_name']} · p {num(r['p'], 2)} · {n}",
                }
            )
    return rows, heads


def tier_verdict(model: dict, tier: str, out: str, plots: bool) -> dict:
    """What the front page says for one tier: the tallies, the forest plot and the comparison tables."""
    cmp = model["comparisons"]
    cmp = cmp[cmp["tier"] == tier] if len(cmp) else cmp
    formal = model["verdicts"]
    formal = formal[formal["tier"] == tier] if len(formal) else formal
    vt = verdict_tally(formal)
    dt = direction_tally(cmp) if len(cmp) else []
    view = {
        "claims": vt,
        "directions": dt,
        "n_comparisons": len(cmp),
        "n_tasks": int(cmp["task"].nunique()) if len(cmp) else 0,
        "comparisons": tables.comparisons_table(cmp, model["root_vs_free"], "") if len(cmp) else None,
        "verdicts": tables.verdicts_table(formal, "") if len(formal) else None,
    }
    if plots and len(cmp):
        rows, heads = _forest_rows(cmp)
        view["forest"] = figure(
            out,
            f"forest-{tier}",
            P.forest_svg(rows, heads, f"root-free minus root, every comparable pair, {tier} tier"),
            "",
        )
        verdict_bars = [
            {
                "label": f"claim {r['claim']} · {CLAIM_SHORT.get(r['claim'], '')} ({r['n']})",
                "counts": {v: r[v] for v in P.VERDICT_COLORS},
            }
            for r in vt
        ]
        direction_bars = [
            {
                "label": f"pairs on {PAIR_GROUPS.get(r['claim'], 'other tasks')} ({r['tasks']} tasks)",
                "counts": {d: r[d] for d in DIRECTIONS},
            }
            for r in dt
        ]
        if vt:
            view["tally"] = figure(
                out, f"verdicts-{tier}", P.tally_svg(verdict_bars, P.VERDICT_COLORS, f"claim verdicts, {tier} tier"), ""
            )
        view["direction_tally"] = figure(
            out,
            f"directions-{tier}",
            P.tally_svg(direction_bars, P.DIRECTION_COLORS, f"root vs root-free at p < 0.05, {tier} tier"),
            "",
        )
    return view


def by_task(df: pd.DataFrame) -> dict:
    """``{(tier, task): [row dict, ...]}``: one conversion of a model table (per-task frames are slow at scale)."""
    out: dict = {}
    for r in df.to_dict("records") if len(df) else []:
        out.setdefault((r["tier"], r["task"]), []).append(r)
    return out


def index_page(
    model: dict, out: str, jinja, warnings: list[str], common: dict, plots: bool, ov_recs: dict | None = None
) -> None:
    ov, classes = model["overview"], model["task_classes"]
    ov_recs = by_task(ov) if ov_recs is None else ov_recs
    tiers = []
    for tier, task_names in groups(model):
        tv = tier_view(tier)
        tv.update(tier_verdict(model, tier, out, plots))
        compared = [t for t in task_names if classes.get((tier, t), 0) >= 2]
        reference = [t for t in task_names if classes.get((tier, t), 0) < 2]
        tv["tasks"] = []
        for task in compared:
            rows = ov_recs.get((tier, task), [])
            tv["tasks"].append(
                {
                    **task_header(model, tier, task, rows),
                    "overview": tables.overview_table(rows, model["opt_info"], "", tier, task),
                }
            )
        ref = ov[(ov["tier"] == tier) & ov["task"].isin(reference)]
        tv["reference"] = tables.reference_table(ref, "", tier) if len(ref) else None
        tv["n_reference"] = len(reference)
        tiers.append(tv)
    formal, taus = model["verdicts"], model.get("tier_agreement")
    with_verdicts = set(formal["tier"]) if len(formal) else set()
    side_by_side = None
    if len(with_verdicts) >= 2:  # one tier alone is its own section below
        side_by_side = tables.tiers_table(formal, taus if taus is not None else pd.DataFrame(), "")
    write_page(
        os.path.join(out, "index.html"),
        jinja.get_template("index.html.j2").render(
            root="",
            page="index",
            title="Root or no root?",
            tiers=tiers,
            side_by_side=side_by_side,
            warnings=warnings,
            **common,
        ),
    )


def task_header(model: dict, tier: str, task: str, rows: list[dict]) -> dict:
    n_runs = sum(int(r["n_runs"]) for r in rows)
    metric = str(rows[0]["metric_name"]) if rows else ""
    higher = bool(rows[0]["higher_is_better"]) if rows else True
    info = model["task_info"].get(task, {})
    targets = sorted({float(r["target"]) for r in rows if r.get("target") is not None and r["target"] == r["target"]})
    return {
        "name": task,
        "anchor": anchor("task", tier, task),
        "href": task_href(tier, task),
        "n_runs": n_runs,
        "n_configs": sum(int(r["n_configs"]) for r in rows),
        "metric_name": metric,
        "higher": higher,
        "metric_label": f"{metric} ({'higher' if higher else 'lower'} is better)",
        "target": ", ".join(num(t) for t in targets) if targets else "none",
        "kind": info.get("model_kind") or "undeclared",
        "description": info.get("description", ""),
    }


# ---------------------------------------------------------------------------------------------
# task pages


def task_pages(
    model: dict, out: str, jinja, common: dict, style: dict, plots: bool, ov_by_task: dict | None = None
) -> dict:
    """One page per (tier, task); returns timings."""
    timings = {"plots": 0.0}
    ov, opt_info, configs, summary = model["overview"], model["opt_info"], model["configs"], model["summary"]
    cmp = model["comparisons"]
    by_config = series.curve_index(series.config_curves(model["points"], summary)) if plots else {}
    conf_by_task = by_task(configs)
    ov_by_task = by_task(ov) if ov_by_task is None else ov_by_task
    cmp_by_task = cmp.groupby(["tier", "task"], sort=False).indices if len(cmp) else {}
    rvf_keyed = tables.rvf_by_pair(model["root_vs_free"])
    sum_cols = summary[
        [
            c
            for c in series.KEY + ["run_id", "seed", "status", "diverged_step", "steps_completed"]
            if c in summary.columns
        ]
    ]
    seeds_by_config: dict = {}
    for r in sum_cols.sort_values("seed", kind="stable").to_dict("records"):
        step = r.get("diverged_step")
        step = r.get("steps_completed") if step is None or step != step else step
        seeds_by_config.setdefault(tuple(r[k] for k in series.KEY), []).append(
            (str(r["run_id"]), r["seed"], r["status"], step)
        )
    for tier, task_names in groups(model):
        tv = tier_view(tier)
        for task in task_names:
            rows = ov_by_task.get((tier, task), [])
            page = task_header(model, tier, task, rows)
            page["overview"] = tables.overview_table(rows, opt_info, "../", tier, task)
            mine = cmp.iloc[cmp_by_task[(tier, task)]] if (tier, task) in cmp_by_task else cmp.iloc[:0]
            page["comparisons"] = tables.comparisons_table(mine, rvf_keyed, "../") if len(mine) else None
            page["reference"] = model["task_classes"].get((tier, task), 0) < 2
            ctask = conf_by_task.get((tier, task), [])
            selected = {(r["optimizer"], r["config_id"]) for r in rows if r["selected"]}
            page["configs"] = tables.configs_table(ctask, seeds_by_config, selected, "../", tier, task)
            if plots:
                tp = time.perf_counter()
                page.update(
                    task_figures(out, tier, task, rows, ctask, by_config, style, page["metric_name"], page["higher"])
                )
                timings["plots"] += time.perf_counter() - tp
            write_page(
                os.path.join(out, "tasks", f"{task_slug(tier, task)}.html"),
                jinja.get_template("task.html.j2").render(
                    root="../", page="task", title=f"{task} ({tier})", tier=tv, task=page, **common
                ),
            )
    return timings


def task_figures(out, tier, task, rows, ctask, by_config, style, metric, higher) -> dict:
    """The learning-curve panels, the configuration overlay and the sensitivity figure of one task."""
    name = f"{task}--{tier}"
    sel = [r for r in rows if r["selected"]]
    panels = []
    for split, m, x, ylabel in P.CURVE_PANELS:
        m = m or metric
        cur = {}
        for r in sel:
            d = series.curve(by_config, (tier, task, r["optimizer"], r["config_id"]), split, m)
            if d is not None:
                cur[r["optimizer"]] = d
        if cur:
            label = ylabel.format(metric=metric)
            svg = P.curve_panel(
                cur, split, m, x, label, style, f"{label} against {'step' if x == 'step' else 'time'}, {task}"
            )
            panels.append(
                figure(
                    out,
                    f"{name}-{split}-{m}-{x}",
                    svg,
                    "../",
                    f"{label[0].upper()}{label[1:]} against {'step' if x == 'step' else 'train clock'}.",
                )
            )
    lines = []
    chosen = {(r["optimizer"], r["config_id"]) for r in sel}
    for r in ctask:
        d = series.curve(by_config, (tier, task, r["optimizer"], r["config_id"]), "val", metric)
        if d is not None:
            lines.append(
                {
                    "optimizer": r["optimizer"],
                    "config_id": r["config_id"],
                    "selected": (r["optimizer"], r["config_id"]) in chosen,
                    "step": d["step"],
                    "mean": d["mean"],
                }
            )
    out_figs = {
        "panels": panels,
        "legend": [{"name": r["optimizer"], **P._style(style, r["optimizer"])} for r in sel],
        "style_note": P.STYLE_NOTE.replace(" | ", "; "),
    }
    if lines:
        out_figs["overlay"] = figure(
            out,
            f"{name}-configs",
            P.config_overlay(lines, metric, style, f"validation {metric} of every configuration, {task}"),
            "../",
        )
    sens = series.sensitivity(ctask)
    if sens:
        out_figs["sensitivity"] = figure(
            out,
            f"{name}-lr",
            P.sensitivity_svg(sens, metric, higher, style, title=f"learning-rate sensitivity, {task}"),
            "../",
        )
    return out_figs


# ---------------------------------------------------------------------------------------------
# pairs, across tasks, methodology, downloads


def pairs_page(model: dict, out: str, jinja, common: dict) -> None:
    """Root vs root-free, per tier; names the CNN tasks and what has no declaration."""
    rvf, cmp = model["root_vs_free"], model["comparisons"]
    ptiers = []
    for tier, _ in groups(model):
        tv = tier_view(tier)
        mine = cmp[cmp["tier"] == tier] if len(cmp) else cmp
        tv["pairs"] = tables.comparisons_table(mine, rvf, "") if len(mine) else None
        tv["pairs_missing"] = tables.pairs_missing(rvf[rvf["tier"] == tier] if len(rvf) else rvf)
        ptiers.append(tv)
    undeclared_tasks = sorted(t for t, i in model["task_info"].items() if not i.get("registered"))
    undeclared_opts = sorted(o for o, i in model["opt_info"].items() if i.get("in_results") and not i.get("registered"))
    write_page(
        os.path.join(out, "pairs.html"),
        jinja.get_template("pairs.html.j2").render(
            root="",
            page="pairs",
            title="Root vs root-free",
            tiers=ptiers,
            pairs=model["pairs"],
            cnn_tasks=model["cnn_tasks"],
            reference=agg.CNN_REFERENCE,
            undeclared_tasks=undeclared_tasks,
            undeclared_optimizers=undeclared_opts,
            **common,
        ),
    )


def across_page(model: dict, out: str, jinja, common: dict, style: dict, plots: bool) -> None:
    """Performance profiles, speedups and ranks over each tier's common task set; the head-to-head table."""
    atiers = []
    for tier, _ in groups(model):
        a = model["across"].get(tier)
        if a is None:
            continue
        tv = tier_view(tier)
        prof = a["profile"]
        tv.update(
            common_tasks=a["tasks"],
            all_tasks=a["all_tasks"],
            optimizers=a["optimizers"],
            set_aside=[(o, len(a["coverage"].get(o, []))) for o in a["set_aside"]],
            n_profile_tasks=len(prof["tasks"]),
            reference_present=a["reference_present"],
        )
        if plots and prof["tasks"]:
            tv["profile"] = figure(
                out,
                f"profile-time-{tier}",
                P.profile_svg(prof, style, title=f"time-to-target profile over the common tasks, {tier} tier"),
                "",
            )
            tv["profile_steps"] = figure(
                out,
                f"profile-steps-{tier}",
                P.profile_svg(
                    a["profile_steps"],
                    style,
                    xlabel="τ (steps-to-target / fewest)",
                    title=f"steps-to-target profile over the common tasks, {tier} tier",
                ),
                "",
            )
        tv["speedup"] = tables.speedup_table(a, model["opt_info"], tier)
        tv["ranks"] = tables.ranks_table(a, tier)
        tv["h2h"] = tables.head_to_head_table(a, tier)
        atiers.append(tv)
    write_page(
        os.path.join(out, "across.html"),
        jinja.get_template("across.html.j2").render(
            root="",
            page="across",
            title="Across tasks",
            tiers=atiers,
            tau_max=int(TAU_MAX),
            reference=agg.REFERENCE_OPTIMIZER,
            **common,
        ),
    )


def methodology_page(model: dict, out: str, jinja, common: dict) -> None:
    """The rules, the hardware behind the runs, task settings and the optimizers' declarations."""
    from rootbench.leaderboard import verdicts as V

    write_page(
        os.path.join(out, "methodology.html"),
        jinja.get_template("methodology.html.j2").render(
            root="",
            page="methodology",
            title="Methodology",
            hardware=tables.hardware_table(model["hardware"]),
            task_settings=tables.task_settings_table(model["summary"], groups(model), model["task_info"]),
            optimizers=tables.optimizers_table(model["opt_info"]),
            tier_info={t: tier_view(t) for t in ("smoke", "quick", "long", "full")},
            tau_max=int(TAU_MAX),
            reference=agg.REFERENCE_OPTIMIZER,
            min_seeds=V.MIN_SEEDS,
            claims=V.CLAIMS,
            claim_kinds=V.CLAIM_KINDS,
            **common,
        ),
    )


def downloads_page(out: str, jinja, site: dict, files: list[tuple[str, int, str]], runs_href: str) -> None:
    write_page(
        os.path.join(out, "downloads.html"),
        jinja.get_template("downloads.html.j2").render(
            root="",
            page="downloads",
            title="Downloads",
            site=site,
            files=tables.downloads_table(files),
            runs_href=runs_href,
        ),
    )


# ---------------------------------------------------------------------------------------------
# run pages: each depends on its folder alone, so the loader's workers render them as they read the files


def run_pages_key(version: str, runs_href: str = "") -> str:
    """What a run page depends on besides its folder: the templates, the modules that make it, the version and
    where the raw run files are linked."""
    h = hashlib.sha256((PAGE_VERSION + runs_href).encode())
    for name in sorted(os.listdir(TEMPLATES)):
        with open(os.path.join(TEMPLATES, name), "rb") as f:
            h.update(name.encode() + f.read())
    for name in RUN_PAGE_MODULES:
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return f"{h.hexdigest()[:16]}:{version}"


_RUN_TEMPLATE = []  # per process: the compiled run-page template


def _manifests(runs_root: str, folder: str) -> list[tuple[str, dict]]:
    from rootbench.leaderboard.load import manifest_folder

    mdir = manifest_folder(runs_root, folder)
    out = []
    if os.path.isdir(mdir):
        for name in sorted(os.listdir(mdir)):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(mdir, name), encoding="utf-8") as f:
                        m = json.load(f)
                except (OSError, ValueError):
                    continue
                if isinstance(m, dict):
                    out.append((name, m))
    return out


def render_folder(
    folder: str,
    runs: list[dict],
    curves: dict,
    out: str,
    runs_root: str,
    version: str,
    runs_href: str,
    fresh: bool = True,
) -> None:
    """Write the pages of one folder: a page per configuration (every seed of it, with the folder's sweep
    manifests), and per run a small page at its own address that forwards to its section.

    Used as the loader's per-folder hook, so pages are rendered in the workers that read the files."""
    if not _RUN_TEMPLATE:
        _RUN_TEMPLATE.extend([env().get_template("run.html.j2"), env().get_template("run_stub.html.j2")])
    page_tpl, stub_tpl = _RUN_TEMPLATE
    roles = manifest_roles(
        _manifests(runs_root, folder), lambda name: f"{runs_href}/{'/'.join(['sweeps', *folder.split(os.sep), name])}"
    )
    by_config: dict = {}
    for r in runs:
        by_config.setdefault(
            (str(r.get("tier")), str(r.get("task")), str(r.get("optimizer")), str(r.get("config_id"))), []
        ).append(r)
    site = {"version": version, "n_runs": None, "built_at": None, "git_sha": ""}  # nothing build-specific
    for key, group in by_config.items():
        mine = {}
        for r in group:
            pts = curves.get(str(r["run_id"]))
            if pts is not None and not isinstance(pts, dict):
                pts = {c: pts.column(c).to_pylist() for c in ("step", "split", "metric", "value", "train_time_s")}
            mine[str(r["run_id"])] = pts
            try:
                r["file_size"] = os.path.getsize(r["path"])
            except OSError:
                r["file_size"] = None
        view = config_view(group, mine, "../", runs_root, runs_href, roles)
        rel = config_page(*key)
        write_page(
            os.path.join(out, rel),
            page_tpl.render(
                root="../",
                page="run",
                site=site,
                cfg=view,
                title=f"{view['optimizer']} on {view['task']}",
                tier=tier_view(key[0]),
            ),
            fresh,
        )
        for r in group:
            rid = str(r["run_id"])
            write_page(
                os.path.join(out, run_page(rid)), stub_tpl.render(rid=rid, href=f"../{run_href(*key, rid)}"), fresh
            )


def render_run_pages(model: dict, out: str, folders: set, runs_root: str, version: str, runs_href: str) -> None:
    """Pages of the runs in ``folders`` (folders whose pages were neither rendered by the loader nor reused)."""
    if not folders:
        return
    s, pts = model["summary"], model["points"]
    mine = s[s["folder"].isin(folders)] if "folder" in s.columns else s.iloc[:0]
    ids = set(mine["run_id"].astype(str))
    p = pts[pts["run_id"].astype(str).isin(ids)]
    index = p.groupby("run_id", sort=False, observed=True).indices if len(p) else {}
    cols = (
        {
            c: p[c].to_numpy(dtype=object if c in ("split", "metric") else None)
            for c in ("step", "split", "metric", "value", "train_time_s")
        }
        if len(p)
        else {}
    )
    for folder, g in mine.groupby("folder", sort=False):
        runs = g.to_dict("records")
        curves = {}
        for r in runs:
            idx = index.get(str(r["run_id"]))
            if idx is not None:
                curves[str(r["run_id"])] = {k: v[idx] for k, v in cols.items()}
        render_folder(folder, runs, curves, out, runs_root, version, runs_href, fresh=False)
