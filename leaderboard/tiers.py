"""Does the cheaper tier predict the longer one? Kendall's tau of the optimizer rankings per task.

For every task run at two tiers (quick and long, say), the optimizers whose selected fp32 configuration has
test values at both are ordered by their test means at each tier; tau-b compares the two orderings
(``harness.stats.rank_agreement``: 1 the same order, -1 reversed, 0 unrelated), and its 95 % interval
resamples each optimizer's seeds, so an agreement the seed noise could undo shows as a wide interval. That
interval says nothing about how few optimizers were ranked, so ``p`` does: the exact chance of a tau this high
if the two orderings were unrelated (1/6 for three optimizers in the same order, 1/720 for six). Orders are
compared as they are: a metric where lower is better reverses both sides alike.
"""

from __future__ import annotations

import pandas as pd

from rootbench.harness import stats
from rootbench.leaderboard.aggregate import TIER_ORDER

COLUMNS = ["task", "cheap", "dear", "n", "tau", "low", "high", "p", "cheap_order", "dear_order"]


def ranked_tiers(tiers) -> list[str]:
    """``tiers`` that rank optimizers, cheapest first (smoke excluded: its seconds-long runs rank nothing)."""
    present = set(tiers)
    return [t for t in reversed(TIER_ORDER) if t in present and t != "smoke"]


def selected_tiers(overview: pd.DataFrame) -> list[str]:
    """The tiers holding selected configurations in ``overview`` (the configurations table), cheapest first."""
    return ranked_tiers(overview.loc[overview["selected"].astype(bool), "tier"] if len(overview) else [])


def tier_pairs(tiers) -> list[tuple[str, str]]:
    """Consecutive (cheaper, longer) pairs among ``tiers`` that hold results, smoke excluded."""
    present = ranked_tiers(tiers)
    return list(zip(present, present[1:], strict=False))


def _values(overview: pd.DataFrame, tier: str, task: str) -> dict:
    rows = overview[(overview["tier"] == tier) & (overview["task"] == task) & overview["selected"].astype(bool)]
    return {r["optimizer"]: list(r["test_values"] or []) for r in rows.to_dict("records")}


def _order(values: dict, higher_is_better: bool) -> str:
    means = {k: float(stats.finite(v).mean()) for k, v in values.items() if len(stats.finite(v))}
    return " > ".join(sorted(means, key=lambda k: -means[k] if higher_is_better else means[k]))


def agreement(overview: pd.DataFrame, cheap: str, dear: str) -> pd.DataFrame:
    """One row per task run at both tiers: tau of the optimizer orderings with its bootstrap interval."""
    if overview.empty:
        return pd.DataFrame(columns=COLUMNS)
    tasks = set(overview.loc[overview["tier"] == cheap, "task"]) & set(overview.loc[overview["tier"] == dear, "task"])
    rows = []
    for task in sorted(tasks):
        a, b = _values(overview, cheap, task), _values(overview, dear, task)
        shared = sorted(set(a) & set(b))
        a, b = {k: a[k] for k in shared}, {k: b[k] for k in shared}
        higher = bool(overview.loc[overview["task"] == task, "higher_is_better"].iloc[0])
        r = stats.rank_agreement(a, b)
        rows.append(
            {
                "task": task,
                "cheap": cheap,
                "dear": dear,
                "n": r.n,
                "tau": r.tau,
                "low": r.low,
                "high": r.high,
                "p": r.p,
                "cheap_order": _order(a, higher),
                "dear_order": _order(b, higher),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
