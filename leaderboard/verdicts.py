"""The paper's claims decided by code: *supported*, *contradicted* or *not testable (reason)*, per task.

Lin et al. (ICML 2024, https://arxiv.org/abs/2402.03496) claim that removing the square root
(1) closes the generalisation gap to SGD on CNNs, (2) keeps the root-based methods' performance on vision
transformers (here: every ``vit`` and ``transformer`` task), and (3) lets the root-free methods train in
bf16 (their Kronecker method where Shampoo needs fp32). A verdict is computed from the selected
configurations' test values over seeds, never written by hand:

- every comparison is a Welch t-test; its p-value is one-sided in the direction that would contradict the
  claim, and the p-values of one claim across all tasks form one family, corrected with Benjamini-Hochberg
  (``q``); "significantly worse" means ``q < ALPHA``;
- differences are oriented so that positive is better (accuracy up, loss down) and come with their 95 % CI;
- *not testable* when: either side has fewer than ``MIN_SEEDS`` finished seeds; a compared configuration is
  warm-start dominated (``warm_start_share`` above ``WARM_START_LIMIT`` at the end: the run is SGD in
  disguise) or its warm-start share was not recorded for a method that declares a warm start; a state was
  frozen by rounding (an EMA factor that rounds to 1 in the state dtype); the task's best optimizer stays
  below ``CHANCE_FACTOR`` x chance (step-0 accuracy; only where that bound is below one half); for claim 1,
  when SGD's own train-test gap is not above zero (its 95 % CI includes 0) or the root-based partner is not
  significantly below SGD (no adaptive generalisation gap to close); for claims 2 and 3, when the CI of the
  difference reaches below ``-MARGIN`` without the difference being significant (too wide to decide);
- claim 1 per root-free method: *supported* when it is not significantly below SGD while its root-based
  partner is; *contradicted* when it is significantly below SGD too;
- claims 2 and 3: *contradicted* when the root-free side is significantly worse (claim 2: than its
  root-based partner; claim 3: in bf16-pure than in fp32, same configuration and seeds); *supported* when
  it is not, and the lower CI bound of the difference is above ``-MARGIN``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rootbench.harness import search, stats
from rootbench.leaderboard.aggregate import CNN_REFERENCE

ALPHA = 0.05
MIN_SEEDS = 5
MARGIN = {"accuracy": 0.01, "loss": 0.02}  # the smallest difference that matters (non-inferiority margin)
WARM_START_LIMIT = search.WARM_START_LIMIT  # the sweeps' selection rule, the same number
CHANCE_FACTOR = 10
CLAIMS = {
    1: "closes the generalisation gap to SGD on CNNs",
    2: "keeps root-based performance on transformers",
    3: "trains in bf16 as well as in fp32",
}
CLAIM_KINDS = {1: ("cnn",), 2: ("vit", "transformer")}  # claim 3: every task with bf16-pure runs
SGD = CNN_REFERENCE  # claim 1's reference: the benchmark's fixed generalisation reference on CNNs
COLUMNS = [
    "claim",
    "tier",
    "task",
    "comparison",
    "metric",
    "diff",
    "low",
    "high",
    "p",
    "q",
    "n",
    "budget",
    "verdict",
    "reason",
]


def _values(row) -> list[float]:
    return [float(v) for v in (row.get("test_values") or []) if v is not None and math.isfinite(float(v))]


def _orient(higher_is_better: bool) -> float:
    return 1.0 if higher_is_better else -1.0


def _compare(better_side: list, worse_side: list, sign: float) -> dict:
    """``better_side - worse_side`` oriented (positive = better) with its CI and the one-sided p of "below"."""
    a = [sign * v for v in better_side]
    b = [sign * v for v in worse_side]
    w = stats.welch(a, b, alternative="less")  # H1: the first side is worse
    return {"diff": w.diff, "low": w.diff - w.half, "high": w.diff + w.half, "p": w.p, "n": f"{len(a)} vs {len(b)}"}


def _run_values(summary: pd.DataFrame, run_ids, column: str) -> list:
    if column not in summary.columns or not run_ids:
        return []
    sel = summary[summary["run_id"].isin(list(run_ids))]
    return [v for v in sel[column].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _health(model: dict, row, opt_info: dict, name: str) -> str | None:
    """Why optimizer ``name``'s selected configuration ``row`` cannot enter a verdict (None when it can)."""
    if row is None:
        return f"no selected configuration of {name}"
    if int(row.get("test_n") or 0) < MIN_SEEDS:
        return f"{name} has {int(row.get('test_n') or 0)} finished seeds (< {MIN_SEEDS})"
    ids = row.get("run_ids") or []
    shares = _run_values(model["summary"], ids, "warm_start_share")
    if shares and max(shares) > WARM_START_LIMIT:
        return f"{name} is warm-start dominated (share {max(shares):.2f} > {WARM_START_LIMIT} at the end)"
    if not shares and opt_info.get(name, {}).get("warm_start"):
        return f"{name}'s warm-start share was not recorded (runs older than the diagnostic)"
    frozen = _run_values(model["summary"], ids, "state_frozen")
    if any(bool(f) for f in frozen):
        return f"{name}'s state was frozen by rounding (an EMA factor rounds to 1)"
    return None


