"""Across tasks, fairly: performance profiles, geometric-mean speedups and mean ranks over the tasks that every
compared optimizer ran, and a head-to-head table over the tasks each two optimizers share.

Why not over all tasks: a task on which an optimizer has no runs is not evidence that it is slow or bad. Scored
over every task of a tier, an optimizer that was run on 17 tasks beats one run on 6 by coverage alone (with the
committed runs: AdamW 0.948 against IF-Shampoo 0.338, where over the six tasks both ran IF-Shampoo scores 0.958
and AdamW 0.853). AlgoPerf integrates its performance profiles over *all* workloads and counts a workload
without a result as infinite time: right for a competition in which every submission must run every workload,
wrong for a benchmark in which optimizers are run on different subsets.

The rule, per tier: the compared optimizers are those with a selected configuration on some task; the common
task set is the tasks on which every compared optimizer has one. While that set holds fewer than two tasks (of
a tier that has two), the optimizer with the fewest tasks is set aside (it is then compared head-to-head only).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rootbench.harness import stats
from rootbench.leaderboard.aggregate import GROUP, REFERENCE_OPTIMIZER, tier_key


def fastest_ttt(configs_df: pd.DataFrame) -> pd.DataFrame:
    """Per (tier, task, optimizer): the fastest configuration's median time- and steps-to-target.

    A time-to-target is a validation quantity, so choosing the fastest configuration by it is
    selection on validation data (AlgoPerf scores the best trial the same way).
    """
    if configs_df.empty:
        return pd.DataFrame(columns=GROUP + ["ttt", "stt", "ttt_config", "stt_config"])
    c = configs_df[GROUP + ["config_id", "ttt", "stt"]].copy()
    c["ttt"] = c["ttt"].astype(float).fillna(math.inf)
    c["stt"] = c["stt"].astype(float).fillna(math.inf)
    t = c.sort_values(GROUP + ["ttt"], kind="stable").drop_duplicates(GROUP)
    s = c.sort_values(GROUP + ["stt"], kind="stable").drop_duplicates(GROUP)
    out = (
        t[GROUP + ["ttt", "config_id"]]
        .rename(columns={"config_id": "ttt_config"})
        .merge(s[GROUP + ["stt", "config_id"]].rename(columns={"config_id": "stt_config"}), on=GROUP)
    )
    return out[GROUP + ["ttt", "stt", "ttt_config", "stt_config"]]


def common_set(coverage: dict[str, set]) -> tuple[list[str], list[str], list[str]]:
    """(compared optimizers, common tasks, optimizers set aside) from ``{optimizer: tasks it ran}``."""
    compared = sorted(o for o, ts in coverage.items() if ts)
    every = set().union(*coverage.values()) if coverage else set()
    need = min(2, len(every))
    aside = []

    def common(opts):
        return set.intersection(*(coverage[o] for o in opts)) if opts else set()

    while len(compared) > 2 and len(common(compared)) < need:
        drop = min(compared, key=lambda o: (len(coverage[o]), [-ord(ch) for ch in o]))
        compared.remove(drop)
        aside.append(drop)
    return compared, sorted(common(compared)), sorted(aside)


def head_to_head(sel: pd.DataFrame, alpha: float = stats.ALPHA) -> pd.DataFrame:
    """For every two optimizers of one tier: over the tasks both ran, on how many the first is significantly
    better (two-sided Welch, p < ``alpha``), significantly worse, not significantly different, or untestable."""
    by = {(r["task"], r["optimizer"]): r for r in sel.to_dict("records")}
    opts = sorted(sel["optimizer"].unique())
    tasks = {o: {t for (t, oo) in by if oo == o} for o in opts}
    rows, tests = [], {}
    for a in opts:
        for b in opts:
            if a == b:
                continue
            shared = sorted(tasks[a] & tasks[b])
            win = loss = tie = na = 0
            for t in shared:
                ra, rb = by[(t, a)], by[(t, b)]
                if (t, b, a) in tests:  # the same test, from the other side
                    w0 = tests[(t, b, a)]
                    w = stats.Welch(-w0.diff, w0.half, -w0.t, w0.df, w0.p, w0.n_b, w0.n_a)
                else:
                    w = tests[(t, a, b)] = stats.welch(ra["test_values"], rb["test_values"])
                if math.isnan(w.p):
                    na += 1
                elif w.p >= alpha:
                    tie += 1
                elif (w.diff > 0) == bool(ra["higher_is_better"]):
                    win += 1
                else:
                    loss += 1
            rows.append(
                {
                    "optimizer": a,
                    "opponent": b,
                    "n_tasks": len(shared),
                    "better": win,
                    "worse": loss,
                    "not_significant": tie,
                    "untestable": na,
                    "tasks": shared,
                }
            )
    return pd.DataFrame(
        rows, columns=["optimizer", "opponent", "n_tasks", "better", "worse", "not_significant", "untestable", "tasks"]
    )


def across_tasks(overview_df: pd.DataFrame, configs_df: pd.DataFrame, reference: str = REFERENCE_OPTIMIZER) -> dict:
    """Per tier: profiles, speedups and ranks over the common task set, and the head-to-head table.

    Returns ``{tier: {"profile", "profile_steps", "speedup", "ranks", "tasks" (the common set), "all_tasks",
    "optimizers" (compared), "set_aside", "head_to_head", "reference_present"}}``.
    """
    out = {}
    if overview_df.empty:
        return out
    fast = fastest_ttt(configs_df)
    for tier in sorted(overview_df["tier"].unique(), key=tier_key):
        ov = overview_df[overview_df["tier"] == tier]
        sel = ov[ov["selected"].astype(bool)]
        coverage = {o: set(g["task"]) for o, g in sel.groupby("optimizer")}
        optimizers, tasks, aside = common_set(coverage)
        f = fast[(fast["tier"] == tier) & fast["task"].isin(tasks) & fast["optimizer"].isin(optimizers)]
        times = {t: {o: math.inf for o in optimizers} for t in tasks}
        steps = {t: {o: math.inf for o in optimizers} for t in tasks}
        for r in f.to_dict("records"):
            times[r["task"]][r["optimizer"]] = r["ttt"]
            steps[r["task"]][r["optimizer"]] = r["stt"]
        profile = stats.performance_profiles(times)
        profile_steps = stats.performance_profiles(steps)
        speed = []
        for o in optimizers:
            sp_t = [
                times[t][reference] / times[t][o]
                for t in tasks
                if reference in times[t] and math.isfinite(times[t][reference]) and math.isfinite(times[t][o])
            ]
            sp_s = [
                steps[t][reference] / steps[t][o]
                for t in tasks
                if reference in steps[t]
                and math.isfinite(steps[t][reference])
                and math.isfinite(steps[t][o])
                and steps[t][o] > 0
            ]
            speed.append(
                {
                    "optimizer": o,
                    "speedup_time": stats.geometric_mean(sp_t),
                    "n_time": len(sp_t),
                    "speedup_steps": stats.geometric_mean(sp_s),
                    "n_steps": len(sp_s),
                    "score": profile["score"].get(o, float("nan")),
                    "score_steps": profile_steps["score"].get(o, float("nan")),
                    "n_reached": sum(math.isfinite(times[t][o]) for t in tasks),
                    "n_tasks": len(tasks),
                }
            )
        speed_df = pd.DataFrame(
            speed,
            columns=[
                "optimizer",
                "speedup_time",
                "n_time",
                "speedup_steps",
                "n_steps",
                "score",
                "score_steps",
                "n_reached",
                "n_tasks",
            ],
        )
        speed_df = speed_df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        rank_rows = {o: {"optimizer": o} for o in optimizers}
        for task in tasks:
            g = sel[(sel["task"] == task) & sel["optimizer"].isin(optimizers)]
            ranks = stats.average_ranks(
                dict(zip(g["optimizer"], g["test_mean"].astype(float))), bool(g["higher_is_better"].iloc[0])
            )
            for o in optimizers:
                rank_rows[o][task] = ranks.get(o, np.nan)
        ranks_df = pd.DataFrame(list(rank_rows.values()), columns=["optimizer"] + tasks)
        ranks_df["mean_rank"] = ranks_df[tasks].mean(axis=1, skipna=True) if tasks else np.nan
        ranks_df["n_tasks"] = ranks_df[tasks].notna().sum(axis=1) if tasks else 0
        ranks_df = ranks_df.sort_values(["mean_rank", "optimizer"], na_position="last", kind="stable")
        out[tier] = {
            "profile": profile,
            "profile_steps": profile_steps,
            "speedup": speed_df,
            "ranks": ranks_df.reset_index(drop=True),
            "tasks": tasks,
            "optimizers": optimizers,
            "all_tasks": sorted(ov["task"].unique()),
            "set_aside": aside,
            "coverage": {o: sorted(ts) for o, ts in coverage.items()},
            "head_to_head": head_to_head(sel),
            "reference_present": reference in optimizers,
        }
    return out
