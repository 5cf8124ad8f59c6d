"""Root vs root-free, one row per comparison: the difference with its CI, which side the data favour, and the
claim verdict that ``leaderboard.verdicts`` decides for it.

Two answers per row, kept apart:

* ``direction`` — descriptive: *root-free better*, *root better* or *not significant* by the two-sided Welch
  test of the pair's test values (p < ``ALPHA``, not corrected for multiple comparisons), *untestable* with
  fewer than two finished seeds a side. This colours the forest plot.
* ``verdict``, ``q`` and ``reason`` — the formal claim verdict (*supported*, *contradicted*, *not testable*)
  of ``verdicts.decide``: one-sided tests in the direction that would contradict the claim, Benjamini-Hochberg
  q within each claim, at least ``verdicts.MIN_SEEDS`` seeds, and the refusals it lists. A pair on a CNN task
  carries claim 1's verdict (root-free against SGD), a pair on a transformer claim 2's (root-free against its
  root-based partner); other tasks belong to no claim.

Differences are oriented so that positive means the root-free method is better (accuracy up, loss down);
``diff`` keeps the raw root-free minus root value. Every row names its tier, seeds and tuning budgets.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rootbench.leaderboard import verdicts as V
from rootbench.leaderboard.aggregate import CNN_REFERENCE, both_sides_ran, tier_key
from rootbench.leaderboard.fmt import anchor

ALPHA = 0.05
DIRECTIONS = ("root-free better", "not significant", "root better", "untestable")
VERDICTS = ("supported", "contradicted", "not testable")
COLUMNS = [
    "tier",
    "task",
    "model_kind",
    "claim",
    "root",
    "free",
    "metric_name",
    "higher_is_better",
    "diff",
    "diff_half",
    "oriented",
    "low",
    "high",
    "p",
    "root_n",
    "free_n",
    "root_budget",
    "free_budget",
    "root_mean",
    "root_half",
    "free_mean",
    "free_half",
    "direction",
    "verdict",
    "q",
    "reason",
    "anchor",
]


def claim_of(kind) -> int | None:
    """The claim a task of this declared model kind speaks to (1: CNNs, 2: transformers), else None."""
    return next((c for c, kinds in V.CLAIM_KINDS.items() if kind in kinds), None)


def direction(oriented: float, p: float, alpha: float = ALPHA) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)) or math.isnan(oriented):
        return "untestable"
    if p >= alpha:
        return "not significant"
    return "root-free better" if oriented > 0 else "root better"


def formal_verdicts(model: dict, warn=None) -> pd.DataFrame:
    """``verdicts.decide`` for every tier (an empty table, with a warning, if it cannot decide)."""
    frames = []
    tiers = sorted(model["overview"]["tier"].unique(), key=tier_key) if len(model["overview"]) else []
    for tier in tiers:
        try:
            df = V.decide(model, tier)
        except Exception as e:  # noqa: BLE001 - a verdict problem must not take the site down
            if warn:
                warn(f"claim verdicts of the {tier} tier could not be computed ({type(e).__name__}: {e})")
            continue
        if len(df):
            frames.append(df.assign(tier=tier))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=V.COLUMNS)


def comparisons(model: dict, formal: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (tier, task, pair) with runs on both sides; see the module docstring."""
    rvf, ov = model["root_vs_free"], model["overview"]
    if not len(rvf):
        return pd.DataFrame(columns=COLUMNS)
    rvf = rvf[both_sides_ran(rvf)]
    budget = {(r["tier"], r["task"], r["optimizer"]): r["n_configs"] for r in ov.to_dict("records")}
    by_claim = {}
    for r in formal.to_dict("records") if len(formal) else []:
        by_claim[(r["tier"], r["task"], r["comparison"])] = r
    kinds = {t: i.get("model_kind") for t, i in model["task_info"].items()}
    rows = []
    for r in rvf.to_dict("records"):
        sign = 1.0 if bool(r["higher_is_better"]) else -1.0
        diff, half = float(r["diff"]), float(r["diff_half"])
        oriented = sign * diff
        claim = claim_of(kinds.get(r["task"]))
        key = {1: f"{r['free']} vs {CNN_REFERENCE} (root: {r['root']})", 2: f"{r['free']} vs {r['root']}"}.get(claim)
        f = by_claim.get((r["tier"], r["task"], key), {}) if key else {}
        rows.append(
            {
                "tier": r["tier"],
                "task": r["task"],
                "model_kind": kinds.get(r["task"]),
                "claim": claim,
                "root": r["root"],
                "free": r["free"],
                "metric_name": r["metric_name"],
                "higher_is_better": bool(r["higher_is_better"]),
                "diff": diff,
                "diff_half": half,
                "oriented": oriented,
                "low": oriented - half,
                "high": oriented + half,
                "p": float(r["p"]),
                "root_n": r["root_test_n"],
                "free_n": r["free_test_n"],
                "root_budget": budget.get((r["tier"], r["task"], r["root"]), np.nan),
                "free_budget": budget.get((r["tier"], r["task"], r["free"]), np.nan),
                "root_mean": r["root_test_mean"],
                "root_half": r["root_test_half"],
                "free_mean": r["free_test_mean"],
                "free_half": r["free_test_half"],
                "direction": direction(oriented, float(r["p"]), alpha),
                "verdict": f.get("verdict") or ("" if claim is None else "not decided"),
                "q": f.get("q", np.nan),
                "reason": f.get("reason") or "",
                "anchor": anchor("cmp", r["tier"], r["task"], r["root"], r["free"]),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["_c"] = df["claim"].fillna(9)
    df["_t"] = df["tier"].map(tier_key)
    return df.sort_values(["_t", "_c", "task"], kind="stable").drop(columns=["_c", "_t"]).reset_index(drop=True)


def direction_tally(cmp: pd.DataFrame) -> list[dict]:
    """Per (tier, claim): how many comparisons favour root-free, root, neither, or cannot say."""
    out = []
    for (tier, claim), g in cmp.groupby(["tier", cmp["claim"].fillna(0)], sort=False):
        counts = g["direction"].value_counts()
        out.append(
            {
                "tier": tier,
                "claim": int(claim) or None,
                "n": len(g),
                "tasks": int(g["task"].nunique()),
                **{d: int(counts.get(d, 0)) for d in DIRECTIONS},
            }
        )
    return out


def verdict_tally(formal: pd.DataFrame) -> list[dict]:
    """Per (tier, claim): the formal verdicts counted (claim 1's root-vs-SGD context rows left out), with the
    most frequent reason a comparison was not testable."""
    out = []
    if not len(formal):
        return out
    decided = formal[formal["verdict"].isin(VERDICTS)]
    for (tier, claim), g in decided.groupby(["tier", "claim"], sort=True):
        counts = g["verdict"].value_counts()
        why = g.loc[g["verdict"] == "not testable", "reason"]
        common = why.str.replace(r"^\S+ (has|is|'s)", r"a method \1", regex=True).value_counts()
        out.append(
            {
                "tier": tier,
                "claim": int(claim),
                "statement": V.CLAIMS.get(int(claim), ""),
                "n": len(g),
                "tasks": int(g["task"].nunique()),
                **{v: int(counts.get(v, 0)) for v in VERDICTS},
                "main_reason": common.index[0] if len(common) else "",
            }
        )
    return sorted(out, key=lambda r: (tier_key(r["tier"]), r["claim"]))


def task_classes(overview: pd.DataFrame, min_replicated: int = 2) -> dict:
    """``{(tier, task): number of optimizers whose selected configuration has two or more finished seeds}``;
    tasks below ``min_replicated`` are reference runs, not comparisons."""
    if overview.empty:
        return {}
    sel = overview[overview["selected"].astype(bool) & (overview["test_n"].fillna(0) >= 2)]
    counts = sel.groupby(["tier", "task"]).size().to_dict()
    return {
        (t, k): int(counts.get((t, k), 0))
        for t, k in overview[["tier", "task"]].drop_duplicates().itertuples(index=False)
    }
