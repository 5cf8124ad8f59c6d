"""Statistics over seeds: mean with a Student-t confidence interval, Welch's t-test, performance profiles.

The rules the leaderboard states (``leaderboard/README.md``):

* a cell is the mean over seeds with a two-sided 95 % t-interval, ``mean +- t(0.975, n-1) * s / sqrt(n)``
  (``s`` the sample standard deviation); with fewer than two seeds there is no interval;
* "not significantly different from the best" means a one-sided Welch t-test (unequal variances,
  Welch-Satterthwaite degrees of freedom) does not reject "the best is no better" at p = 0.05;
* time-to-target is scored with AlgoPerf-style performance profiles (Dahan et al., "Benchmarking Neural
  Network Training Algorithms", https://arxiv.org/abs/2306.07179) and a geometric-mean speedup.

Functions take plain sequences of floats; NaN entries are dropped where a docstring says so.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
TAU_MAX = 4.0


def finite(values: Iterable) -> np.ndarray:
    """The finite entries of ``values`` as a float array (None, NaN and inf dropped)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        x = values.astype(float, copy=False)
        return x[np.isfinite(x)]
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=float)


def _t():
    from scipy import stats  # imported on first use: it takes about a second to import

    return stats.t


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """Quantile ``q`` of Student's t with ``df`` degrees of freedom."""
    return float(_t().ppf(q, df))


@dataclass(frozen=True)
class MeanCI:
    """Mean over seeds with a two-sided t-interval; ``half`` is NaN when ``n < 2``."""

    mean: float
    half: float
    n: int
    sd: float

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def mean_ci(values: Iterable, confidence: float = CONFIDENCE) -> MeanCI:
    """Mean and t-interval half-width of the finite ``values`` (NaN/inf dropped)."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return MeanCI(float("nan"), float("nan"), 0, float("nan"))
    mean = float(x.mean())
    if n < 2:
        return MeanCI(mean, float("nan"), 1, float("nan"))
    sd = float(x.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return MeanCI(mean, half, n, sd)


@dataclass(frozen=True)
class Welch:
    """Welch's two-sample t statistic for ``mean(a) - mean(b)``, its df, p-value and a CI of the difference."""

    diff: float
    half: float  # half-width of the two-sided CI of diff
    t: float
    df: float
    p: float
    n_a: int
    n_b: int


def welch(a: Iterable, b: Iterable, alternative: str = "two-sided", confidence: float = CONFIDENCE) -> Welch:
    """Welch's t-test of ``mean(a) - mean(b)`` (unequal variances).

    ``alternative``: "two-sided", "greater" (H1: mean(a) > mean(b)) or "less". Needs two finite values
    on each side; otherwise p, t and the CI are NaN. When both samples have zero variance the test is
    degenerate: equal means give p = 1, different means p = 0 in the direction of the difference.
    """
    x, y = finite(a), finite(b)
    n_a, n_b = len(x), len(y)
    diff = float(x.mean() - y.mean()) if n_a and n_b else float("nan")
    if n_a < 2 or n_b < 2:
        return Welch(diff, float("nan"), float("nan"), float("nan"), float("nan"), n_a, n_b)
    va, vb = x.var(ddof=1) / n_a, y.var(ddof=1) / n_b
    se2 = va + vb
    if se2 == 0.0:
        if diff == 0.0:
            p = 1.0
        elif alternative == "two-sided":
            p = 0.0
        else:
            p = 0.0 if (diff > 0) == (alternative == "greater") else 1.0
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Welch(diff, 0.0, t, float(n_a + n_b - 2), p, n_a, n_b)
    se = math.sqrt(se2)
    df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    t = diff / se
    if alternative == "greater":
        p = float(_t().sf(t, df))
    elif alternative == "less":
        p = float(_t().cdf(t, df))
    elif alternative == "two-sided":
        p = float(2 * _t().sf(abs(t), df))
    else:
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Welch(diff, half, float(t), float(df), p, n_a, n_b)


