"""The site's tables as plain data: ``{"cols": [Col], "rows": [{"cls": str, "cells": [Cell]}]}``.

Each function turns one model table (``leaderboard.model``) into display strings and sort values; the
templates only lay them out. Nothing here computes a statistic.
"""
from __future__ import annotations

import pandas as pd

from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard.fmt import (SIG_TEXT, ci_cell, cell, col, missing, nbytes, num, ratio, run_page, safe_name,
                                       seconds, signed, sort_value, status_text, task_href, text)


def overview_table(rows: list[dict], opt_info: dict, root: str, task_link: str = "") -> dict:
    """One row per optimizer on one (tier, task): its selected configuration and what it measured."""
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
        sig_s = f"p={num(p, 2)}" if not missing(p) and sig_key in ("tied", "worse") else ""
        selected = bool(r.get("selected"))
        first_run = (r.get("run_ids") or [None])[0] if selected else None
        conf_text = (r.get("config_label") or "defaults") if selected else "no finished run"
        conf_sub = (r.get("precision") or "") if selected else ""
        stt = r.get("stt")
        n_reached = r.get("n_reached")
        reach = f"{int(n_reached)}/{len(r.get('run_ids') or [])}" if selected and not missing(n_reached) else ""
        deltas = []
        for precision in ("bf16", "bf16-pure"):
            d, n = r.get(f"delta_{precision}"), r.get(f"n_{precision}")
            deltas.append(cell(signed(d), sort_value(d), "num",
                               ti=(f"n = {n[0]} ({precision}) vs {n[1]} (fp32) seeds"
                                   if isinstance(n, (list, tuple)) else "")))
        div = r.get("divergence") or {}
        div_text = " · ".join(f"{k} {v[0]}/{v[1]}" for k, v in div.items())
        href = f"{root}{task_link}" if task_link else ""
        out.append({"cls": {"best": "best", "tied": "tied"}.get(sig_key, ""), "cells": [
            cell(num(r.get("rank"), 3), sort_value(r.get("rank")), "num"),
            cell(r["optimizer"], r["optimizer"], h=href, ti=title, rf=bool(info.get("root_free"))),
            cell(conf_text, None, "wrap", h=f"{root}{run_page(first_run)}" if first_run else "", s=conf_sub,
                 ti=(r.get("hparams_label") or "") if selected else ""),
            ci_cell(r.get("test_mean"), r.get("test_half"), r.get("test_n") or 0),
            cell(sig_t, None, sig_c, s=sig_s),
            cell(num(r.get("val_mean")), sort_value(r.get("val_mean")), "num"),
            cell(signed(r.get("gap_mean")), sort_value(r.get("gap_mean")), "num"),
            cell(num(stt, 6) if selected else "–", sort_value(stt) if selected else "", "num", s=reach),
            cell(seconds(r.get("ttt")) if selected else "–", sort_value(r.get("ttt")) if selected else "", "num"),
            cell(ratio(r.get("step_ratio")), sort_value(r.get("step_ratio")), "num"),
            cell(nbytes(r.get("peak_mem_bytes")), sort_value(r.get("peak_mem_bytes")), "num"),
            cell(num(r.get("state_bytes_per_param"), 3), sort_value(r.get("state_bytes_per_param")), "num"),
            *deltas,
            cell(div_text or "–"),
            cell(status_text(r.get("status_counts") or {}), sort_value(r.get("n_runs"))),
            cell(str(int(r.get("n_configs") or 0)), sort_value(r.get("n_configs")), "num"),
        ]})
    return {"cols": cols, "rows": out}


def runs_table(summary: pd.DataFrame, root: str, metric: str) -> dict:
    """Every run of one (tier, task), linking to its page."""
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
            cell(ratio(r.get("step_time_ratio_adamw")), sort_value(r.get("step_time_ratio_adamw")), "num"),
            cell(nbytes(r.get("peak_mem_bytes")), sort_value(r.get("peak_mem_bytes")), "num"),
            cell(text(r.get("started_at"))),
        ]})
    return {"cols": cols, "rows": rows}


