"""The data behind the figures: mean curves per configuration and learning-rate sensitivity per optimizer.

``config_curves`` groups every curve point once (all tasks together) into one row per (configuration, split,
metric, step): the mean over the configuration's finished seeds (all its seeds when none finished), the
min..max band, the seed count and the mean train clock. Task pages draw the selected configurations' curves
from it, and every other configuration's validation curve for the overlay.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CURVE_SPLITS = ("train", "val", "test")
SENSITIVITY_BINS_PER_DECADE = 2  # the envelope's bins: half a decade of learning rate each
RUN_SPLITS = ("train", "val", "test")  # a run page's curves: the evaluations (the per-step batch loss is in the file)


KEY = ["tier", "task", "optimizer", "config_id"]  # a config id is unique within (tier, task, optimizer) only


def config_curves(points: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (tier, task, optimizer, config_id, split, metric, step) with ``time, mean, lo, hi, n``;
    metric is the task's metric or the loss."""
    cols = KEY + ["split", "metric", "step", "time", "mean", "lo", "hi", "n"]
    if points.empty or summary.empty:
        return pd.DataFrame(columns=cols)
    s = summary[["run_id", *KEY, "metric_name", "ok"]].copy()
    s["run_id"] = s["run_id"].astype(str)
    has_ok = s.groupby(KEY)["ok"].transform("any")
    s = s[s["ok"] | ~has_ok].reset_index(drop=True)  # finished seeds, or all seeds where none finished
    conf = s[KEY].drop_duplicates().reset_index(drop=True)
    conf_no = dict(zip(map(tuple, conf.to_numpy().tolist()), range(len(conf))))
    run_conf = {r: conf_no[tuple(k)] for r, k in zip(s["run_id"], s[KEY].to_numpy().tolist())}
    run_metric = dict(zip(s["run_id"], s["metric_name"].astype(str)))
    # work on category codes: per-row string operations on ~10^6 points are what made this slow
    rid, sp, mt = (points[c].astype("category") for c in ("run_id", "split", "metric"))
    cats = [str(c) for c in rid.cat.categories]
    conf_of_cat = np.array([run_conf.get(c, -1) for c in cats] + [-1])
    wanted_metric = np.array([run_metric.get(c, "") for c in cats] + [""], dtype=object)
    code = rid.cat.codes.to_numpy().astype(np.int64)
    code[code < 0] = len(cats)
    metric_names = np.array([str(m) for m in mt.cat.categories] + [""], dtype=object)
    mcode = mt.cat.codes.to_numpy().astype(np.int64)
    metric_of_row = metric_names[np.where(mcode < 0, len(metric_names) - 1, mcode)]
    split_names = np.array([str(m) for m in sp.cat.categories] + [""], dtype=object)
    scode = sp.cat.codes.to_numpy().astype(np.int64)
    split_of_row = split_names[np.where(scode < 0, len(split_names) - 1, scode)]
    keep = (
        (conf_of_cat[code] >= 0)
        & np.isin(split_of_row, CURVE_SPLITS)
        & np.isfinite(points["value"].to_numpy(dtype=float))
    )
    keep &= (metric_of_row == "loss") | (metric_of_row == wanted_metric[code])
    p = pd.DataFrame(
        {
            "conf": conf_of_cat[code][keep],
            "split": split_of_row[keep],
            "metric": metric_of_row[keep],
            "step": points["step"].to_numpy()[keep],
            "value": points["value"].to_numpy(dtype=float)[keep],
            "time": points["train_time_s"].to_numpy(dtype=float)[keep],
        }
    )
    g = p.groupby(["conf", "split", "metric", "step"], sort=True, observed=True)
    out = g.agg(
        time=("time", "mean"), mean=("value", "mean"), lo=("value", "min"), hi=("value", "max"), n=("value", "size")
    ).reset_index()
    keys = conf.iloc[out["conf"].to_numpy()].reset_index(drop=True)
    out = pd.concat([keys, out.drop(columns="conf")], axis=1)
    out["split"] = out["split"].astype(str)
    out["metric"] = out["metric"].astype(str)
    return out[cols]