def better_p(best: Iterable, other: Iterable, higher_is_better: bool) -> float:
    """One-sided Welch p-value for "``best`` is better than ``other``"; NaN with fewer than 2 values a side."""
    return welch(best, other, "greater" if higher_is_better else "less").p


def median_with_inf(values: Iterable) -> float:
    """Median where None/NaN count as +inf (a seed that never reached the target); NaN if empty."""
    x = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.inf
        x.append(math.inf if math.isnan(f) else f)
    if not x:
        return float("nan")
    x.sort()
    n = len(x)
    mid = n // 2
    if n % 2:
        return x[mid]
    lo, hi = x[mid - 1], x[mid]
    return math.inf if math.isinf(hi) else (lo + hi) / 2


def geometric_mean(values: Iterable) -> float:
    """Geometric mean of the finite, positive ``values``; NaN if there are none."""
    x = finite(values)
    x = x[x > 0]
    return float(np.exp(np.log(x).mean())) if len(x) else float("nan")


def performance_profiles(
    times: Mapping[str, Mapping[str, float]], taus: Sequence[float] | None = None, tau_max: float = TAU_MAX
) -> dict:
    """AlgoPerf-style performance profiles over tasks.

    ``times[task][optimizer]`` is a time-to-target (inf or NaN: never reached; a missing optimizer counts
    as never reaching). Tasks no optimizer reached are left out. For each optimizer,
    ``rho(tau)`` is the fraction of the remaining tasks on which its time is within ``tau`` times the
    fastest; ratios above ``tau_max`` count as failures. The score is the area under rho over
    ``[1, tau_max]`` divided by ``tau_max - 1`` (1 = fastest everywhere, 0 = never within ``tau_max``).

    Returns ``{"taus", "tasks", "rho": {opt: array}, "score": {opt: float}, "ratios": {task: {opt: r}}}``.
    """
    taus = np.linspace(1.0, tau_max, 301) if taus is None else np.asarray(taus, dtype=float)
    optimizers = sorted({o for per in times.values() for o in per})
    ratios: dict = {}
    for task, per in times.items():
        t = {o: float(per.get(o, math.inf)) for o in optimizers}
        t = {o: (math.inf if math.isnan(v) else v) for o, v in t.items()}
        finite_times = [v for v in t.values() if math.isfinite(v) and v > 0]
        if not finite_times:
            continue
        best = min(finite_times)
        ratios[task] = {o: (v / best if math.isfinite(v) else math.inf) for o, v in t.items()}
    rho, score = {}, {}
    n = len(ratios)
    for o in optimizers:
        r = np.array([ratios[task][o] for task in ratios], dtype=float)
        r[r > tau_max] = math.inf
        curve = np.array([(r <= tau).sum() / n for tau in taus]) if n else np.zeros(len(taus))
        rho[o] = curve
        width = taus[-1] - taus[0]
        score[o] = float(np.trapezoid(curve, taus) / width) if n and width > 0 else float("nan")
    return {"taus": taus, "tasks": sorted(ratios), "rho": rho, "score": score, "ratios": ratios}