def pairs_table(df: pd.DataFrame, root: str) -> dict:
    """Root vs root-free rows (``aggregate.root_vs_free``), with the SGD reference on CNN tasks."""
    cols = [col("task"), col("root"), col("test metric (root)", num_=True), col("root-free"),
            col("test metric (root-free)", num_=True),
            col("Δ root-free − root", "Welch 95% interval of the difference", True),
            col("p", "two-sided Welch t-test", True), col("steps→target root / rf", num_=True),
            col("time→target root / rf", num_=True), col("step time root / rf", num_=True),
            col("state B/param root / rf", num_=True), col("SGD reference", "CNN tasks only", True)]
    rows = []
    for r in df.to_dict("records"):
        diff, p = r.get("diff"), r.get("p")
        verdict = []
        if not missing(r.get("diff_half")):
            verdict.append(f"± {num(r.get('diff_half'), 2)}")
        if not missing(p):
            free_better = (float(diff) > 0) == bool(r.get("higher_is_better"))
            verdict.append(("root-free better" if free_better else "root better") if p < 0.05 else "not significant")
        rows.append({"cls": "", "cells": [
            cell(r["task"], h=f"{root}{task_href(r['tier'], r['task'])}", s=r.get("metric_name") or ""),
            cell(r["root"]), _side(r, "root"), cell(r["free"], rf=True), _side(r, "free"),
            cell(signed(diff), sort_value(diff), "num", s=" · ".join(verdict), sc="ci"),
            cell(num(r.get("p"), 2), sort_value(r.get("p")), "num"),
            cell(f"{num(r.get('root_stt'), 6)} / {num(r.get('free_stt'), 6)}", sort_value(r.get("free_stt")), "num"),
            cell(f"{seconds(r.get('root_ttt'))} / {seconds(r.get('free_ttt'))}", sort_value(r.get("free_ttt")), "num"),
            cell(f"{num(r.get('root_step_ratio'), 3)} / {num(r.get('free_step_ratio'), 3)}",
                 sort_value(r.get("free_step_ratio")), "num"),
            cell(f"{num(r.get('root_state_bytes_per_param'), 3)} / {num(r.get('free_state_bytes_per_param'), 3)}",
                 sort_value(r.get("free_state_bytes_per_param")), "num"),
            (ci_cell(r.get("sgd_test_mean"), r.get("sgd_test_half"), r.get("sgd_test_n") or 0)
             if r.get("sgd_reference") and not missing(r.get("sgd_test_mean"))
             else cell(f"no {agg.CNN_REFERENCE} runs" if r.get("sgd_reference") else "", "", "num muted")),
        ]})
    return {"cols": cols, "rows": rows}


def _side(r: dict, prefix: str):
    """One side of a pair: both sides have runs (``pairs_view``), but maybe none finished."""
    if missing(r.get(f"{prefix}_test_mean")):
        return cell("no finished run", "", "num muted")
    return ci_cell(r[f"{prefix}_test_mean"], r[f"{prefix}_test_half"], r[f"{prefix}_test_n"])


def pairs_view(df: pd.DataFrame) -> tuple[dict, list[dict]]:
    """(table of the pairs with runs on both sides, per task the pairs that lack one side).

    Every declared pair is crossed with every task, so most pairs of a lightly run task have no runs;
    listing them as empty rows buried the comparisons that exist (the quick tier had 51 such rows).
    """
    if not len(df):
        return pairs_table(df, ""), []
    both = agg.both_sides_ran(df)

    def label(r):
        lacking = r["root"] if r["free_present"] else r["free"] if r["root_present"] else "either"
        return f"{r['root']}/{r['free']} (no runs of {lacking})"

    missing_sides = [{"task": task, "href": task_href(g["tier"].iloc[0], task),
                      "pairs": [label(r) for r in g.to_dict("records")]}
                     for task, g in df[~both].groupby("task", sort=True)]
    return pairs_table(df[both], ""), missing_sides


def speedup_table(across: dict, opt_info: dict) -> dict:
    """Per optimizer: profile scores and the geometric-mean speedup against ``REFERENCE_OPTIMIZER``."""
    reference, n_tasks = agg.REFERENCE_OPTIMIZER, len(across["tasks"])
    cols = [col("optimizer"), col("profile score (time)", num_=True), col("profile score (steps)", num_=True),
            col("tasks reached", num_=True), col(f"speedup vs {reference} (time)", "geometric mean", True),
            col(f"speedup vs {reference} (steps)", "geometric mean", True)]
    rows = [{"cls": "", "cells": [
        cell(r["optimizer"], rf=bool(opt_info.get(r["optimizer"], {}).get("root_free"))),
        cell(num(r["score"], 3), sort_value(r["score"]), "num"),
        cell(num(r["score_steps"], 3), sort_value(r["score_steps"]), "num"),
        cell(f"{r['n_reached']}/{n_tasks}", r["n_reached"], "num"),
        cell(ratio(r["speedup_time"]), sort_value(r["speedup_time"]), "num", s=f"over {r['n_time']} tasks"),
        cell(ratio(r["speedup_steps"]), sort_value(r["speedup_steps"]), "num", s=f"over {r['n_steps']} tasks"),
    ]} for r in across["speedup"].to_dict("records")]
    return {"cols": cols, "rows": rows}


