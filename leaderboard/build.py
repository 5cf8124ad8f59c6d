"""``rootbench site``: build the static leaderboard from ``runs/**/*.parquet``.

    rootbench site [--runs runs] [--out site]     # the HTML site (works from file:// and GitHub Pages)
    rootbench site --markdown [FILE]              # only the overview as Markdown (stdout or FILE)

Rendering stays dumb: ``leaderboard.load`` reads the files, ``leaderboard.aggregate`` computes every
number with pandas, this module turns the tables into plain lists of dicts of display strings, and
Jinja (``autoescape=True``) writes them. Plots are small hand-written SVG (``leaderboard.svgplot``) inlined into the page; the only
script is a dozen lines of table sorting; nothing is fetched at view time.

A rebuild is incremental: runs whose file is unchanged are taken from the previous build's
``data/runs.parquet``/``data/points.parquet`` and their pages are hard-linked from the previous site.
The new site is written beside the old one and swapped in at the end, so a failed build leaves the
old site in place.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from urllib.parse import quote

import numpy as np
import pandas as pd

from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import load as loader

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
STATIC = os.path.join(HERE, "static")
MARKER = ".rootbench-site"  # the build only ever replaces a folder that holds this file
PAGE_VERSION = "1"  # bump when run pages change in a way the template hash does not see
TIER_INFO = {
    "full": ("tier-full", "Full tier", "the published protocol (GPU)"),
    "quick": ("tier-quick", "Quick tier", "minutes-scale runs, often on CPU; never mixed with full-tier numbers"),
    "smoke": ("tier-smoke", "Smoke tier", "pipeline test only; ranks nothing"),
}


class SiteError(Exception):
    """A problem with the arguments (not with the data): the CLI exits with code 2."""


# ---------------------------------------------------------------------------------------------
# formatting (every value shown on the site goes through one of these)

def _bad(v) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def num(v, digits: int = 4) -> str:
    if _bad(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def signed(v, digits: int = 3) -> str:
    if _bad(v):
        return "–"
    v = float(v)
    return ("+" if v > 0 else "−" if v < 0 else "±") + f"{abs(v):.{digits}g}"


def seconds(v) -> str:
    if _bad(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "∞"
    if v == 0:
        return "0 s"
    if v < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    if v < 600:
        return f"{v:.3g} s"
    return f"{v / 60:.3g} min"


def nbytes(v) -> str:
    if _bad(v):
        return "–"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1024
    return "–"


def sort_value(v):
    """The ``data-v`` attribute: numbers (inf as a huge number), '' for missing."""
    if _bad(v):
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isinf(f):
        return "1e308" if f > 0 else "-1e308"
    return repr(f)


def text(v) -> str:
    return "–" if _bad(v) else str(v)


class Cell:
    """One table cell for the templates: text, sort value, class, link, secondary text, title.

    Attributes (not dict keys): Jinja's attribute lookup on a dict tries getattr first, which costs
    more than the rest of the cell at 10,000-run scale."""

    __slots__ = ("t", "v", "c", "h", "s", "ti", "sc", "rf")

    def __init__(self, t, v=None, c="", h="", s="", ti="", sc="", rf=False):
        self.t, self.v, self.c, self.h, self.s, self.ti, self.sc, self.rf = t, v, c, h, s, ti, sc, rf


class Col:
    __slots__ = ("t", "ti", "num")

    def __init__(self, t, ti="", num_=False):
        self.t, self.ti, self.num = t, ti, num_


cell, col = Cell, Col


def safe_name(name: str) -> str:
    """A file name derived from data that cannot escape its folder or collide by case tricks."""
    name = str(name)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:60] or "x"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def task_slug(tier: str, task: str) -> str:
    return safe_name(f"{task}--{tier}")


def run_page(rid: str) -> str:
    return f"runs/{safe_name(rid)}.html"


def tier_view(tier: str) -> dict:
    cls, title, desc = TIER_INFO.get(tier, ("tier-other", f"Tier {tier}", "an unknown tier"))
    return {"name": str(tier), "cls": cls, "title": title, "desc": desc}


def status_text(counts: dict) -> str:
    return " · ".join(f"{n} {k}" for k, n in counts.items()) if counts else "–"


# ---------------------------------------------------------------------------------------------
# registry metadata (optional: the site builds even when an optimizer is no longer registered)

def optimizer_info(names) -> dict:
    info = {}
    try:
        from rootbench.optimizers import get_optimizer_spec, list_optimizers

        registered = set(list_optimizers())
    except Exception as e:  # noqa: BLE001 - a broken optimizer file must not break the site
        registered, get_optimizer_spec = set(), None
        print(f"rootbench site: warning: optimizer registry unavailable ({type(e).__name__}: {e})", file=sys.stderr)
    for name in sorted(set(names) | registered):
        spec = None
        if name in registered:
            try:
                spec = get_optimizer_spec(name)
            except Exception:  # noqa: BLE001
                spec = None
        info[name] = {"registered": spec is not None, "description": getattr(spec, "description", ""),
                      "paper": getattr(spec, "paper", ""), "family": getattr(spec, "family", ""),
                      "root_free": getattr(spec, "root_free", None), "pair": getattr(spec, "pair", None),
                      "in_results": name in set(names)}
    # the partner of a known root-free method is root-based even if unregistered
    for root, free in agg.DEFAULT_PAIRS:
        if free in info and info[free]["root_free"] is None:
            info[free]["root_free"] = True
    return info


def _import_registries() -> None:
    """Import the optimizer and task registries (torch and every optimizer file: seconds), so that a
    thread can do it while the run files are being read."""
    try:
        from rootbench.optimizers import list_optimizers
        from rootbench.tasks import list_tasks

        list_optimizers()
        list_tasks()
    except Exception:  # noqa: BLE001 - optimizer_info reports registry problems itself
        pass


def task_info(names) -> dict:
    info = {}
    try:
        from rootbench.tasks import get_task_spec
    except Exception:  # noqa: BLE001
        get_task_spec = None
    for name in names:
        spec = None
        if get_task_spec is not None:
            try:
                spec = get_task_spec(name)
            except Exception:  # noqa: BLE001
                spec = None
        info[name] = {"description": getattr(spec, "description", ""), "family": getattr(spec, "family", ""),
                      "registered": spec is not None}
    return info


def registry_pairs(opt_info: dict) -> list:
    extra = []
    for name, i in opt_info.items():
        if i.get("pair"):
            extra.append((name, i["pair"]) if i.get("root_free") is False else (i["pair"], name))
    return agg.pair_list(extra)


# ---------------------------------------------------------------------------------------------
# the model: every table the pages need

def compute(results: loader.Results, with_registry: bool = True) -> dict:
    summary = agg.summarize(results.runs, results.points)
    configs = agg.configs(summary)
    best = agg.select_best(configs)
    overview = agg.overview(summary, configs, best=best)
    names = sorted(summary["optimizer"].astype(str).unique()) if len(summary) else []
    tasks_ = sorted(summary["task"].astype(str).unique()) if len(summary) else []
    opt_info = optimizer_info(names) if with_registry else {n: {"registered": False} for n in names}
    t_info = task_info(tasks_) if with_registry else {n: {"description": "", "family": ""} for n in tasks_}
    pairs = registry_pairs(opt_info)
    cnn = [t for t in tasks_ if agg.is_cnn_task(t, t_info.get(t, {}).get("family", ""))]
    return {"summary": summary, "configs": configs, "best": best, "overview": overview, "points": results.points,
            "pairs": pairs, "root_vs_free": agg.root_vs_free(overview, pairs, cnn),
            "across": agg.across_tasks(overview, configs), "hardware": agg.hardware(summary),
            "opt_info": opt_info, "task_info": t_info, "cnn_tasks": cnn}


def groups(model: dict) -> list[tuple[str, list[str]]]:
    """[(tier, [task, ...])] in display order."""
    s = model["summary"]
    if s.empty:
        return []
    out = []
    for tier in sorted(s["tier"].astype(str).unique(), key=agg.tier_key):
        out.append((tier, sorted(s.loc[s["tier"] == tier, "task"].astype(str).unique())))
    return out


# ---------------------------------------------------------------------------------------------
# views: tables as lists of cells

def _ci_cell(mean, half, n, href="") -> dict:
    if _bad(mean):
        return cell("–", "", "num")
    return cell(num(mean), sort_value(mean), "num", href, s=(f"± {num(half, 2)}" if not _bad(half) else "")
                + f" n={int(n)}", sc="ci")


SIG_TEXT = {"best": ("best", "sig-best"), "tied": ("≈ best", "sig-tied"), "worse": ("worse", "sig-worse"),
            "n/a": ("n/a", "sig-na")}


def overview_table(rows: list[dict], opt_info: dict, root: str, task_href: str = "") -> dict:
    cols = [col("#", "rank by the test mean of the selected configuration"), col("optimizer"),
            col("selected configuration", "chosen on the validation metric; click for its first seed"),
            col("test metric", "mean ± 95% t-interval over finished seeds, n seeds", True),
            col("vs best", "one-sided Welch t-test that the best row is better; ≈ best: p ≥ 0.05"),
            col("val", "mean final validation metric (the selection criterion)", True),
            col("train−test", "final train metric minus final test metric", True),
            col("steps→target", "median over seeds (miss = ∞); seeds that reached it", True),
            col("time→target", "train clock, median over seeds (miss = ∞)", True),
            col("step time", "optimizer step time / fused AdamW, same process", True),
            col("peak mem", "peak memory above the pre-training baseline", True),
            col("state B/param", "optimizer-state bytes per parameter", True),
            col("Δ bf16", "test mean in bf16 autocast minus fp32, same setting", True),
            col("Δ bf16-pure", "test mean with bf16 params/grads/state minus fp32, same setting", True),
            col("diverged", "diverged / runs, per precision, all runs of this optimizer here"),
            col("runs", "status counts over all runs of this optimizer here"),
            col("configs", "tuning budget: distinct configurations tried", True)]
    out = []
    for r in rows:
        info = opt_info.get(r["optimizer"], {})
        title = info.get("description") or ("not registered in this checkout" if not info.get("registered") else "")
        sig_key = r.get("significance") or "n/a"
        sig_t, sig_c = SIG_TEXT.get(sig_key, (sig_key, ""))
        p = r.get("p_vs_best")
        sig_s = f"p={num(p, 2)}" if not _bad(p) and sig_key in ("tied", "worse") else ""
        selected = bool(r.get("selected"))
        first_run = (r.get("run_ids") or [None])[0] if selected else None
        conf_text = (r.get("config_label") or "defaults") if selected else "no finished run"
        conf_sub = (r.get("precision") or "") if selected else ""
        stt = r.get("stt")
        n_reached, n_runs_c = r.get("n_reached"), r.get("n_runs")
        reach = f"{int(n_reached)}/{len(r.get('run_ids') or [])}" if selected and not _bad(n_reached) else ""
        deltas = []
        for p_ in ("bf16", "bf16-pure"):
            d = r.get(f"delta_{p_}")
            n_ = r.get(f"n_{p_}")
            deltas.append(cell(signed(d), sort_value(d), "num",
                               ti=(f"n = {n_[0]} ({p_}) vs {n_[1]} (fp32) seeds" if isinstance(n_, (list, tuple)) else "")))
        div = r.get("divergence") or {}
        div_text = " · ".join(f"{k} {v[0]}/{v[1]}" for k, v in div.items())
        href = f"{root}{task_href}" if task_href else ""
        out.append({"cls": {"best": "best", "tied": "tied"}.get(sig_key, ""), "cells": [
            cell(num(r.get("rank"), 3), sort_value(r.get("rank")), "num"),
            cell(r["optimizer"], r["optimizer"], h=href, ti=title, rf=bool(info.get("root_free"))),
            cell(conf_text, None, "wrap", h=f"{root}{run_page(first_run)}" if first_run else "", s=conf_sub,
                 ti=(r.get("hparams_label") or "") if selected else ""),
            _ci_cell(r.get("test_mean"), r.get("test_half"), r.get("test_n") or 0),
            cell(sig_t, None, sig_c, s=sig_s),
            cell(num(r.get("val_mean")), sort_value(r.get("val_mean")), "num"),
            cell(signed(r.get("gap_mean")), sort_value(r.get("gap_mean")), "num"),
            cell(num(stt, 6) if selected else "–", sort_value(stt) if selected else "", "num", s=reach),
            cell(seconds(r.get("ttt")) if selected else "–", sort_value(r.get("ttt")) if selected else "", "num"),
            cell(f"{num(r.get('step_ratio'), 3)}×" if not _bad(r.get("step_ratio")) else "–",
                 sort_value(r.get("step_ratio")), "num"),
            cell(nbytes(r.get("peak_mem_bytes")), sort_value(r.get("peak_mem_bytes")), "num"),
            cell(num(r.get("state_bytes_per_param"), 3), sort_value(r.get("state_bytes_per_param")), "num"),
            *deltas,
            cell(div_text or "–"),
            cell(status_text(r.get("status_counts") or {}), sort_value(n_runs_c)),
            cell(str(int(r.get("n_configs") or 0)), sort_value(r.get("n_configs")), "num"),
        ]})
    return {"cols": cols, "rows": out}


def runs_table(summary: pd.DataFrame, root: str, metric: str) -> dict:
    cols = [col("run"), col("optimizer"), col("configuration"), col("precision"), col("seed", num_=True),
            col("status"), col(f"final val {metric}", num_=True), col(f"final test {metric}", num_=True),
            col("steps→target", num_=True), col("time→target", num_=True), col("train time", num_=True),
            col("step time", num_=True), col("peak mem", num_=True), col("started")]
    rows = []
    keep = [c for c in ("run_id", "optimizer", "config_label", "hparams_label", "precision", "seed", "status",
                        "status_message", "final_val", "final_test", "steps_to_target", "time_to_target_s",
                        "total_train_time_s", "step_time_ratio_adamw", "peak_mem_bytes", "started_at")
            if c in summary.columns]
    s = summary[keep].sort_values(["optimizer", "config_label", "precision", "seed"], kind="stable")
    for r in s.to_dict("records"):
        st = str(r.get("status"))
        rows.append({"cls": "", "cells": [
            cell(str(r["run_id"]), str(r["run_id"]), h=f"{root}{run_page(r['run_id'])}"),
            cell(str(r["optimizer"])),
            cell(r.get("config_label") or "defaults", None, "wrap", ti=r.get("hparams_label") or ""),
            cell(text(r.get("precision"))),
            cell(text(r.get("seed")), sort_value(r.get("seed")), "num"),
            cell(st, None, f"status-{safe_name(st)}", ti=text(r.get("status_message"))[:300]),
            cell(num(r.get("final_val")), sort_value(r.get("final_val")), "num"),
            cell(num(r.get("final_test")), sort_value(r.get("final_test")), "num"),
            cell(num(r.get("steps_to_target"), 6), sort_value(r.get("steps_to_target")), "num"),
            cell(seconds(r.get("time_to_target_s")), sort_value(r.get("time_to_target_s")), "num"),
            cell(seconds(r.get("total_train_time_s")), sort_value(r.get("total_train_time_s")), "num"),
            cell(f"{num(r.get('step_time_ratio_adamw'), 3)}×" if not _bad(r.get("step_time_ratio_adamw")) else "–",
                 sort_value(r.get("step_time_ratio_adamw")), "num"),
            cell(nbytes(r.get("peak_mem_bytes")), sort_value(r.get("peak_mem_bytes")), "num"),
            cell(text(r.get("started_at"))),
        ]})
    return {"cols": cols, "rows": rows}


def pairs_table(df: pd.DataFrame, root: str) -> dict:
    cols = [col("task"), col("root"), col("test metric (root)", num_=True), col("root-free"),
            col("test metric (root-free)", num_=True),
            col("Δ root-free − root", "Welch 95% interval of the difference", True),
            col("p", "two-sided Welch t-test", True), col("steps→target root / rf", num_=True),
            col("time→target root / rf", num_=True), col("step time root / rf", num_=True),
            col("state B/param root / rf", num_=True), col("SGD reference", "CNN tasks only", True)]
    rows = []
    for r in df.to_dict("records"):
        href = f"{root}tasks/{task_slug(r['tier'], r['task'])}.html"

        def side(prefix):  # both sides have runs (pairs_view), but maybe none finished
            if _bad(r.get(f"{prefix}_test_mean")):
                return cell("no finished run", "", "num muted")
            return _ci_cell(r[f"{prefix}_test_mean"], r[f"{prefix}_test_half"], r[f"{prefix}_test_n"])

        diff, p = r.get("diff"), r.get("p")
        verdict = []
        if not _bad(r.get("diff_half")):
            verdict.append(f"± {num(r.get('diff_half'), 2)}")
        if not _bad(p):
            free_better = (float(diff) > 0) == bool(r.get("higher_is_better"))
            verdict.append(("root-free better" if free_better else "root better") if p < 0.05 else "not significant")
        rows.append({"cls": "", "cells": [
            cell(r["task"], h=href, s=r.get("metric_name") or ""),
            cell(r["root"]), side("root"), cell(r["free"], rf=True), side("free"),
            cell(signed(diff), sort_value(diff), "num", s=" · ".join(verdict), sc="ci"),
            cell(num(r.get("p"), 2), sort_value(r.get("p")), "num"),
            cell(f"{num(r.get('root_stt'), 6)} / {num(r.get('free_stt'), 6)}", sort_value(r.get("free_stt")), "num"),
            cell(f"{seconds(r.get('root_ttt'))} / {seconds(r.get('free_ttt'))}", sort_value(r.get("free_ttt")), "num"),
            cell(f"{num(r.get('root_step_ratio'), 3)} / {num(r.get('free_step_ratio'), 3)}",
                 sort_value(r.get("free_step_ratio")), "num"),
            cell(f"{num(r.get('root_state_bytes_per_param'), 3)} / {num(r.get('free_state_bytes_per_param'), 3)}",
                 sort_value(r.get("free_state_bytes_per_param")), "num"),
            (_ci_cell(r.get("sgd_test_mean"), r.get("sgd_test_half"), r.get("sgd_test_n") or 0)
             if r.get("sgd_reference") and not _bad(r.get("sgd_test_mean"))
             else cell("no sgd runs" if r.get("sgd_reference") else "", "", "num muted")),
        ]})
    return {"cols": cols, "rows": rows}


def pairs_view(df: pd.DataFrame) -> tuple[dict, list[dict]]:
    """(table of the pairs with runs on both sides, per task the pairs that lack one side).

    Every registered pair is crossed with every task, so most pairs of a lightly run task have no runs;
    listing them as empty rows buried the comparisons that exist (the quick tier had 51 such rows).
    """
    if not len(df):
        return pairs_table(df, ""), []
    both = agg.both_sides_ran(df)

    def label(r):
        lacking = r["root"] if r["free_present"] else r["free"] if r["root_present"] else "either"
        return f"{r['root']}/{r['free']} (no runs of {lacking})"

    missing = [{"task": task, "href": f"tasks/{task_slug(g['tier'].iloc[0], task)}.html",
                "pairs": [label(r) for r in g.to_dict("records")]}
               for task, g in df[~both].groupby("task", sort=True)]
    return pairs_table(df[both], ""), missing


# ---------------------------------------------------------------------------------------------
# pages

def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=False, lstrip_blocks=False, undefined=jinja2.ChainableUndefined)
    return env


def _template_hash() -> str:
    h = hashlib.sha256(PAGE_VERSION.encode())
    for name in sorted(os.listdir(TEMPLATES)):
        with open(os.path.join(TEMPLATES, name), "rb") as f:
            h.update(name.encode() + f.read())
    with open(__file__, "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:16]


def _write(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def _rel(path: str, root: str) -> str:
    """``path`` relative to ``root`` (paths come from walking ``root``, so a prefix cut is enough)."""
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)


def _link_or_copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _site_info(model: dict) -> dict:
    from rootbench.harness import __version__
    from rootbench.harness.provenance import git_state

    sha, dirty = git_state()
    return {"n_runs": len(model["summary"]), "version": __version__,
            "git_sha": (sha[:10] + ("+dirty" if dirty else "")) if sha != "unknown" else "",
            "built_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def render_pages(model: dict, out: str, env, site: dict, warnings: list[str], plots: bool = True) -> dict:
    """index, pairs, across, methodology, downloads and one page per (tier, task); returns timings."""
    from rootbench.leaderboard import plots as P
    from markupsafe import Markup

    timings = {}
    ov = model["overview"]
    opt_info = model["opt_info"]
    all_opts = sorted(model["summary"]["optimizer"].astype(str).unique()) if len(model["summary"]) else []
    style = P.styles(all_opts, model["pairs"])
    common = {"site": site}
    tiers = []
    t0 = time.perf_counter()
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
            tview["overview"] = overview_table(rows, opt_info, "", task_href="")
            tv["tasks"].append(tview)
            # the per-task page
            page = dict(tview)
            page["overview"] = overview_table(rows, opt_info, "../")
            page["runs"] = runs_table(s, "../", metric)
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
            _write(os.path.join(out, "tasks", f"{slug}.html"),
                   env.get_template("task.html.j2").render(root="../", page="task", title=f"{task} ({tier})",
                                                           tier=tv, task=page, **common))
        tiers.append(tv)
    timings["task_pages"] = time.perf_counter() - t0

    _write(os.path.join(out, "index.html"), env.get_template("index.html.j2").render(
        root="", page="index", title="Overview", tiers=tiers, warnings=warnings, **common))

    # root vs root-free
    rvf = model["root_vs_free"]
    ptiers = []
    for tier, _ in groups(model):
        tv = tier_view(tier)
        tv["pairs"], tv["pairs_missing"] = pairs_view(rvf[rvf["tier"] == tier] if len(rvf) else rvf)
        ptiers.append(tv)
    _write(os.path.join(out, "pairs.html"), env.get_template("pairs.html.j2").render(
        root="", page="pairs", title="Root vs root-free", tiers=ptiers, pairs=model["pairs"],
        **common))

    # across tasks
    t0 = time.perf_counter()
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
            tv["profile_steps_svg"] = Markup(P.profile_svg(a["profile_steps"], style, xlabel="τ (steps-to-target / fewest)",
                                                           title=f"steps-to-target profile, {tier} tier"))
        tv["reference_present"] = a["reference_present"]
        tv["speedup"] = {"cols": [col("optimizer"), col("profile score (time)", num_=True),
                                  col("profile score (steps)", num_=True),
                                  col("tasks reached", num_=True),
                                  col(f"speedup vs {agg.REFERENCE_OPTIMIZER} (time)", "geometric mean", True),
                                  col(f"speedup vs {agg.REFERENCE_OPTIMIZER} (steps)", "geometric mean", True)],
                         "rows": [{"cls": "", "cells": [
                             cell(r["optimizer"], rf=bool(opt_info.get(r["optimizer"], {}).get("root_free"))),
                             cell(num(r["score"], 3), sort_value(r["score"]), "num"),
                             cell(num(r["score_steps"], 3), sort_value(r["score_steps"]), "num"),
                             cell(f"{r['n_reached']}/{len(a['tasks'])}", r["n_reached"], "num"),
                             cell(f"{num(r['speedup_time'], 3)}×" if not _bad(r["speedup_time"]) else "–",
                                  sort_value(r["speedup_time"]), "num", s=f"over {r['n_time']} tasks"),
                             cell(f"{num(r['speedup_steps'], 3)}×" if not _bad(r["speedup_steps"]) else "–",
                                  sort_value(r["speedup_steps"]), "num", s=f"over {r['n_steps']} tasks"),
                         ]} for r in a["speedup"].to_dict("records")]}
        rk = a["ranks"]
        tv["ranks"] = {"cols": [col("optimizer"), col("mean rank", num_=True), col("tasks", num_=True)]
                       + [col(t, num_=True) for t in a["tasks"]],
                       "rows": [{"cls": "", "cells": [cell(r["optimizer"]),
                                                      cell(num(r["mean_rank"], 3), sort_value(r["mean_rank"]), "num"),
                                                      cell(str(int(r["n_tasks"])), r["n_tasks"], "num")]
                                 + [cell(num(r[t], 3), sort_value(r[t]), "num",
                                         h=f"tasks/{task_slug(tier, t)}.html" if not _bad(r[t]) else "")
                                    for t in a["tasks"]]} for r in rk.to_dict("records")]}
        atiers.append(tv)
    from rootbench.harness.stats import TAU_MAX

    _write(os.path.join(out, "across.html"), env.get_template("across.html.j2").render(
        root="", page="across", title="Across tasks", tiers=atiers, tau_max=int(TAU_MAX),
        reference=agg.REFERENCE_OPTIMIZER, **common))
    timings["across"] = time.perf_counter() - t0

    # methodology
    hw = model["hardware"]
    hw_table = {"cols": [col(c) for c in ["tier", "device", "cpu", "threads", "torch", "cuda", "host", "runs",
                                          "tasks", "first run", "last run", "git commits"]],
                "rows": [{"cls": "", "cells": [cell(text(r.get("tier"))), cell(text(r.get("device"))),
                                               cell(text(r.get("cpu"))), cell(text(r.get("num_threads"))),
                                               cell(text(r.get("torch_version"))), cell(text(r.get("cuda_version"))),
                                               cell(text(r.get("hostname"))),
                                               cell(str(r["n_runs"]), r["n_runs"], "num"),
                                               cell(text(r.get("tasks")), None, "wrap"),
                                               cell(text(r.get("first"))), cell(text(r.get("last"))),
                                               cell(text(r.get("git_shas")), None, "wrap")]}
                         for r in hw.to_dict("records")]}
    s = model["summary"]
    set_cols = [c for c in s.columns if c.startswith("task_") and c != "task_source_hash"]
    ts_rows = []
    for tier, task_names in groups(model):
        for task in task_names:
            g = s[(s["tier"] == tier) & (s["task"] == task)]
            settings = []
            for c in set_cols:
                vals = sorted({agg.format_value(v) for v in g[c] if not _bad(v)})
                if vals:
                    settings.append(f"{c[5:]}={'/'.join(vals)}")
            ts_rows.append({"cls": "", "cells": [cell(tier), cell(task, h=f"tasks/{task_slug(tier, task)}.html"),
                                                 cell(", ".join(settings) or "–", None, "wrap")]})
    opt_rows = []
    for name, i in sorted(opt_info.items()):
        if not i.get("in_results"):
            continue
        opt_rows.append({"cls": "", "cells": [
            cell(name, rf=bool(i.get("root_free"))), cell("yes" if i.get("registered") else "no (not in this checkout)"),
            cell(text(i.get("family") or None)), cell(text(i.get("pair") or None)),
            cell(i.get("description") or "–", None, "wrap"),
            cell(i.get("paper") or "–", h=i.get("paper") if str(i.get("paper") or "").startswith("https://") else "")]})
    _write(os.path.join(out, "methodology.html"), env.get_template("methodology.html.j2").render(
        root="", page="methodology", title="Methodology", hardware=hw_table,
        task_settings={"cols": [col("tier"), col("task"), col("settings")], "rows": ts_rows},
        optimizers={"cols": [col("optimizer"), col("registered"), col("family"), col("pair"), col("description"),
                             col("paper")], "rows": opt_rows},
        tier_info={t: tier_view(t) for t in ("smoke", "quick", "full")}, tau_max=int(TAU_MAX),
        reference=agg.REFERENCE_OPTIMIZER, **common))
    return timings


RESULT_COLUMNS = ("run_id", "task", "tier", "optimizer", "seed", "precision", "status", "config_id")


SPLIT_ORDER = ("train_batch", "train", "val", "test", "run")


def _curve_table(pts: dict | None, metric: str) -> tuple[dict, dict]:
    """A run's evaluations as a step x (split, metric) table, and the final (last finite) values."""
    curve, finals = {"cols": [], "rows": []}, {}
    if pts is None or not len(pts["step"]):
        return curve, finals
    keys = sorted({(sp, m) for sp, m in zip(pts["split"], pts["metric"])},
                  key=lambda k: (SPLIT_ORDER.index(k[0]) if k[0] in SPLIT_ORDER else 9, str(k)))
    table: dict = {}
    for st, sp, m, v, tt in zip(pts["step"], pts["split"], pts["metric"], pts["value"], pts["train_time_s"]):
        row = table.setdefault(-1 if _bad(st) else int(st), {"time": tt})
        row[(sp, m)] = v
    steps = sorted(table)
    for k in keys:
        for st in reversed(steps):
            v = table[st].get(k)
            if not _bad(v) and math.isfinite(float(v)):
                finals[k] = v
                break
    curve["cols"] = ["step", "train clock"] + [f"{sp} {m}" for sp, m in keys]
    curve["rows"] = [[str(st), seconds(table[st]["time"])] + [num(table[st].get(k)) for k in keys] for st in steps]
    return curve, finals


