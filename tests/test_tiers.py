"""Quick vs long: Kendall's tau of the optimizer rankings per task, and the tiers' sections in the claims report."""

import numpy as np
import pandas as pd
import pytest

from rootbench.harness import stats
from rootbench.leaderboard import claims
from rootbench.leaderboard import tiers as T


def test_kendall_tau_is_tau_b_with_ties():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
        mine, ref = stats.kendall_tau(x, y), kendalltau(x, y).statistic
        assert (np.isnan(mine) and np.isnan(ref)) or mine == pytest.approx(ref, abs=1e-12)


def test_rank_agreement_and_its_interval():
    same = {"a": [0.1, 0.11, 0.12], "b": [0.5, 0.51, 0.49], "c": [0.9, 0.91, 0.92]}
    assert stats.rank_agreement(same, same) == stats.RankAgreement(1.0, 1.0, 1.0, 3, 1 / 6)
    flipped = {k: [1 - v for v in vals] for k, vals in same.items()}
    assert stats.rank_agreement(same, flipped).tau == -1.0
    # two optimizers whose seeds overlap: the point estimate agrees, the interval says it could flip
    noisy = {"a": [0.50, 0.40, 0.60], "b": [0.52, 0.42, 0.62], "c": [0.9, 0.91, 0.92]}
    r = stats.rank_agreement(noisy, noisy)
    assert r.tau == 1.0 and r.low < 1.0 and r.high == 1.0
    assert np.isnan(stats.rank_agreement({"a": [1], "b": [2]}, {"a": [1], "b": [2]}).tau)  # two items: no tau
    assert stats.rank_agreement(same, {"a": [1.0], "b": [2.0]}).n == 2  # only the shared items count


def test_the_rank_agreement_p_value_is_the_exact_permutation_tail():
    """Well-separated means make the seed interval a point; p still says how few items were ranked. It is the
    exact one-sided permutation tail (scipy's exact Kendall test, no ties), Monte Carlo above eight items."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(5)
    for n in (3, 4, 6, 8):
        for _ in range(5):
            x, y = rng.permutation(n).astype(float), rng.permutation(n).astype(float)
            a = {f"o{i}": [x[i], x[i] + 1e-3] for i in range(n)}
            b = {f"o{i}": [y[i], y[i] + 1e-3] for i in range(n)}
            r = stats.rank_agreement(a, b, n_boot=50)
            assert r.p == pytest.approx(kendalltau(x, y, method="exact", alternative="greater").pvalue, abs=1e-9)
    six = {f"o{i}": [float(i), i + 1e-3] for i in range(6)}
    r = stats.rank_agreement(six, six, n_boot=50)
    assert (r.tau, r.low, r.high) == (1.0, 1.0, 1.0) and r.p == pytest.approx(1 / 720)
    reversed_ = {k: [-v for v in vals] for k, vals in six.items()}
    assert stats.rank_agreement(six, reversed_, n_boot=50).p == 1.0
    ten = {f"o{i}": [float(i), i + 1e-3] for i in range(10)}
    assert stats.rank_agreement(ten, ten, n_boot=10).p == pytest.approx(1 / 20_001)  # never 0 by Monte Carlo


def _overview(orders: dict, higher_is_better=True) -> pd.DataFrame:
    """``orders[tier]`` = optimizers from best to worst; five seeds each, well separated."""
    rows = []
    for tier, order in orders.items():
        for rank, opt in enumerate(order):
            mean = 0.9 - 0.1 * rank if higher_is_better else 0.1 + 0.1 * rank
            vals = list(mean + 0.001 * np.arange(5))
            rows.append(
                {
                    "tier": tier,
                    "task": "t",
                    "optimizer": opt,
                    "selected": True,
                    "higher_is_better": higher_is_better,
                    "test_values": vals,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_agreement_per_task_from_the_selected_configurations(higher_is_better):
    ov = _overview(
        {"quick": ["sgd", "adamw", "rfadamw", "lion"], "long": ["sgd", "rfadamw", "adamw"]}, higher_is_better
    )
    df = T.agreement(ov, "quick", "long")
    assert len(df) == 1
    r = df.iloc[0]
    assert r["n"] == 3  # lion ran only at the quick tier
    assert r["tau"] == pytest.approx(1 / 3) and r["low"] <= r["tau"] <= r["high"]  # one swapped pair of three
    assert r["cheap_order"] == "sgd > adamw > rfadamw" and r["dear_order"] == "sgd > rfadamw > adamw"
    assert T.agreement(ov, "quick", "full").empty


def test_tier_pairs_and_the_agreement_table():
    assert T.tier_pairs({"quick", "long", "smoke"}) == [("quick", "long")]
    assert T.tier_pairs({"quick", "long", "full"}) == [("quick", "long"), ("long", "full")]
    assert T.tier_pairs({"quick"}) == []
    model = {"overview": _overview({"quick": ["a", "b", "c"], "long": ["c", "b", "a"]})}
    assert claims.tiers_with_runs(model) == ["quick", "long"]
    rows = [line for line in claims.agreement_table(model, "quick", "long") if line.startswith("| t |")]
    assert rows == ["| t | 3 | -1.00 [-1.00, -1.00] | 1.0000 | a > b > c | c > b > a |"]


@pytest.fixture
def scratch_tasks():
    """Names registered by the test are removed afterwards."""
    from rootbench.harness import registry
    from rootbench.tasks import list_tasks

    list_tasks()  # discovered first: the test's own registrations are what is new afterwards
    before = set(registry.TASKS)
    yield
    for name in set(registry.TASKS) - before:
        registry.TASKS.pop(name)


def test_the_long_tier_is_optional_declared_per_task_and_refused_where_missing(scratch_tasks):
    from rootbench.harness.registry import UsageError, register_task
    from rootbench.tasks import create_task, get_task_spec

    base = get_task_spec("quadratic")
    long = type(base.tiers["quick"])(steps=30, batch_size=16, eval_every=15)
    spec = register_task(
        "quadratic-long",
        build=base.build,
        tiers={"long": long, **base.tiers},
        metric="loss",
        higher_is_better=False,
        description="test",
        family="quadratic",
        minutes={"long": 0.1},
    )
    assert list(spec.tiers) == ["smoke", "quick", "long", "full"]  # tier order, whatever the declaration's
    assert create_task("quadratic-long", "long").config.steps == 30
    with pytest.raises(UsageError, match="task 'quadratic' has no 'long' tier; tasks with one: .*quadratic-long"):
        create_task("quadratic", "long")
    common = dict(build=base.build, metric="loss", higher_is_better=False, description="t", family="q")
    with pytest.raises(UsageError, match="lacks tier"):
        register_task("no-quick", tiers={"smoke": long, "full": long}, **common)
    with pytest.raises(UsageError, match="unknown tier"):
        register_task("odd-tier", tiers={**base.tiers, "medium": long}, **common)
    with pytest.raises(UsageError, match="minutes given for tier"):
        register_task("odd-minutes", tiers=base.tiers, minutes={"long": 5}, **common)