def ranks_table(across: dict, tier: str) -> dict:
    """Per optimizer: its rank on every task of the tier and the mean rank."""
    tasks = across["tasks"]
    cols = [col("optimizer"), col("mean rank", num_=True), col("tasks", num_=True)] + [col(t, num_=True) for t in tasks]
    rows = [{"cls": "", "cells": [cell(r["optimizer"]), cell(num(r["mean_rank"], 3), sort_value(r["mean_rank"]), "num"),
                                  cell(str(int(r["n_tasks"])), r["n_tasks"], "num")]
             + [cell(num(r[t], 3), sort_value(r[t]), "num", h=task_href(tier, t) if not missing(r[t]) else "")
                for t in tasks]} for r in across["ranks"].to_dict("records")]
    return {"cols": cols, "rows": rows}


def hardware_table(hw: pd.DataFrame) -> dict:
    """Which machines and software produced the runs (``aggregate.hardware``)."""
    cols = [col(c) for c in ["tier", "device", "cpu", "threads", "torch", "cuda", "host", "runs", "tasks", "first run",
                             "last run", "git commits"]]
    rows = [{"cls": "", "cells": [cell(text(r.get("tier"))), cell(text(r.get("device"))), cell(text(r.get("cpu"))),
                                  cell(text(r.get("num_threads"))), cell(text(r.get("torch_version"))),
                                  cell(text(r.get("cuda_version"))), cell(text(r.get("hostname"))),
                                  cell(str(r["n_runs"]), r["n_runs"], "num"), cell(text(r.get("tasks")), None, "wrap"),
                                  cell(text(r.get("first"))), cell(text(r.get("last"))),
                                  cell(text(r.get("git_shas")), None, "wrap")]}
            for r in hw.to_dict("records")]
    return {"cols": cols, "rows": rows}


def task_settings_table(summary: pd.DataFrame, task_groups, task_info: dict) -> dict:
    """Per (tier, task): its declared model kind and the values its tier settings took."""
    set_cols = [c for c in summary.columns if c.startswith("task_") and c != "task_source_hash"]
    rows = []
    for tier, task_names in task_groups:
        for task in task_names:
            g = summary[(summary["tier"] == tier) & (summary["task"] == task)]
            settings = []
            for c in set_cols:
                vals = sorted({agg.format_value(v) for v in g[c] if not missing(v)})
                if vals:
                    settings.append(f"{c[5:]}={'/'.join(vals)}")
            info = task_info.get(task, {})
            kind = info.get("model_kind") if info.get("registered") else "none declared (not in this checkout)"
            rows.append({"cls": "", "cells": [cell(tier), cell(task, h=task_href(tier, task)), cell(text(kind)),
                                              cell(", ".join(settings) or "–", None, "wrap")]})
    return {"cols": [col("tier"), col("task"), col("model kind", "declared by the task registry (TaskSpec.model_kind)"),
                     col("settings")], "rows": rows}


def optimizers_table(opt_info: dict) -> dict:
    """The optimizers in the results with what the registry declares about them."""
    def root_free(i):
        return {True: "yes", False: "no"}.get(i.get("root_free"), "–")

    rows = [{"cls": "", "cells": [
        cell(name, rf=bool(i.get("root_free"))),
        cell("yes" if i.get("registered") else "no (not in this checkout: nothing declared)"),
        cell(text(i.get("family") or None)), cell(text(i.get("preconditioner") or None)), cell(root_free(i)),
        cell(text(i.get("pair") or None)), cell(i.get("description") or "–", None, "wrap"),
        cell(i.get("paper") or "–", h=i.get("paper") if str(i.get("paper") or "").startswith("https://") else "")]}
        for name, i in sorted(opt_info.items()) if i.get("in_results")]
    return {"cols": [col("optimizer"), col("registered"), col("family"), col("preconditioner"), col("root-free"),
                     col("pair"), col("description"), col("paper")], "rows": rows}


def downloads_table(files: list[tuple[str, int, str]]) -> dict:
    """The data files: (name, size in bytes, contents)."""
    return {"cols": [col("file"), col("size", num_=True), col("contents")],
            "rows": [{"cls": "", "cells": [cell(name, h=f"data/{name}"), cell(nbytes(size), None, "num"),
                                           cell(desc, None, "wrap")]} for name, size, desc in files]}