def _protocol_problem(model: dict, *rows) -> str | None:
    """Not testable when the sides were tuned under different sweep protocols (never mixed)."""
    protocols = model.get("tuning_protocol", {})
    seen = {protocols.get((x["tier"], x["task"], x["optimizer"])) for x in rows if x is not None}
    if len(seen) > 1:
        return (
            "sides tuned under different protocols (sweep manifest versions "
            f"{', '.join(str(v) for v in sorted(seen, key=str))}): re-sweep both"
        )
    return None


def _chance_problem(model: dict, tier: str, task: str, selected: pd.DataFrame) -> str | None:
    """Not testable when the best optimizer stays below CHANCE_FACTOR x the step-0 (chance) accuracy."""
    rows = selected[selected["task"] == task]
    if rows.empty or not bool(rows["higher_is_better"].iloc[0]) or rows["metric_name"].iloc[0] != "accuracy":
        return None
    pts = model["points"]
    runs = model["summary"]
    ids = set(runs.loc[(runs["tier"] == tier) & (runs["task"] == task), "run_id"])
    start = pts[
        (pts["run_id"].isin(ids)) & (pts["step"] == 0) & (pts["split"] == "test") & (pts["metric"] == "accuracy")
    ]["value"]
    if start.empty:
        return None
    chance = float(start.mean())
    bound = CHANCE_FACTOR * chance
    best = float(rows["test_mean"].max())
    if bound < 0.5 and best < bound:
        return f"best test accuracy {best:.3f} is below {CHANCE_FACTOR}x chance ({chance:.3f})"
    return None


def _budget(row) -> str:
    return str(int(row["n_configs"])) if row is not None and not pd.isna(row.get("n_configs")) else "–"


def verdicts(model: dict, tier: str) -> pd.DataFrame:
    """One row per (claim, task, comparison) of ``tier``; q-values within each claim's family."""
    ov = model["overview"]
    if ov.empty:
        return pd.DataFrame(columns=COLUMNS)
    sel = ov[(ov["tier"] == tier) & ov["selected"].astype(bool)]
    by = {(r["task"], r["optimizer"]): r for r in sel.to_dict("records")}
    kinds = {t: (i or {}).get("model_kind") for t, i in model.get("task_info", {}).items()}
    opt_info = model.get("opt_info", {})
    rows = []
    for task in sorted(sel["task"].unique()):
        chance = _chance_problem(model, tier, task, sel)
        for root, free in model.get("pairs", []):
            r, f = by.get((task, root)), by.get((task, free))
            if r is None and f is None:
                continue
            metric = (r or f)["metric_name"]
            sign = _orient(bool((r or f)["higher_is_better"]))
            if kinds.get(task) in CLAIM_KINDS[1]:
                rows += _claim1(model, task, root, free, by, sign, metric, chance, opt_info)
            if kinds.get(task) in CLAIM_KINDS[2]:
                rows.append(_claim2(model, task, r, f, root, free, sign, metric, chance, opt_info))
            rows.append(_claim3(model, task, f, free, sign, metric, chance, opt_info))
    df = pd.DataFrame([x for x in rows if x is not None], columns=COLUMNS + ["_undecided"])
    if df.empty:
        return df.drop(columns=["_undecided"])
    df["tier"] = tier
    for _claim, idx in df.groupby("claim").groups.items():  # one family per claim
        df.loc[idx, "q"] = stats.benjamini_hochberg(df.loc[idx, "p"].tolist())
    for i, row in df.iterrows():
        if row["_undecided"]:
            continue
        df.loc[i, ["verdict", "reason"]] = _decide(row)
    return df.drop(columns=["_undecided"]).reset_index(drop=True)


def _row(claim, task, comparison, metric, cmp: dict | None, budget, reason=None) -> dict:
    out = {
        "claim": claim,
        "task": task,
        "comparison": comparison,
        "metric": metric,
        "budget": budget,
        "diff": np.nan,
        "low": np.nan,
        "high": np.nan,
        "p": np.nan,
        "q": np.nan,
        "n": "",
        "verdict": "not testable" if reason else "",
        "reason": reason or "",
        "_undecided": bool(reason),
    }
    if cmp:
        out.update(cmp)
    return out


