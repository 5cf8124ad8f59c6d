"""Aggregation for the leaderboard: pure functions from the loaded tables to plain tables.

Vocabulary:

* a **run** is one parquet file (one seed of one configuration);
* a **configuration** is everything that defines a run except its seed: the optimizer's hyperparameters
  (``hp_*``), the task's tier settings (``task_*``) and the precision; its ``config_id`` hashes them;
  a **setting** is the same without the precision (``setting_id``), so that the fp32, bf16 and
  bf16-pure twins of one configuration can be compared;
* numbers are never pooled across tasks or tiers: every table is grouped by ``(tier, task)`` first.

Selection (``select_best``) uses only the validation metric. Eligible are an optimizer's configurations
with at least one finished run, in fp32 when it has any fp32 runs (other precisions are compared with
the selected setting, not selected on), and replicated: with at least min(3, the most finished seeds of
any of its configurations) finished seeds, so a one-seed trial never beats the multi-seed rerun of a
sweep's selection on a lucky seed. Among them, those whose preconditioner took over from its initial
value (no seed's final ``warm_start_share`` above ``harness.search.WARM_START_LIMIT``, the sweeps' rule)
come first, then those in which no seed diverged or failed,
then the best mean final validation metric over seeds, then more finished seeds, then the config id
(so the choice is deterministic). Test numbers are reported for the selected configuration, never used
to select it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from rootbench.harness import search, stats

TIER_ORDER = ("full", "long", "quick", "smoke")
PRECISION_ORDER = ("fp32", "bf16", "bf16-pure", "fp16")
STATUS_ORDER = ("ok", "diverged", "timeout", "oom", "error")
FAILED = ("oom", "timeout", "error")
REFERENCE_PRECISION = "fp32"  # selection happens here; other precisions are reported against it
MIN_REPLICATES = 3  # a selected configuration needs this many finished seeds where any configuration has them
# The benchmark's two fixed references, the only optimizer names this package spells out (everything else,
# such as which optimizers pair up across the square root, is declared by the registry):
REFERENCE_OPTIMIZER = "adamw"  # the tuned baseline of the geometric-mean speedup (as in AlgoPerf)
CNN_REFERENCE = "sgd"  # claim 1's generalisation reference on the tasks that declare model_kind "cnn"


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """String columns as Python objects: pandas' arrow-backed strings make row-wise access (``to_dict``, masks on
    small frames) several times slower, and the site reads these tables row by row."""
    cols = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)]
    return df.astype({c: object for c in cols}) if cols else df


def tier_key(tier: str) -> tuple:
    return (TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER), str(tier))


def precision_key(p: str) -> tuple:
    return (PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER), str(p))


# ---------------------------------------------------------------------------------------------
# per run


def _missing(v) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return isinstance(v, float) and math.isnan(v)
    except TypeError:
        return False


def _canonical(v):
    """A value as it goes into a configuration hash: numbers as floats so 10 and 10.0 agree."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return str(v)


def format_value(v) -> str:
    """A hyperparameter value for display: floats in %g, everything else as text."""
    if _missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return f"{float(v) + 0.0:g}"  # + 0.0: no "-0"
    return str(v)


def config_identity(run: Mapping) -> dict:
    """``config_id``, ``setting_id`` and display strings of one run (a mapping of its columns)."""
    hp = {k[3:]: _canonical(v) for k, v in run.items() if k.startswith("hp_") and not _missing(v)}
    task = {
        k[5:]: _canonical(v)
        for k, v in run.items()
        if k.startswith("task_") and not _missing(v) and k not in ("task_source_hash",)
    }
    setting = json.dumps({"hp": hp, "task": task}, sort_keys=True, default=str)
    precision = str(run.get("precision") or "fp32")
    config = json.dumps({"hp": hp, "task": task, "precision": precision}, sort_keys=True, default=str)
    return {
        "setting_id": hashlib.sha256(setting.encode()).hexdigest()[:10],
        "config_id": hashlib.sha256(config.encode()).hexdigest()[:10],
        "hparams_label": ", ".join(f"{k}={format_value(v)}" for k, v in sorted(hp.items())),
    }