def run_view(r: dict, pts: dict | None, root_rel: str, runs_root: str) -> dict:
    """Everything a run page shows, from that run's own data only (so unchanged pages can be reused)."""
    hp = [(k[3:], agg.format_value(v)) for k, v in sorted(r.items()) if k.startswith("hp_") and not _bad(v)]
    ts = [(k[5:], agg.format_value(v)) for k, v in sorted(r.items())
          if k.startswith("task_") and k != "task_source_hash" and not _bad(v)]
    metric = text(r.get("metric_name"))
    curve, finals = _curve_table(pts, metric)
    results = [("metric", f"{metric} ({'higher' if r.get('higher_is_better') else 'lower'} is better)"),
               ("final train", num(finals.get(("train", metric)))), ("final val", num(finals.get(("val", metric)))),
               ("final test", num(finals.get(("test", metric)))), ("final test loss", num(finals.get(("test", "loss")))),
               ("target (val)", num(r.get("target"))), ("steps to target", num(r.get("steps_to_target"), 6)),
               ("time to target", seconds(r.get("time_to_target_s"))),
               ("steps completed", num(r.get("steps_completed"), 8))]
    meas = [("train time", seconds(r.get("total_train_time_s"))), ("eval time", seconds(r.get("total_eval_time_s"))),
            ("setup time", seconds(r.get("setup_time_s"))), ("wall time", seconds(r.get("wall_time_s"))),
            ("step time / fused AdamW", f"{num(r.get('step_time_ratio_adamw'), 3)}×"),
            ("optimizer step", seconds(r.get("opt_step_time_s"))), ("AdamW step", seconds(r.get("adamw_step_time_s"))),
            ("peak memory above baseline", f"{nbytes(r.get('peak_mem_bytes'))} ({text(r.get('peak_mem_kind'))})"),
            ("peak memory total", nbytes(r.get("peak_mem_total_bytes"))),
            ("optimizer state", f"{nbytes(r.get('opt_state_bytes'))} ({num(r.get('opt_state_bytes_per_param'), 3)} B/param)"),
            ("parameters", num(r.get("n_params"), 12)), ("parameter bytes", nbytes(r.get("param_bytes"))),
            ("data source", text(r.get("data_source"))), ("data wait share", num(r.get("data_wait_share"), 3)),
            ("family / weight decay", f"{text(r.get('family'))} / {text(r.get('wd_kind'))}")]
    prov = [(k, text(r.get(k))) for k in ("git_sha", "git_dirty", "rootbench_version", "torch_version",
                                          "cuda_version", "device", "cpu", "num_threads", "hostname",
                                          "python_version", "started_at", "schema_version",
                                          "optimizer_source_hash", "task_source_hash") if k in r]
    try:
        cfg = json.dumps(json.loads(r.get("config_json") or "{}"), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        cfg = text(r.get("config_json"))
    rel = _rel(r["path"], runs_root).replace(os.sep, "/")
    status = text(r.get("status"))
    return {"run_id": str(r["run_id"]), "task": text(r.get("task")), "optimizer": text(r.get("optimizer")),
            "seed": text(r.get("seed")), "precision": text(r.get("precision")), "status": status,
            "status_cls": safe_name(status), "status_message": "" if _bad(r.get("status_message")) else str(r["status_message"]),
            "traceback": "" if _bad(r.get("traceback")) else str(r["traceback"]),
            "task_href": f"{root_rel}tasks/{task_slug(str(r.get('tier')), str(r.get('task')))}.html",
            "parquet_href": f"{root_rel}data/runs/{quote(rel)}", "parquet_size": nbytes(r.get("file_size")),
            "results": results, "hparams": hp or [("–", "none recorded")], "task_settings": ts or [("–", "none recorded")],
            "measurements": meas, "provenance": prov, "curve": curve, "config_json": cfg}


_RUN_TEMPLATE = []  # per process: the compiled run-page template


def render_run_page(run: dict, points, out: str, runs_root: str, version: str) -> None:
    """Write one run's page from that run alone. ``points``: a pyarrow table or a dict of columns.

    Used as the loader's per-file hook, so pages are rendered in the workers that read the files."""
    if not _RUN_TEMPLATE:
        _RUN_TEMPLATE.append(_env().get_template("run.html.j2"))
    if points is not None and not isinstance(points, dict):
        points = {c: points.column(c).to_pylist() for c in ("step", "split", "metric", "value", "train_time_s")}
    run = dict(run)
    try:
        run["file_size"] = os.path.getsize(run["path"])
    except OSError:
        run["file_size"] = None
    rid = str(run["run_id"])
    site = {"version": version, "n_runs": None, "built_at": None, "git_sha": ""}  # nothing build-specific
    _write(os.path.join(out, run_page(rid)),
           _RUN_TEMPLATE[0].render(root="../", page="run", title=f"run {rid}", run=run_view(run, points, "../", runs_root),
                                   tier=tier_view(str(run.get("tier"))), site=site))


def run_pages_key(version: str) -> str:
    """What a run page depends on besides its run: the templates, this module and the version."""
    return f"{_template_hash()}:{version}"


def render_run_pages(model: dict, out: str, previous: str | None, version: str, runs_root: str,
                     manifest_old: dict, done: set) -> dict:
    """Pages of the runs the loader did not render (``done``): unchanged ones are linked from the
    previous site, the rest rendered here."""
    key = run_pages_key(version)
    s = model["summary"]
    old = manifest_old.get("pages", {}) if manifest_old.get("template_hash") == key else {}
    pages, todo, reused = {}, [], 0
    for rid, fp, path in zip(s["run_id"].astype(str), s["fingerprint"].astype(str), s["path"]):
        pages[rid] = fp
        if rid in done:
            continue
        rel = run_page(rid)
        src_old = os.path.join(previous, rel) if previous else None
        if previous and old.get(rid) == fp and os.path.exists(src_old):
            _link_or_copy(src_old, os.path.join(out, rel))
            reused += 1
        else:
            todo.append(rid)
    if todo:
        wanted = set(todo)
        pts = model["points"]
        pts = pts[pts["run_id"].isin(wanted)]
        index = pts.groupby("run_id", sort=False, observed=True).indices if len(pts) else {}
        cols = {c: pts[c].to_numpy(dtype=object if c in ("split", "metric") else None)
                for c in ("step", "split", "metric", "value", "train_time_s")} if len(pts) else {}
        for r in s[s["run_id"].astype(str).isin(wanted)].to_dict("records"):
            idx = index.get(str(r["run_id"]))
            render_run_page(r, {k: v[idx] for k, v in cols.items()} if idx is not None else None, out, runs_root,
                            version)
    return {"pages": pages, "template_hash": key, "rendered": len(done) + len(todo), "reused": reused}


# ---------------------------------------------------------------------------------------------
# data exports

def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that mix types (a hyperparameter that is a string in one run and a number in another)
    are stored as text, so that pyarrow can write them."""
    import pyarrow as pa

    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            try:
                pa.array(df[c], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                df[c] = df[c].map(lambda v: None if _bad(v) else str(v))
    return df


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``_arrow_safe``, and list-valued cells (a tier setting such as a tuple of milestones) as JSON text:
    CSV has no list type."""
    df = _arrow_safe(df)
    for c in df.columns:
        if df[c].dtype == object and df[c].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).any():
            df[c] = df[c].map(lambda v: json.dumps(v.tolist() if isinstance(v, np.ndarray) else v, default=str)
                              if isinstance(v, (list, tuple, dict, np.ndarray)) else v)
    return df


