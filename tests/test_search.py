"""Search spaces that depend on the run's length, quasi-random draws per (task, optimizer), the paper point."""

import math

import numpy as np
import pytest

from rootbench.harness import search
from rootbench.harness import sweep as sw
from rootbench.harness.registry import UsageError


def test_a_horizon_dimension_resolves_to_time_constants_that_scale_with_the_run():
    dim = {"lr_cov": ("horizon", 10, 0.5)}
    short, long = search.resolve(dim, steps=1000)["lr_cov"], search.resolve(dim, steps=10000)["lr_cov"]
    assert short == ("log", pytest.approx(1 / 500), pytest.approx(1 / 10))
    assert long == ("log", pytest.approx(1 / 5000), pytest.approx(1 / 10))
    # every draw forgets at least 1 - e^-2 of a warm start by the end of the run
    for c in search.sample_configs(search.resolve(dim, steps=1000), 64, seed=0):
        assert (1 - c["lr_cov"]) ** 1000 <= math.exp(-2) + 1e-3
    updates = search.resolve({"lr_cov": ("horizon", 1.25, 0.5, "updates")}, steps=1000, period=2)["lr_cov"]
    assert updates == ("log", pytest.approx(1 / 250), pytest.approx(0.8))
    with pytest.raises(UsageError):
        search.sample_configs(dim, 4, seed=0)  # unresolved


def test_log1m_crowds_momenta_towards_one_and_stays_in_range():
    draws = search.sample_configs({"momentum": ("log1m", 1e-2, 1.0)}, 2000, seed=1)
    m = np.array([d["momentum"] for d in draws])
    assert m.min() >= 0.0 and m.max() <= 0.99
    assert abs(np.mean(m >= 0.9) - 0.5) < 0.03  # half the draws have 1 - m below 0.1
    narrowed = search.narrow({"momentum": ("log1m", 1e-2, 1.0)}, [{"momentum": 0.95}, {"momentum": 0.9}], 0.1)
    assert narrowed["momentum"][0] == "log1m" and 1e-2 <= narrowed["momentum"][1] < 0.05 < 0.1 < narrowed["momentum"][2]


def test_draws_are_quasi_random_reproducible_and_independent_per_task_and_optimizer():
    space = {"lr": ("log", 1e-4, 1.0), "wd": ("uniform", 0.0, 1.0)}
    a = search.sample_configs(space, 16, seed=0, stream=("cifar10-vit", "adamw"))
    assert a == search.sample_configs(space, 16, seed=0, stream=("cifar10-vit", "adamw"))
    assert a != search.sample_configs(space, 16, seed=0, stream=("cifar10-vit", "sgd"))
    assert a != search.sample_configs(space, 16, seed=0, stream=("mnist1d-cnn", "adamw"))
    # low discrepancy: 16 points cover each quarter of the log-lr axis with 4 +- 1 points
    quarters = np.histogram([math.log10(c["lr"]) for c in a], bins=4, range=(-4, 0))[0]
    assert quarters.min() >= 3 and quarters.max() <= 5


def test_the_paper_point_is_one_more_trial_recorded_as_such(monkeypatch):
    import dataclasses

    from rootbench.harness import registry
    from rootbench.optimizers import get_optimizer_spec

    spec = get_optimizer_spec("sgd")
    patched = dataclasses.replace(spec, published={"linear": {"lr": 0.123, "momentum": 0.5}})
    monkeypatch.setitem(registry.OPTIMIZERS, "sgd", patched)
    s = sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", trials=3), out=lambda m: None)
    trials = s._trials(1, s.space, 3)
    assert [t.kind for t in trials] == ["drawn"] * 3 + ["published"]
    assert trials[-1].spec.hparams["lr"] == 0.123 and trials[-1].spec.hparams["momentum"] == 0.5
    pinned = sw.Sweep(
        sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", trials=3, overrides={"lr": 0.01}),
        out=lambda m: None,
    )
    assert pinned.published == {"momentum": 0.5}  # a pin wins over the paper's value
    off = sw.Sweep(
        sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", trials=3, published=False), out=lambda m: None
    )
    assert [t.kind for t in off._trials(1, off.space, 3)] == ["drawn"] * 3