def average_ranks(scores: Mapping[str, float], higher_is_better: bool) -> dict:
    """Rank 1 = best; ties share the average rank; NaN scores get no rank."""
    items = [(k, float(v)) for k, v in scores.items() if v is not None and math.isfinite(float(v))]
    items.sort(key=lambda kv: -kv[1] if higher_is_better else kv[1])
    ranks, i = {}, 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1][1] == items[i][1]:
            j += 1
        for k in range(i, j + 1):
            ranks[items[k][0]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# ---------------------------------------------------------------------------------------------
# many tests at once


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values (false discovery rate) of ``pvalues``, in their order; NaN stays NaN.

    q_(i) = min over j >= i of p_(j) * m / j over the m finite p-values sorted ascending, capped at 1: a
    comparison is a discovery at FDR level alpha when q <= alpha.
    """
    p = np.asarray([float(v) if v is not None else float("nan") for v in pvalues], dtype=float)
    q = np.full(len(p), float("nan"))
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return q.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q.tolist()


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the order given; NaN stays NaN."""
    p = np.asarray([float(v) if v is not None else float("nan") for v in pvalues], dtype=float)
    out = np.full(len(p), float("nan"))
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(1.0, adjusted)
    return out.tolist()


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same items (ties counted as ties); NaN below 2 items."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, 1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant = float((dx * dy).sum())
    nx, ny = float((dx != 0).sum()), float((dy != 0).sum())
    return concordant / math.sqrt(nx * ny) if nx and ny else float("nan")


@dataclass(frozen=True)
class RankAgreement:
    """Kendall tau-b of the items' orderings by mean in two sets of runs, with a bootstrap interval."""

    tau: float
    low: float
    high: float
    n: int  # items compared (those with finite values on both sides)
    p: float = float("nan")  # one-sided: a tau this high if the two orderings were unrelated (exact permutations)


def rank_agreement(
    a: Mapping[str, Iterable],
    b: Mapping[str, Iterable],
    n_boot: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> RankAgreement:
    """How well the ordering of the shared items by their mean in ``a`` predicts their ordering in ``b``.

    ``a`` and ``b`` map an item (an optimizer) to its values over seeds (one tier's selected configuration
    each). tau-b of the two orderings of the means; its interval is a percentile bootstrap that resamples
    each item's seeds within each side, so it shows how much of the agreement the seed noise could move.
    Fewer than three shared items: tau is NaN (two items only ever agree or disagree).

    The interval reflects the seeds only: with well-separated means it collapses to a point (``[+1.00,
    +1.00]``) however few items are ranked. ``p`` says what the number of items allows: the share of the n!
    orderings of ``b``'s means whose tau with ``a``'s is at least the observed one (1/6 for a perfect match of
    three items, 1/720 of six); above 8 items, 20,000 random orderings.
    """
    keys = sorted(k for k in a if k in b and len(finite(a[k])) and len(finite(b[k])))
    if len(keys) < 3:
        return RankAgreement(float("nan"), float("nan"), float("nan"), len(keys))
    va, vb = [finite(a[k]) for k in keys], [finite(b[k]) for k in keys]
    mean_a, mean_b = [v.mean() for v in va], [v.mean() for v in vb]
    tau = kendall_tau(mean_a, mean_b)
    rng = np.random.default_rng(seed)
    p = _permutation_p(mean_a, mean_b, tau, rng)
    boots = []
    for _ in range(n_boot):
        ma = [rng.choice(v, len(v)).mean() for v in va]
        mb = [rng.choice(v, len(v)).mean() for v in vb]
        boots.append(kendall_tau(ma, mb))
    boots = finite(boots)
    tail = (1 - confidence) / 2
    low, high = (float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))) if len(boots) else (tau, tau)
    return RankAgreement(float(tau), low, high, len(keys), p)


@functools.cache
def _null_taus(n: int) -> np.ndarray:
    """tau of every ordering of n untied items against their sorted order (the null for any untied pair)."""
    base = list(range(n))
    return np.array([kendall_tau(base, list(order)) for order in itertools.permutations(base)])


def _permutation_p(x: list, y: list, tau: float, rng, exact_up_to: int = 8, draws: int = 20_000) -> float:
    """P(tau(x, permuted y) >= tau): exact over all orderings of up to ``exact_up_to`` items, else Monte Carlo
    with the observed ordering counted once (so never 0)."""
    y = np.asarray(y, dtype=float)
    if len(y) <= exact_up_to:
        untied = len(set(x)) == len(x) and len(set(y.tolist())) == len(y)
        taus = (
            _null_taus(len(y))
            if untied
            else [kendall_tau(x, y[list(o)]) for o in itertools.permutations(range(len(y)))]
        )
        return float(np.mean(np.asarray(taus) >= tau - 1e-12))
    hits = sum(kendall_tau(x, rng.permutation(y)) >= tau - 1e-12 for _ in range(draws))
    return float((hits + 1) / (draws + 1))
