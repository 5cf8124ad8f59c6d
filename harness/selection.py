"""Selection on validation: pure functions of a sweep's runs, best first on the final validation value of the
task's metric; failed, non-finite and warm-start dominated trials rank last (the test split is never read)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rootbench.harness import search


def _final(g: pd.DataFrame, split: str, metric: str) -> float:
    sel = g[(g["split"] == split) & (g["metric"] == metric)]
    return float(sel.sort_values("step", kind="stable")["value"].iloc[-1]) if len(sel) else float("nan")


def trial_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run (first-seen order): run_id, status, final ``val`` and ``test`` of the task metric."""
    out = []
    for rid, g in runs.groupby("run_id", sort=False):
        metric = g["metric_name"].iloc[0]
        out.append(
            {
                "run_id": rid,
                "status": g["status"].iloc[0],
                "metric_name": metric,
                "val": _final(g, "val", metric),
                "test": _final(g, "test", metric),
            }
        )
    return pd.DataFrame(out, columns=["run_id", "status", "metric_name", "val", "test"])


def rank_trials(table: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """``table`` sorted best first by ``val`` alone; ``valid`` is False (ranked last) for non-ok or non-finite
    trials and for warm-start dominated ones (final ``warm_start_share`` above ``search.WARM_START_LIMIT``:
    the preconditioner never took over, so the trial measures heavy-ball SGD, not the method)."""
    t = table.reset_index(drop=True).copy()
    t["order"] = range(len(t))
    share = t["warm_start_share"].astype(float) if "warm_start_share" in t.columns else pd.Series(np.nan, t.index)
    t["warm_started"] = share > search.WARM_START_LIMIT
    t["valid"] = (t["status"] == "ok") & np.isfinite(t["val"].astype(float)) & ~t["warm_started"]
    t["key"] = np.where(t["valid"], -t["val"] if higher_is_better else t["val"], np.inf)
    t = t.sort_values(["valid", "key", "order"], ascending=[False, True, True], kind="stable")
    t["rank"] = range(1, len(t) + 1)
    return t.drop(columns=["key"]).reset_index(drop=True)


def select_best(runs: pd.DataFrame, higher_is_better: bool | None = None) -> str | None:
    """The run_id with the best final validation metric among ok runs; None if no run is ok and finite."""
    if higher_is_better is None:
        higher_is_better = bool(runs["higher_is_better"].iloc[0])
    ranked = rank_trials(trial_table(runs), higher_is_better)
    return ranked["run_id"].iloc[0] if len(ranked) and ranked["valid"].iloc[0] else None


def trial_row(rec) -> dict:
    """run_id, status, final val and test of the task's metric, from one record."""
    metric = rec.get("metric_name") or "loss"
    return {
        "run_id": rec.run_id,
        "status": rec.status,
        "metric_name": metric,
        "val": rec.final("val", metric),
        "test": rec.final("test", metric),
        "warm_start_share": as_float(rec.get("warm_start_share", float("nan"))),
    }


def as_float(x) -> float:
    """``x`` as a float; NaN where a record holds none (a run that failed before measuring it)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def finite_or_none(x):
    """``x`` for a manifest: a float, or None (JSON null) where it is not finite."""
    x = float(x)
    return x if math.isfinite(x) else None