def curve_index(curves: pd.DataFrame) -> dict:
    """``config_curves`` as ``{(tier, task, optimizer, config_id, split, metric): {column: numpy array}}``: one
    grouping, then every figure takes its curves by key (filtering a DataFrame per curve is slow at scale)."""
    if not len(curves):
        return {}
    cols = {c: curves[c].to_numpy() for c in ("step", "time", "mean", "lo", "hi", "n")}
    keys = KEY + ["split", "metric"]
    frame = curves[keys].astype(str)
    return {k: {c: v[idx] for c, v in cols.items()} for k, idx in frame.groupby(keys, sort=False).indices.items()}


def curve(index: dict, key: tuple, split: str, metric: str) -> dict | None:
    """One configuration's curve (``{step, time, mean, lo, hi, n}`` arrays) from ``curve_index``."""
    return index.get((*map(str, key), split, metric))


def sensitivity(configs_task: list[dict]) -> dict:
    """Mean final validation metric of every configuration of one (tier, task) against its learning rate.

    ``{optimizer: DataFrame(lr, val, failed, precision, config_id)}`` sorted by lr; configurations without
    ``hp_lr`` are left out; ``failed``: no seed finished (drawn as × on the axis).
    """
    by: dict = {}
    for r in configs_task:
        lr = float(r["hp_lr"]) if r.get("hp_lr") is not None else math.nan
        if math.isfinite(lr) and lr > 0:
            by.setdefault(r["optimizer"], []).append(
                {
                    "lr": lr,
                    "val": float(r["val_mean"]),
                    "failed": r["n_ok"] == 0,
                    "precision": r["precision"],
                    "config_id": r["config_id"],
                }
            )
    return {o: pd.DataFrame(rows).sort_values("lr", kind="stable") for o, rows in sorted(by.items())}


def envelope(d: pd.DataFrame, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best configuration per learning-rate bin (``SENSITIVITY_BINS_PER_DECADE`` bins a decade, aligned
    to decades): (bin low edges, bin high edges, best value). Random search puts one configuration at each
    learning rate, so a line through every point zig-zags with the other hyperparameters; the bin-best
    envelope shows what the learning rate allows."""
    ok = d[~d["failed"] & np.isfinite(d["val"])]
    if ok.empty:
        return np.array([]), np.array([]), np.array([])
    k = np.floor(np.log10(ok["lr"].to_numpy()) * SENSITIVITY_BINS_PER_DECADE)
    vals = ok["val"].to_numpy()
    lo, hi, best = [], [], []
    for b in np.unique(k):
        v = vals[k == b]
        lo.append(10 ** (b / SENSITIVITY_BINS_PER_DECADE))
        hi.append(10 ** ((b + 1) / SENSITIVITY_BINS_PER_DECADE))
        best.append(v.max() if higher_is_better else v.min())
    return np.array(lo), np.array(hi), np.array(best)


def run_curves(pts: dict | None, metric_name: str) -> dict:
    """One run's curves for its page: ``{(split, metric): (steps, values)}`` with finite values only."""
    out = {}
    if pts is None or not len(pts["step"]):
        return out
    step = np.asarray(pts["step"], dtype=float)
    value = np.asarray(pts["value"], dtype=float)
    split = np.asarray(pts["split"], dtype=object)
    metric = np.asarray(pts["metric"], dtype=object)
    for sp in RUN_SPLITS:
        for m in ("loss", metric_name):
            mask = (split == sp) & (metric == m) & np.isfinite(value) & np.isfinite(step)
            if mask.any():
                order = np.argsort(step[mask], kind="stable")
                out[(sp, m)] = (step[mask][order], value[mask][order])
    return out


def last_finite_step(pts: dict | None) -> float:
    """The last step with a finite value (where a diverged run was last seen healthy)."""
    if pts is None or not len(pts["step"]):
        return math.nan
    step = np.asarray(pts["step"], dtype=float)
    ok = np.isfinite(np.asarray(pts["value"], dtype=float)) & np.isfinite(step)
    return float(step[ok].max()) if ok.any() else math.nan