def summarize(runs: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its configuration ids and final train/val/test values.

    ``final_<split>`` is the last finite value of the task metric on that split (``final_<split>_loss``
    the loss); ``gap`` is final train metric minus final test metric.
    """
    df = runs.copy()
    for col, default in (
        ("metric_name", "loss"),
        ("higher_is_better", False),
        ("status", "error"),
        ("status_message", ""),
        ("precision", "fp32"),
        ("target", np.nan),
        ("steps_to_target", np.nan),
        ("time_to_target_s", np.nan),
    ):
        if col not in df.columns:
            df[col] = default
        elif default is not np.nan:
            df[col] = df[col].where(df[col].notna(), default)
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    df["metric_name"] = df["metric_name"].astype(str)
    df["status"] = df["status"].astype(str)
    for col in ("steps_to_target", "time_to_target_s", "target"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    # the loader computes the ids from each file's own values; compute them here for other frames
    todo = df["config_id"].isna() if "config_id" in df.columns else pd.Series(True, index=df.index)
    if todo.any():
        cols = [c for c in df.columns if c.startswith(("hp_", "task_"))] + ["precision"]
        ids = [config_identity(r) for r in df.loc[todo, cols].to_dict("records")]
        for key in ("setting_id", "config_id", "hparams_label"):
            if key not in df.columns:
                df[key] = None
            df.loc[todo, key] = [i[key] for i in ids]
    if not len(df):
        for key in ("setting_id", "config_id", "hparams_label"):
            df[key] = pd.Series(dtype=str)
    df["ok"] = df["status"] == "ok"
    df["config_label"] = config_labels(df) if len(df) else pd.Series(dtype=str)

    final_cols = ("final_train", "final_val", "final_test", "final_train_loss", "final_val_loss", "final_test_loss")
    if not all(c in df.columns for c in final_cols):  # the loader computes them per run; other frames here
        df = df.drop(columns=[c for c in final_cols if c in df.columns])
        df = df.merge(final_values(points, df[["run_id", "metric_name"]]), on="run_id", how="left")
    for c in final_cols:
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["gap"] = df["final_train"] - df["final_test"]
    return plain(df)


def config_labels(df: pd.DataFrame) -> list[str]:
    """Short names of configurations: the learning rate plus the hyperparameters and task settings that
    vary among one optimizer's runs on one task (the full set is ``hparams_label`` and the run page)."""
    labels = [""] * len(df)
    hp_cols = [c for c in df.columns if c.startswith("hp_")]
    values = {c: df[c].to_numpy() for c in hp_cols}
    varying_tasks = varying_task_settings(df)
    for c in {c for cols in varying_tasks.values() for c in cols}:
        values[c] = df[c].to_numpy()
    for key, idx in df.groupby(["tier", "task", "optimizer"], sort=False).indices.items():
        shown = []
        for c in hp_cols:
            vals = [v for v in values[c][idx] if not _missing(v)]
            if vals and (c == "hp_lr" or len(idx) > len(vals) or len({repr(v) for v in vals}) > 1):
                shown.append(c)
        settings = varying_tasks.get((key[0], key[1]), [])
        for i in idx:
            hp = ", ".join(f"{c[3:]}={format_value(values[c][i])}" for c in shown if not _missing(values[c][i]))
            ts = ", ".join(f"{c[5:]}={format_value(values[c][i])}" for c in settings if not _missing(values[c][i]))
            labels[i] = "; ".join(x for x in (hp, ts) if x) or "defaults"
    return labels


def final_values(points: pd.DataFrame, metric_names: pd.DataFrame) -> pd.DataFrame:
    """Per run: last finite value of (split, task metric) and (split, loss) for train/val/test."""
    out = metric_names[["run_id"]].copy()
    if points.empty:
        return out
    p = points[points["split"].isin(("train", "val", "test")) & points["value"].notna()]
    p = p[np.isfinite(p["value"].to_numpy(dtype=float))]
    p = p.merge(metric_names, on="run_id", how="inner")
    p = p.sort_values(["run_id", "split", "metric", "step"], kind="stable")
    last = p.drop_duplicates(["run_id", "split", "metric"], keep="last")
    metric = last[last["metric"] == last["metric_name"]].pivot(index="run_id", columns="split", values="value")
    metric.columns = [f"final_{c}" for c in metric.columns]
    loss = last[last["metric"] == "loss"].pivot(index="run_id", columns="split", values="value")
    loss.columns = [f"final_{c}_loss" for c in loss.columns]
    return out.merge(metric, left_on="run_id", right_index=True, how="left").merge(
        loss, left_on="run_id", right_index=True, how="left"
    )


# ---------------------------------------------------------------------------------------------
# per configuration

GROUP = ["tier", "task", "optimizer"]


def _mean(values) -> float:
    """Mean of the finite values (a handful per configuration: plain Python beats numpy's call overhead)."""
    total, n = 0.0, 0
    for v in values.tolist() if isinstance(values, np.ndarray) else values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            total, n = total + f, n + 1
    return total / n if n else float("nan")


def _max(values) -> float:
    finite = [float(v) for v in values if not _missing(v) and math.isfinite(float(v))]
    return max(finite) if finite else float("nan")


def configs(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (tier, task, optimizer, config_id) with seed statistics of its runs.

    Metric statistics (val, test, train, gap) use the finished (``ok``) runs; time- and steps-to-target
    are the median over all seeds with a miss counting as infinite (AlgoPerf's convention).
    """
    cols = [
        "tier",
        "task",
        "optimizer",
        "config_id",
        "setting_id",
        "precision",
        "hparams_label",
        "config_label",
        "metric_name",
        "higher_is_better",
        "n_runs",
        "n_ok",
        "n_diverged",
        "n_failed",
        "status_counts",
        "seeds",
        "run_ids",
        "val_mean",
        "test_mean",
        "test_half",
        "test_n",
        "test_sd",
        "test_values",
        "train_mean",
        "gap_mean",
        "ttt",
        "stt",
        "n_reached",
        "target",
        "step_ratio",
        "peak_mem_bytes",
        "state_bytes_per_param",
        "train_time_s",
        "hp_lr",
        "warm_start_max",
        "n_state_frozen",
    ]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    s = summary
    arr = {
        c: s[c].to_numpy()
        for c in (
            "run_id",
            "seed",
            "status",
            "final_val",
            "final_test",
            "final_train",
            "gap",
            "time_to_target_s",
            "steps_to_target",
            "setting_id",
            "precision",
            "hparams_label",
            "config_label",
            "metric_name",
            "higher_is_better",
        )
    }
    optional = {}
    for c in (
        "step_time_ratio_adamw",
        "peak_mem_bytes",
        "opt_state_bytes_per_param",
        "total_train_time_s",
        "hp_lr",
        "target",
        "warm_start_share",
        "state_frozen",
    ):
        optional[c] = (
            pd.to_numeric(s[c], errors="coerce").astype("float64").to_numpy()
            if c in s.columns
            else np.full(len(s), np.nan)
        )
    rows = []
    for key, idx in s.groupby(GROUP + ["config_id"], sort=False).indices.items():
        first = {
            c: arr[c][idx[0]]
            for c in ("setting_id", "precision", "hparams_label", "config_label", "metric_name", "higher_is_better")
        }
        status = arr["status"][idx]
        ok = idx[status == "ok"]
        counts = {k: int((status == k).sum()) for k in STATUS_ORDER if (status == k).any()}
        for k in sorted(set(status) - set(STATUS_ORDER)):
            counts[str(k)] = int((status == k).sum())
        test = stats.finite(arr["final_test"][ok])
        ci = stats.mean_ci(test)
        ttt_runs = arr["time_to_target_s"][idx].astype(float)
        stt_runs = arr["steps_to_target"][idx].astype(float)
        failed_any = np.isin(status, FAILED)
        ttt_runs = np.where(failed_any, np.nan, ttt_runs)  # a crashed seed never "reached" the target
        stt_runs = np.where(failed_any, np.nan, stt_runs)
        rows.append(
            {
                "tier": key[0],
                "task": key[1],
                "optimizer": key[2],
                "config_id": key[3],
                "setting_id": first["setting_id"],
                "precision": first["precision"],
                "hparams_label": first["hparams_label"],
                "config_label": first["config_label"],
                "metric_name": first["metric_name"],
                "higher_is_better": bool(first["higher_is_better"]),
                "n_runs": len(idx),
                "n_ok": len(ok),
                "n_diverged": counts.get("diverged", 0),
                "n_failed": int(failed_any.sum()),
                "status_counts": counts,
                "seeds": sorted(int(x) for x in arr["seed"][idx] if not _missing(x)),
                "run_ids": [str(r) for r in arr["run_id"][idx]],
                "val_mean": _mean(arr["final_val"][ok]),
                "test_mean": ci.mean,
                "test_half": ci.half,
                "test_n": ci.n,
                "test_sd": ci.sd,
                "test_values": [float(v) for v in test],
                "train_mean": _mean(arr["final_train"][ok]),
                "gap_mean": _mean(arr["gap"][ok]),
                "ttt": stats.median_with_inf(ttt_runs),
                "stt": stats.median_with_inf(stt_runs),
                "n_reached": int(np.isfinite(ttt_runs).sum()),
                "target": _mean(optional["target"][idx]),
                "step_ratio": _mean(optional["step_time_ratio_adamw"][idx]),
                "peak_mem_bytes": _mean(optional["peak_mem_bytes"][idx]),
                "state_bytes_per_param": _mean(optional["opt_state_bytes_per_param"][idx]),
                "train_time_s": _mean(optional["total_train_time_s"][ok]),
                "hp_lr": _mean(optional["hp_lr"][idx]),
                "warm_start_max": _max(optional["warm_start_share"][idx]),
                # seeds whose state could not move (an EMA factor rounds to 1 in the state dtype)
                "n_state_frozen": int((optional["state_frozen"][idx] == 1).sum()),  # NaN (unknown) is not 1
            }
        )
    return plain(pd.DataFrame(rows, columns=cols))


def selection_key(row: Mapping) -> tuple:
    """Sort key of a configuration: smaller is better (see the module docstring)."""
    val = row["val_mean"]
    if not row["higher_is_better"]:
        score = val
    else:
        score = -val
    score = math.inf if _missing(score) else score
    warm = row.get("warm_start_max", math.nan)
    warm_started = not _missing(warm) and warm > search.WARM_START_LIMIT  # heavy-ball SGD in disguise
    return (warm_started, row["n_diverged"] + row["n_failed"] > 0, score, -row["n_ok"], str(row["config_id"]))


def select_best(configs_df: pd.DataFrame) -> pd.DataFrame:
    """The selected configuration per (tier, task, optimizer): chosen on validation, never on test.

    Only configurations with at least one finished seed (and a validation value) are eligible; an
    optimizer without any is left out here (the overview still lists it with its status counts).
    """
    if configs_df.empty:
        return configs_df.copy()
    eligible = configs_df[(configs_df["n_ok"] > 0) & configs_df["val_mean"].notna()]
    groups: dict = {}
    for r in eligible.to_dict("records"):  # one conversion; per-group frames are slow at 10k runs
        groups.setdefault(tuple(r[k] for k in GROUP), []).append(r)
    best = []
    for rs in groups.values():
        rs = [r for r in rs if str(r["precision"]) == REFERENCE_PRECISION] or rs
        replicated = min(MIN_REPLICATES, max(int(r["n_ok"]) for r in rs))
        best.append(min((r for r in rs if r["n_ok"] >= replicated), key=selection_key))
    return plain(pd.DataFrame(best, columns=configs_df.columns))


# ---------------------------------------------------------------------------------------------
# overview


def overview(
    summary: pd.DataFrame, configs_df: pd.DataFrame, alpha: float = stats.ALPHA, best: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (tier, task, optimizer), ranked within (tier, task) by the selected config's test mean.

    Columns beside the selected configuration's statistics: ``n_configs`` (tuning budget: distinct hyperparameter
    settings tried; a setting rerun in another precision is not another one tried), ``n_runs``, ``status_counts``
    over all runs, ``divergence`` per precision (``{precision: [diverged, runs]}``), ``delta_<precision>`` (test
    mean of the same setting in that precision minus fp32, with ``n_<precision>``), ``rank``, ``p_vs_best``
    (one-sided Welch p-value that the best is better) and ``significance`` in {"best", "tied", "worse", "n/a"}.
    """
    renamed = {"n_runs": "config_n_runs", "status_counts": "config_status_counts"}
    cols = [
        "tier",
        "task",
        "optimizer",
        "rank",
        "significance",
        "p_vs_best",
        "n_configs",
        "n_runs",
        "status_counts",
        "divergence",
        "selected",
    ] + [renamed.get(c, c) for c in configs_df.columns if c not in GROUP]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    best = select_best(configs_df) if best is None else best
    best_by = {tuple(r[k] for k in GROUP): r for r in best.to_dict("records")}
    conf_by_setting = {
        (r["tier"], r["task"], r["optimizer"], r["setting_id"], r["precision"]): r
        for r in configs_df.to_dict("records")
    }
    rows = []
    a = {c: summary[c].to_numpy() for c in ("status", "precision", "setting_id", "metric_name", "higher_is_better")}
    for key, idx in summary.groupby(GROUP, sort=False).indices.items():
        status, precision = a["status"][idx], a["precision"][idx].astype(str)
        counts = {k: int((status == k).sum()) for k in STATUS_ORDER if (status == k).any()}
        divergence = {
            str(p): [int(((precision == p) & (status == "diverged")).sum()), int((precision == p).sum())]
            for p in sorted(set(precision), key=precision_key)
        }
        row = {
            "tier": key[0],
            "task": key[1],
            "optimizer": key[2],
            "n_configs": len(set(a["setting_id"][idx])),
            "n_runs": len(idx),
            "status_counts": counts,
            "divergence": divergence,
            "metric_name": a["metric_name"][idx[0]],
            "higher_is_better": bool(a["higher_is_better"][idx[0]]),
        }
        chosen = best_by.get(key)
        row["selected"] = chosen is not None
        if chosen is not None:  # the selected configuration's own counts keep a config_ prefix
            row.update({renamed.get(k, k): v for k, v in chosen.items() if k not in GROUP})
            fp32 = conf_by_setting.get((*key, chosen["setting_id"], "fp32"))
            for p in PRECISION_ORDER[1:]:
                other = conf_by_setting.get((*key, chosen["setting_id"], p))
                if fp32 is not None and other is not None:
                    row[f"delta_{p}"] = other["test_mean"] - fp32["test_mean"]
                    row[f"n_{p}"] = [int(other["test_n"]), int(fp32["test_n"])]
                    row[f"diverged_{p}"] = [int(other["n_diverged"]), int(other["n_runs"])]
                    row[f"frozen_{p}"] = [int(other["n_state_frozen"]), int(other["n_runs"])]
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in cols + [f"{k}_{p}" for k in ("delta", "n", "diverged", "frozen") for p in PRECISION_ORDER[1:]]:
        if c not in df.columns:
            df[c] = np.nan if not c.startswith(("n_", "diverged_", "frozen_")) else None
    return _rank(df, alpha)


def _rank(df: pd.DataFrame, alpha: float) -> pd.DataFrame:
    out = []
    for _, g in df.groupby(["tier", "task"], sort=False):
        g = g.copy()
        higher = bool(g["higher_is_better"].iloc[0])
        means = g["test_mean"].astype(float)
        order = means.sort_values(ascending=not higher, na_position="last").index
        g = g.loc[order]
        g["rank"] = [i + 1 if math.isfinite(m) else np.nan for i, m in enumerate(g["test_mean"].astype(float))]
        sig, pvals = [], []
        best_values = g["test_values"].iloc[0] if len(g) and math.isfinite(float(g["test_mean"].iloc[0])) else None
        for i, (_, r) in enumerate(g.iterrows()):
            if best_values is None or not math.isfinite(float(r["test_mean"])):
                sig.append("n/a")
                pvals.append(np.nan)
            elif i == 0:
                sig.append("best")
                pvals.append(np.nan)
            else:
                p = stats.better_p(best_values, r["test_values"], higher)
                pvals.append(p)
                sig.append("n/a" if math.isnan(p) else ("tied" if p >= alpha else "worse"))
        g["significance"], g["p_vs_best"] = sig, pvals
        out.append(g)
    df = pd.concat(out, ignore_index=True)
    df["_t"] = df["tier"].map(tier_key)
    df = df.sort_values(["_t", "task"], kind="stable").drop(columns="_t").reset_index(drop=True)
    return plain(df)


# ---------------------------------------------------------------------------------------------
# root vs root-free


def both_sides_ran(rvf: pd.DataFrame) -> pd.Series:
    """Mask of the ``root_vs_free`` rows whose root and root-free optimizers both have runs (comparable pairs)."""
    return rvf["root_present"].astype(bool) & rvf["free_present"].astype(bool)


def root_vs_free(
    overview_df: pd.DataFrame,
    pairs: list[tuple[str, str]],
    cnn_tasks: Iterable[str] = (),
    every_task: Iterable[tuple[str, str]] = (),
) -> pd.DataFrame:
    """For every (tier, task) and every (root, root-free) pair: both selected configurations and their difference.

    The pairs in ``every_task`` get a row on every task; the others only where one side has runs.
    ``diff`` = root-free minus root test mean; ``diff_half`` its Welch 95 % CI half-width; ``p`` the
    two-sided Welch p-value (NaN with fewer than two seeds a side). On ``cnn_tasks`` the SGD reference
    (``CNN_REFERENCE``) is attached as ``sgd_*`` columns.
    """
    cnn, everywhere = set(cnn_tasks), set(every_task)
    rows = []
    if overview_df.empty:
        return pd.DataFrame(rows)
    sel = overview_df[overview_df["selected"].astype(bool)]
    by = {(r["tier"], r["task"], r["optimizer"]): r for r in sel.to_dict("records")}
    any_run = {(r["tier"], r["task"], r["optimizer"]): r for r in overview_df.to_dict("records")}
    tasks = overview_df[["tier", "task", "metric_name", "higher_is_better"]].drop_duplicates(["tier", "task"])
    for t in tasks.to_dict("records"):
        for root, free in pairs:
            a, b = by.get((t["tier"], t["task"], root)), by.get((t["tier"], t["task"], free))
            present = [(t["tier"], t["task"], o) in any_run for o in (root, free)]
            if (root, free) not in everywhere and not any(present):
                continue  # a variant's one-sided pair would otherwise add an empty row to every task
            row = {
                "tier": t["tier"],
                "task": t["task"],
                "metric_name": t["metric_name"],
                "higher_is_better": t["higher_is_better"],
                "root": root,
                "free": free,
                "root_present": (t["tier"], t["task"], root) in any_run,
                "free_present": (t["tier"], t["task"], free) in any_run,
            }
            for side, r in (("root", a), ("free", b)):
                for c in (
                    "test_mean",
                    "test_half",
                    "test_n",
                    "hparams_label",
                    "config_label",
                    "config_id",
                    "ttt",
                    "stt",
                    "step_ratio",
                    "state_bytes_per_param",
                    "peak_mem_bytes",
                    "n_reached",
                    "n_runs",
                ):
                    row[f"{side}_{c}"] = r[c] if r is not None else np.nan
            if a is not None and b is not None:
                w = stats.welch(b["test_values"], a["test_values"])
                row.update(diff=b["test_mean"] - a["test_mean"], diff_half=w.half, p=w.p)
            else:
                row.update(diff=np.nan, diff_half=np.nan, p=np.nan)
            ref = by.get((t["tier"], t["task"], CNN_REFERENCE)) if t["task"] in cnn else None
            row["sgd_reference"] = t["task"] in cnn
            for c in ("test_mean", "test_half", "test_n", "hparams_label", "config_label"):
                row[f"sgd_{c}"] = ref[c] if ref is not None else np.nan
            rows.append(row)
    return plain(pd.DataFrame(rows))


# ---------------------------------------------------------------------------------------------
# hardware

HARDWARE_COLUMNS = ("device", "cpu", "num_threads", "torch_version", "cuda_version", "hostname")


def hardware(summary: pd.DataFrame) -> pd.DataFrame:
    """Which machine and software produced which runs: one row per distinct provenance, per tier."""
    cols = [c for c in HARDWARE_COLUMNS if c in summary.columns]
    if summary.empty:
        return pd.DataFrame(columns=["tier", *cols, "n_runs", "tasks", "first", "last", "git_shas"])
    s = summary.copy()
    for c in cols:
        s[c] = s[c].map(lambda v: "–" if _missing(v) else str(v))
    rows = []
    for key, g in s.groupby(["tier", *cols], sort=False):
        started = g["started_at"].dropna().astype(str) if "started_at" in g.columns else pd.Series([], dtype=str)
        shas = sorted(set(str(x)[:10] for x in g.get("git_sha", pd.Series([], dtype=str)).dropna()))
        rows.append(
            {
                "tier": key[0],
                **dict(zip(cols, key[1:])),
                "n_runs": len(g),
                "tasks": ", ".join(sorted(g["task"].astype(str).unique())),
                "first": started.min() if len(started) else "",
                "last": started.max() if len(started) else "",
                "git_shas": ", ".join(shas[:5]) + (f" (+{len(shas) - 5})" if len(shas) > 5 else ""),
            }
        )
    df = pd.DataFrame(rows)
    df["_t"] = df["tier"].map(tier_key)
    return df.sort_values(["_t", "n_runs"], ascending=[True, False]).drop(columns="_t").reset_index(drop=True)


def varying_task_settings(summary: pd.DataFrame) -> dict:
    """Per (tier, task): the ``task_*`` settings that differ between its runs (shown beside configs)."""
    out = {}
    cols = [c for c in summary.columns if c.startswith("task_") and c != "task_source_hash"]
    values = {c: summary[c].to_numpy() for c in cols}
    for key, idx in summary.groupby(["tier", "task"], sort=False).indices.items():
        out[key] = [c for c in cols if len({"<missing>" if _missing(v) else repr(v) for v in values[c][idx]}) > 1]
    return out