def _claim1(model, task, root, free, by, sign, metric, chance, opt_info) -> list[dict]:
    sgd, r, f = by.get((task, SGD)), by.get((task, root)), by.get((task, free))
    budget = "/".join(_budget(x) for x in (f, r, sgd))
    comparison = f"{free} vs {SGD} (root: {root})"
    problem = (
        chance
        or next((p for p in (_health(model, x, opt_info, n) for x, n in ((sgd, SGD), (r, root), (f, free))) if p), None)
        or _protocol_problem(model, sgd, r, f)
    )
    if problem:
        return [_row(1, task, comparison, metric, None, budget, problem)]
    gap = stats.mean_ci(_run_values(model["summary"], sgd.get("run_ids"), "gap"))
    if not (gap.n >= 2 and gap.low > 0):
        return [
            _row(
                1,
                task,
                comparison,
                metric,
                None,
                budget,
                f"SGD's train-test gap {gap.mean:+.3f} ± {gap.half:.3f} is not above zero: nothing to close",
            )
        ]
    root_cmp = _compare(_values(r), _values(sgd), sign)
    free_cmp = _compare(_values(f), _values(sgd), sign)
    return [
        {
            **_row(1, task, f"{root} vs {SGD}", metric, root_cmp, budget),
            "_undecided": False,
            "verdict": "",
            "reason": "reference",
        },
        _row(1, task, comparison, metric, free_cmp, budget),
    ]


def _claim2(model, task, r, f, root, free, sign, metric, chance, opt_info) -> dict:
    budget = f"{_budget(f)}/{_budget(r)}"
    problem = (
        chance
        or _health(model, r, opt_info, root)
        or _health(model, f, opt_info, free)
        or _protocol_problem(model, r, f)
    )
    if problem:
        return _row(2, task, f"{free} vs {root}", metric, None, budget, problem)
    return _row(2, task, f"{free} vs {root}", metric, _compare(_values(f), _values(r), sign), budget)


def _claim3(model, task, f, free, sign, metric, chance, opt_info) -> dict | None:
    if f is None:
        return None
    budget = _budget(f)
    configs = model["configs"]
    pure = configs[
        (configs["tier"] == f["tier"])
        & (configs["task"] == task)
        & (configs["optimizer"] == free)
        & (configs["setting_id"] == f["setting_id"])
        & (configs["precision"] == "bf16-pure")
    ]
    comparison = f"{free} bf16-pure vs fp32"
    if pure.empty:
        return _row(3, task, comparison, metric, None, budget, "no bf16-pure runs of the selected configuration")
    pure_row = pure.iloc[0].to_dict()
    pure_problem = _health(model, pure_row, opt_info, free)
    problem = chance or _health(model, f, opt_info, free) or (pure_problem and f"in bf16-pure, {pure_problem}")
    if problem:
        return _row(3, task, comparison, metric, None, budget, problem)
    return _row(3, task, comparison, metric, _compare(_values(pure_row), _values(f), sign), budget)


def _decide(row) -> tuple[str, str]:
    margin = MARGIN.get(row["metric"], MARGIN["loss"])
    q, diff, low = row["q"], row["diff"], row["low"]
    if row["reason"] == "reference":  # claim 1's root-based partner against SGD: the gap itself
        return ("", f"adaptive gap {'present' if q < ALPHA else 'absent'} (q = {q:.3g})")
    if math.isnan(q):
        return ("not testable", "no test possible")
    if q < ALPHA:
        return ("contradicted", f"significantly worse: {diff:+.4f} (q = {q:.3g})")
    if row["claim"] == 1 or low > -margin:
        return ("supported", f"not worse: {diff:+.4f}, 95 % CI [{low:+.4f}, {row['high']:+.4f}] (q = {q:.3g})")
    return ("not testable", f"CI [{low:+.4f}, {row['high']:+.4f}] reaches below -{margin:g} without significance")


def finalize_claim1(df: pd.DataFrame) -> pd.DataFrame:
    """Claim 1 rows of root-free methods whose root-based partner is not significantly below SGD are not
    testable (there is no adaptive generalisation gap to close); the partner rows are context only."""
    out = df.copy()
    refs = out[(out["claim"] == 1) & (out["verdict"] == "") & out["reason"].str.startswith("adaptive gap")]
    for _, ref in refs.iterrows():
        root = ref["comparison"].split(" vs ")[0]
        mask = (
            (out["claim"] == 1)
            & (out["task"] == ref["task"])
            & out["comparison"].str.contains(f"(root: {root})", regex=False)
        )
        if "absent" in ref["reason"]:
            out.loc[mask, "verdict"] = "not testable"
            out.loc[mask, "reason"] = f"no adaptive gap: {root} − SGD = {ref['diff']:+.4f} (q = {ref['q']:.3g})"
    out.loc[out["reason"].str.startswith("adaptive gap"), "verdict"] = "context"
    return out


def decide(model: dict, tier: str) -> pd.DataFrame:
    """The verdict table of ``tier`` (claim 1's partner-vs-SGD rows kept as context)."""
    df = verdicts(model, tier)
    return finalize_claim1(df) if len(df) else df