def write_data(model: dict, results: loader.Results, out: str, runs_root: str) -> list[dict]:
    """Per-run parquet copies, runs/points tables (also the next build's cache), the combined
    ``results.parquet`` and the CSV files. Returns the download list."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    runs = results.runs
    for p in runs["path"]:
        _link_or_copy(p, os.path.join(data, "runs", _rel(p, runs_root)))
    runs_safe = _arrow_safe(runs)
    runs_t = pa.Table.from_pandas(runs_safe, preserve_index=False)
    pq.write_table(runs_t, os.path.join(data, "runs.parquet"))
    points = results.points
    points_t = pa.Table.from_pandas(points, preserve_index=False)
    pq.write_table(points_t, os.path.join(data, "points.parquet"))
    # all results, denormalised the way the run files are (run-level columns on every row)
    run_index = pd.Series(np.arange(len(runs)), index=runs["run_id"].astype(str))
    take = run_index.reindex(points["run_id"].astype(str)).to_numpy()
    ok = ~np.isnan(take.astype(float)) if len(take) else np.zeros(0, bool)
    keep_runs = [c for c in runs_t.column_names if c not in ("fingerprint", "n_rows", "run_id")
                 and c not in loader.POINT_COLUMNS]
    positions = take[ok].astype(np.int32)
    indices = pa.array(positions)
    combined = points_t.filter(pa.array(ok)) if len(take) else points_t
    for c in keep_runs:
        column = runs_t.column(c).combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # a dictionary column repeats each run's text by reference, not by copy (config_json is long);
            # parquet wants nulls in the indices, not in the dictionary
            valid = np.asarray(column.is_valid())
            codes = pa.array(positions, mask=~valid[positions]) if column.null_count else indices
            combined = combined.append_column(
                c, pa.DictionaryArray.from_arrays(codes, column.fill_null("") if column.null_count else column))
        else:
            combined = combined.append_column(c, column.take(indices))
    pq.write_table(combined, os.path.join(data, "results.parquet"))
    # CSV: normalised (a denormalised CSV repeats the config on every row and grows ~10x)
    summary = model["summary"]
    ids = summary[["run_id", "task", "tier", "optimizer", "seed", "precision", "status", "config_id"]].astype(
        {"run_id": str}) if len(summary) else pd.DataFrame(columns=list(RESULT_COLUMNS))
    long = points.merge(ids, on="run_id", how="inner")
    long = long[list(RESULT_COLUMNS) + list(loader.POINT_COLUMNS)]
    pacsv.write_csv(pa.Table.from_pandas(_csv_safe(long), preserve_index=False), os.path.join(data, "results.csv"))
    run_cols = [c for c in summary.columns if c not in ("fingerprint", "n_rows")]
    pacsv.write_csv(pa.Table.from_pandas(_csv_safe(summary[run_cols]), preserve_index=False),
                    os.path.join(data, "runs.csv"))
    md = markdown(model)
    _write(os.path.join(data, "overview.md"), md)
    files = [("results.parquet", "every curve row of every run with all run-level columns (tidy, as written by the runner)"),
             ("results.csv", "every curve row with the identifying columns (join runs.csv on run_id)"),
             ("runs.csv", "one row per run: configuration, status, measurements, provenance, final values"),
             ("runs.parquet", "one row per run (as loaded; also this site's build cache)"),
             ("points.parquet", "curve rows keyed by run_id (as loaded; also this site's build cache)"),
             ("overview.md", "the overview tables as Markdown (rootbench site --markdown)")]
    return [{"cls": "", "cells": [cell(name, h=f"data/{name}"), cell(nbytes(os.path.getsize(os.path.join(data, name))),
                                                                        None, "num"), cell(desc, None, "wrap")]}
            for name, desc in files]


# ---------------------------------------------------------------------------------------------
# Markdown

def _md_escape(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def markdown(model: dict) -> str:
    """The overview as GitHub Markdown: one table per (tier, task)."""
    ov = model["overview"]
    lines = ["# rootbench leaderboard", "",
             "Best configuration per optimizer, selected on validation; test metric = mean ± 95% t-interval over "
             "seeds (n). vs best: one-sided Welch t-test at p = 0.05 (≈ best: not significantly worse; n/a: fewer "
             "than two seeds). Tiers are never mixed.", ""]
    if ov.empty:
        lines.append("_No runs yet._")
        return "\n".join(lines) + "\n"
    for tier, task_names in groups(model):
        lines += [f"## {tier_view(tier)['title']}", ""]
        for task in task_names:
            rows = ov[(ov["tier"] == tier) & (ov["task"] == task)].to_dict("records")
            if not rows:
                continue
            metric = rows[0]["metric_name"]
            better = "higher" if rows[0]["higher_is_better"] else "lower"
            lines += [f"### {_md_escape(task)} ({_md_escape(metric)}, {better} is better)", "",
                      "| # | optimizer | configuration | test metric | vs best | steps→target | time→target | "
                      "step time ×AdamW | state B/param | configs | runs |",
                      "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
            for r in rows:
                sel = bool(r.get("selected"))
                ci = "" if _bad(r.get("test_half")) else f" ± {num(r['test_half'], 2)}"
                test = f"{num(r.get('test_mean'))}{ci} (n={int(r.get('test_n') or 0)})" if sel else "–"
                sig = SIG_TEXT.get(r.get("significance") or "n/a", ("n/a", ""))[0]
                if r.get("significance") in ("tied", "worse") and not _bad(r.get("p_vs_best")):
                    sig += f" (p={num(r['p_vs_best'], 2)})"
                lines.append("| " + " | ".join(_md_escape(x) for x in (
                    num(r.get("rank"), 3), r["optimizer"],
                    (r.get("config_label") or "defaults") + f" [{r.get('precision')}]" if sel else "no finished run",
                    test, sig, num(r.get("stt"), 6) if sel else "–", seconds(r.get("ttt")) if sel else "–",
                    num(r.get("step_ratio"), 3), num(r.get("state_bytes_per_param"), 3),
                    int(r.get("n_configs") or 0), status_text(r.get("status_counts") or {}))) + " |")
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the build

def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise SiteError(f"--out {out} is a file; give a folder")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise SiteError(f"--out {out} exists and is not a rootbench site (no {MARKER}); "
                        "choose another folder or empty it")


def build(runs_root: str = "runs", out: str = "site", warn=None, jobs: int | None = None, reuse: bool = True,
          plots: bool = True, log=None) -> dict:
    """Build the site into ``out``; returns counts and timings. Data problems only warn."""
    warn = warn or (lambda m: print(f"rootbench site: warning: {m}", file=sys.stderr))
    log = log or (lambda m: None)
    _check_out(out)
    t_start = time.perf_counter()
    timings = {}
    warnings: list[str] = []

    def _warn(m):
        warnings.append(m)
        warn(m)

    if not os.path.isdir(runs_root):
        _warn(f"no results folder {runs_root}; the site will be empty (run `make bench` first)")
    previous = out if reuse and os.path.exists(os.path.join(out, MARKER)) else None
    manifest_old = {}
    if previous and os.path.exists(os.path.join(previous, "data", "build.json")):
        try:
            with open(os.path.join(previous, "data", "build.json")) as f:
                manifest_old = json.load(f)
        except (OSError, ValueError):
            manifest_old = {}
    # the previous build's tables are reused only if they were made the way this code makes them
    cache = os.path.join(previous, "data") if previous and manifest_old.get("cache_version") == loader.CACHE_VERSION \
        else None
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.building-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, "runs"))
    try:
        from rootbench.harness import __version__

        registries = threading.Thread(target=_import_registries, daemon=True)
        registries.start()  # overlaps the torch import with reading the run files
        # run pages are rendered by the workers that read the files (a page depends on its run alone)
        hook = functools.partial(render_run_page, out=tmp, runs_root=runs_root, version=__version__)
        results = loader.load(runs_root, _warn, previous=cache, jobs=jobs, each=hook)
        timings["load"] = time.perf_counter() - t_start
        registries.join()
        log(f"loaded {len(results.runs)} runs ({results.n_read} files read, {results.n_reused} reused) "
            f"in {timings['load']:.1f} s")
        t0 = time.perf_counter()
        model = compute(results)
        timings["aggregate"] = time.perf_counter() - t0
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write("built by `rootbench site`; this whole folder is replaced by the next build\n")
        with open(os.path.join(tmp, ".nojekyll"), "w") as f:
            f.write("")
        os.makedirs(os.path.join(tmp, "static"))
        for name in os.listdir(STATIC):
            shutil.copyfile(os.path.join(STATIC, name), os.path.join(tmp, "static", name))
        env = _env()
        site = _site_info(model)
        t0 = time.perf_counter()
        timings.update(render_pages(model, tmp, env, site, warnings, plots=plots))
        timings["pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_pages = render_run_pages(model, tmp, previous, __version__, runs_root, manifest_old, results.read_ids)
        timings["run_pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = write_data(model, results, tmp, runs_root)
        timings["data"] = time.perf_counter() - t0
        _write(os.path.join(tmp, "downloads.html"), env.get_template("downloads.html.j2").render(
            root="", page="downloads", title="Downloads", site=site,
            files={"cols": [col("file"), col("size", num_=True), col("contents")], "rows": files}))
        with open(os.path.join(tmp, "data", "build.json"), "w") as f:
            json.dump({"cache_version": loader.CACHE_VERSION, "template_hash": run_pages["template_hash"],
                       "pages": run_pages["pages"], "built_at": site["built_at"], "n_runs": site["n_runs"]}, f)
        # swap: the old site disappears only once the new one is complete
        trash = None
        if os.path.exists(out):
            trash = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.old-{os.getpid()}")
            os.rename(out, trash)
        os.rename(tmp, out)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t_start
    return {"n_runs": len(results.runs), "n_read": results.n_read, "n_reused": results.n_reused,
            "pages_rendered": run_pages["rendered"], "pages_reused": run_pages["reused"],
            "warnings": warnings, "timings": timings, "out": out}


def cmd_site(args) -> int:
    from rootbench.harness.cli import EXIT_OK, _err

    def warn(m):
        print(f"rootbench site: warning: {m}", file=sys.stderr)

    if args.markdown is not None:
        registries = threading.Thread(target=_import_registries, daemon=True)
        registries.start()
        results = loader.load(args.runs, warn, jobs=args.jobs)
        registries.join()
        md = markdown(compute(results))
        if args.markdown == "-":
            sys.stdout.write(md)
        else:
            _write(os.path.abspath(args.markdown), md)
            print(f"wrote {args.markdown}")
        return EXIT_OK
    try:
        info = build(args.runs, args.out, warn=warn, jobs=args.jobs, reuse=not args.clean)
    except SiteError as e:
        return _err(str(e))
    t = info["timings"]
    print(f"site: {info['n_runs']} runs ({info['n_read']} files read, {info['n_reused']} reused; "
          f"{info['pages_rendered']} run pages rendered, {info['pages_reused']} reused) in {t['total']:.1f} s "
          f"-> {os.path.join(info['out'], 'index.html')}")
    if info["warnings"]:
        print(f"{len(info['warnings'])} warning(s) above; the site lists them too", file=sys.stderr)
    return EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("site", help="build the static leaderboard site from runs/",
                              description="Build the static leaderboard (HTML, inline SVG, no network at view time).")
    p.add_argument("--runs", default="runs", help="results folder (default runs)")
    p.add_argument("--out", default="site", help="site folder, replaced as a whole (default site)")
    p.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE",
                   help="only write the overview as Markdown, to stdout or FILE")
    p.add_argument("--jobs", type=int, default=None, help="processes for reading many run files (default: CPUs)")
    p.add_argument("--clean", action="store_true", help="do not reuse anything from the previous build")
    p.set_defaults(func=cmd_site)
