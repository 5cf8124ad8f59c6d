"""The site's pages: one function per page, each turning model tables into plain dicts and rendering one template.

Jinja runs with ``autoescape=True``; figures are inline SVG (``leaderboard.plots``) marked safe because
``svgplot`` escapes every text it writes. Pages are written into the folder being built (``out``).
"""
from __future__ import annotations

import hashlib
import os
import time

import pandas as pd
from markupsafe import Markup

from rootbench.harness.stats import TAU_MAX
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import plots as P
from rootbench.leaderboard import tables
from rootbench.leaderboard.fmt import num, run_page, task_slug, tier_view
from rootbench.leaderboard.model import groups
from rootbench.leaderboard.run_view import run_view

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
PAGE_VERSION = "1"  # bump when run pages change in a way the template hash does not see
# the modules a run page is made by, besides the templates (a change to them re-renders every run page)
RUN_PAGE_MODULES = ("pages.py", "run_view.py", "fmt.py", "aggregate.py")


def env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              trim_blocks=False, lstrip_blocks=False, undefined=jinja2.ChainableUndefined)


def write_page(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def render_pages(model: dict, out: str, jinja, site: dict, warnings: list[str], plots: bool = True) -> dict:
    """index, pairs, across, methodology and one page per (tier, task); returns timings."""
    summary = model["summary"]
    all_opts = sorted(summary["optimizer"].astype(str).unique()) if len(summary) else []
    style = P.styles(all_opts, model["pairs"])
    common = {"site": site}
    t0 = time.perf_counter()
    tiers, timings = task_pages(model, out, jinja, common, style, plots)
    timings["task_pages"] = time.perf_counter() - t0
    index_page(out, jinja, tiers, warnings, common)
    pairs_page(model, out, jinja, common)
    t0 = time.perf_counter()
    across_page(model, out, jinja, common, style, plots)
    timings["across"] = time.perf_counter() - t0
    methodology_page(model, out, jinja, common)
    return timings


def task_pages(model: dict, out: str, jinja, common: dict, style: dict, plots: bool) -> tuple[list[dict], dict]:
    """One page per (tier, task); returns the tiers with their tasks' overview tables (for the index)."""
    timings, tiers = {}, []
    ov, opt_info = model["overview"], model["opt_info"]
    point_index = model["points"].groupby("run_id", sort=False, observed=True).indices \
        if plots and len(model["points"]) else {}
    summary = model["summary"]
    narrow = summary[[c for c in summary.columns if (not c.startswith(("hp_", "task_")) or c == "hp_lr")
                      and c not in ("config_json", "traceback")]]
    by_task = narrow.groupby(["tier", "task"], sort=False).indices
    for tier, task_names in groups(model):
        tv = tier_view(tier)
        tv["tasks"] = []
        for task in task_names:
            rows = ov[(ov["tier"] == tier) & (ov["task"] == task)].to_dict("records")
            s = narrow.iloc[by_task[(tier, task)]]
            slug = task_slug(tier, task)
            metric = str(s["metric_name"].iloc[0])
            higher = bool(s["higher_is_better"].iloc[0])
            targets = pd.to_numeric(s["target"], errors="coerce").dropna().unique()
            tview = {"name": task, "anchor": slug, "href": f"tasks/{slug}.html", "n_runs": len(s),
                     "n_configs": int(s["config_id"].nunique()), "metric_name": metric,
                     "metric_label": f"{metric} ({'higher' if higher else 'lower'} is better)",
                     "target": ", ".join(num(t) for t in sorted(targets)) if len(targets) else "none",
                     "description": model["task_info"].get(task, {}).get("description", "")}
            tview["overview"] = tables.overview_table(rows, opt_info, "")
            tv["tasks"].append(tview)
            page = dict(tview)
            page["overview"] = tables.overview_table(rows, opt_info, "../")
            page["runs"] = tables.runs_table(s, "../", metric)
            if plots:
                tp = time.perf_counter()
                cur = agg.curves(model["points"], s, model["best"], tier, task, index=point_index)
                page["curves_svg"] = Markup(P.curves_svg(cur, metric, style, title=f"learning curves, {task}")) \
                    if cur else ""
                sens = agg.sensitivity(model["configs"], tier, task)
                page["sensitivity_svg"] = (Markup(P.sensitivity_svg(sens, metric, higher, style,
                                                                    title=f"learning-rate sensitivity, {task}"))
                                           if sens else "")
                timings["plots"] = timings.get("plots", 0.0) + time.perf_counter() - tp
            write_page(os.path.join(out, "tasks", f"{slug}.html"),
                       jinja.get_template("task.html.j2").render(root="../", page="task", title=f"{task} ({tier})",
                                                                 tier=tv, task=page, **common))
        tiers.append(tv)
    return tiers, timings


def index_page(out: str, jinja, tiers: list[dict], warnings: list[str], common: dict) -> None:
    write_page(os.path.join(out, "index.html"), jinja.get_template("index.html.j2").render(
        root="", page="index", title="Overview", tiers=tiers, warnings=warnings, **common))


def pairs_page(model: dict, out: str, jinja, common: dict) -> None:
    """Root vs root-free, per tier; names the CNN tasks and what has no declaration."""
    rvf = model["root_vs_free"]
    ptiers = []
    for tier, _ in groups(model):
        tv = tier_view(tier)
        tv["pairs"], tv["pairs_missing"] = tables.pairs_view(rvf[rvf["tier"] == tier] if len(rvf) else rvf)
        ptiers.append(tv)
    undeclared_tasks = sorted(t for t, i in model["task_info"].items() if not i.get("registered"))
    undeclared_opts = sorted(o for o, i in model["opt_info"].items() if i.get("in_results") and not i.get("registered"))
    write_page(os.path.join(out, "pairs.html"), jinja.get_template("pairs.html.j2").render(
        root="", page="pairs", title="Root vs root-free", tiers=ptiers, pairs=model["pairs"],
        cnn_tasks=model["cnn_tasks"], reference=agg.CNN_REFERENCE, undeclared_tasks=undeclared_tasks,
        undeclared_optimizers=undeclared_opts, **common))


def across_page(model: dict, out: str, jinja, common: dict, style: dict, plots: bool) -> None:
    """Performance profiles, speedups and ranks across the tasks of each tier."""
    atiers = []
    for tier, _ in groups(model):
        a = model["across"].get(tier)
        if a is None:
            continue
        tv = tier_view(tier)
        prof = a["profile"]
        tv["n_tasks"] = len(a["tasks"])
        tv["n_profile_tasks"] = len(prof["tasks"])
        if plots and prof["tasks"]:
            tv["profile_svg"] = Markup(P.profile_svg(prof, style, title=f"time-to-target profile, {tier} tier"))
            tv["profile_steps_svg"] = Markup(P.profile_svg(a["profile_steps"], style,
                                                           xlabel="τ (steps-to-target / fewest)",
                                                           title=f"steps-to-target profile, {tier} tier"))
        tv["reference_present"] = a["reference_present"]
        tv["speedup"] = tables.speedup_table(a, model["opt_info"])
        tv["ranks"] = tables.ranks_table(a, tier)
        atiers.append(tv)
    write_page(os.path.join(out, "across.html"), jinja.get_template("across.html.j2").render(
        root="", page="across", title="Across tasks", tiers=atiers, tau_max=int(TAU_MAX),
        reference=agg.REFERENCE_OPTIMIZER, **common))


def methodology_page(model: dict, out: str, jinja, common: dict) -> None:
    """The rules, the hardware behind the runs, task settings and the optimizers' declarations."""
    write_page(os.path.join(out, "methodology.html"), jinja.get_template("methodology.html.j2").render(
        root="", page="methodology", title="Methodology", hardware=tables.hardware_table(model["hardware"]),
        task_settings=tables.task_settings_table(model["summary"], groups(model), model["task_info"]),
        optimizers=tables.optimizers_table(model["opt_info"]),
        tier_info={t: tier_view(t) for t in ("smoke", "quick", "full")}, tau_max=int(TAU_MAX),
        reference=agg.REFERENCE_OPTIMIZER, **common))


def downloads_page(out: str, jinja, site: dict, files: list[tuple[str, int, str]]) -> None:
    write_page(os.path.join(out, "downloads.html"), jinja.get_template("downloads.html.j2").render(
        root="", page="downloads", title="Downloads", site=site, files=tables.downloads_table(files)))


# ---------------------------------------------------------------------------------------------
# run pages: each depends on its run alone, so the loader's workers render them as they read the files

def run_pages_key(version: str) -> str:
    """What a run page depends on besides its run: the templates, the modules that make it, the version."""
    h = hashlib.sha256(PAGE_VERSION.encode())
    for name in sorted(os.listdir(TEMPLATES)):
        with open(os.path.join(TEMPLATES, name), "rb") as f:
            h.update(name.encode() + f.read())
    for name in RUN_PAGE_MODULES:
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return f"{h.hexdigest()[:16]}:{version}"


_RUN_TEMPLATE = []  # per process: the compiled run-page template


def render_run_page(run: dict, points, out: str, runs_root: str, version: str) -> None:
    """Write one run's page from that run alone. ``points``: a pyarrow table or a dict of columns.

    Used as the loader's per-file hook, so pages are rendered in the workers that read the files."""
    if not _RUN_TEMPLATE:
        _RUN_TEMPLATE.append(env().get_template("run.html.j2"))
    if points is not None and not isinstance(points, dict):
        points = {c: points.column(c).to_pylist() for c in ("step", "split", "metric", "value", "train_time_s")}
    run = dict(run)
    try:
        run["file_size"] = os.path.getsize(run["path"])
    except OSError:
        run["file_size"] = None
    rid = str(run["run_id"])
    site = {"version": version, "n_runs": None, "built_at": None, "git_sha": ""}  # nothing build-specific
    write_page(os.path.join(out, run_page(rid)),
               _RUN_TEMPLATE[0].render(root="../", page="run", title=f"run {rid}",
                                       run=run_view(run, points, "../", runs_root),
                                       tier=tier_view(str(run.get("tier"))), site=site))


def render_run_pages(model: dict, out: str, run_ids: list[str], runs_root: str, version: str) -> None:
    """Pages of ``run_ids`` (runs whose page was neither rendered by the loader nor reused)."""
    if not run_ids:
        return
    wanted = set(run_ids)
    s, pts = model["summary"], model["points"]
    pts = pts[pts["run_id"].isin(wanted)]
    index = pts.groupby("run_id", sort=False, observed=True).indices if len(pts) else {}
    cols = {c: pts[c].to_numpy(dtype=object if c in ("split", "metric") else None)
            for c in ("step", "split", "metric", "value", "train_time_s")} if len(pts) else {}
    for r in s[s["run_id"].astype(str).isin(wanted)].to_dict("records"):
        idx = index.get(str(r["run_id"]))
        render_run_page(r, {k: v[idx] for k, v in cols.items()} if idx is not None else None, out, runs_root,
                        version)
