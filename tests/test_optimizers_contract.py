"""Contracts every registered optimizer keeps, parametrised over ``list_optimizers()``.

A new optimizer file is covered without editing this file: it must build from its defaults, lower
the noisy quadratic's loss at its ``test_lr`` in fp32 and in pure bf16, continue bit-identically
after a state_dict round trip (through torch.save/torch.load), reject unknown and ill-typed
hyperparameters, insist on ``batch_size`` exactly when it needs it, skip parameters without
gradients and honour per-group hyperparameters.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rootbench.harness.registry import RegistryError
from rootbench.optimizers import create_optimizer, get_optimizer_spec, list_optimizers

NAMES = list_optimizers()
B = 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and avoids OpenMP stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Small(nn.Module):
    """A 4-D conv weight, biases, a Linear weight, and one parameter the loss never touches."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.head = nn.Linear(12, 3)
        self.unused = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).flatten(1))


def batches(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(B, 2, 4, 4, generator=g).to(dtype), torch.randint(0, 3, (B,), generator=g)) for _ in range(n)]


def build(name, params, **hparams):
    spec = get_optimizer_spec(name)
    if spec.needs_batch_size:
        hparams.setdefault("batch_size", B)
    return create_optimizer(name, params, **hparams)


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x).float(), y).backward()
        opt.step()


def wrong_type(default):
    if isinstance(default, bool):
        return "yes"
    if isinstance(default, int):
        return 1.5
    if isinstance(default, float):
        return "fast"
    if isinstance(default, str):
        return 3
    return None


def tunable_defaults(spec):
    return {k: v for k, v in spec.defaults.items() if k != "batch_size"}


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_complete(name):
    spec = get_optimizer_spec(name)
    assert spec.description and "\n" not in spec.description
    assert spec.paper.startswith("http")
    assert spec.test_lr is not None and spec.test_lr > 0
    assert spec.wd_kind in ("l2", "decoupled", "post_precond")
    assert spec.parent is None or spec.parent in NAMES
    assert spec.pair is None or spec.pair in NAMES
    from rootbench.harness import search
    from rootbench.harness.registry import check_hparam_values

    for key, dist in spec.search_space.items():
        search.check_dim(key, dist)  # a declared kind with valid bounds
        if dist[0] in ("log", "log1m"):
            assert 0 < dist[1] < dist[2], (key, dist)
    resolved = search.resolve(spec.search_space, steps=1000, period=2)
    for config in search.sample_configs(resolved, 16, seed=0, defaults=spec.defaults):  # draws are valid values
        check_hparam_values(spec, {**spec.defaults, **config})
    for kind, config in spec.published.items():  # the paper's points are hyperparameters with valid values
        assert set(config) <= set(spec.defaults), (kind, config)
        check_hparam_values(spec, {**spec.defaults, **config})
    for key in spec.ema_rates:
        assert key in spec.defaults
    assert "batch_size" in spec.defaults if spec.needs_batch_size else True


@pytest.fixture(scope="module")
def quadratic():
    from rootbench.tasks import create_task

    return create_task("quadratic", "smoke")


@pytest.mark.parametrize("precision", ["fp32", "bf16-pure"])
@pytest.mark.parametrize("name", NAMES)
def test_lowers_noisy_quadratic_loss_at_test_lr(name, precision, quadratic):
    """Pure bf16: parameters, gradients and (for the diagonal methods) optimizer state in bf16."""
    task, spec = quadratic, get_optimizer_spec(name)
    dtype = torch.bfloat16 if precision == "bf16-pure" else torch.float32
    torch.manual_seed(0)
    model = task.build_model().to(dtype)
    opt = build(name, model, lr=spec.test_lr, **({"batch_size": task.batch_size} if spec.needs_batch_size else {}))

    def val_loss():
        with torch.no_grad():
            return sum(float(task.loss(model(x.to(dtype)), y)) for x, y in task.eval_batches("val", "cpu"))

    before = val_loss()
    data = task.train_batches(torch.Generator().manual_seed(0), "cpu")
    for _ in range(task.config.steps):
        x, y = next(data)
        opt.zero_grad(set_to_none=True)
        task.loss(model(x.to(dtype)), y).backward()
        opt.step()
    after = val_loss()
    assert math.isfinite(after) and after < 0.9 * before, f"{name} {precision}: val loss {before:.4g} -> {after:.4g}"
    assert all(p.dtype == dtype for p in model.parameters())


DIAGONAL_STATE_IN_PARAM_DTYPE = ("sgd", "adamw", "rmsprop", "rfrmsprop", "rfadamw")


@pytest.mark.parametrize("name", [n for n in DIAGONAL_STATE_IN_PARAM_DTYPE if n in NAMES])
def test_diagonal_methods_keep_state_in_bf16_for_bf16_params(name):
    torch.manual_seed(0)
    model = Small().to(torch.bfloat16)
    opt = build(name, model, **({"momentum": 0.5} if name in ("rmsprop", "rfrmsprop") else {}))
    train(model, opt, batches(2, torch.bfloat16))
    floats = [
        v
        for s in opt.state.values()
        for k, v in s.items()
        if torch.is_tensor(v) and v.is_floating_point() and k != "step"
    ]
    assert floats and all(v.dtype == torch.bfloat16 for v in floats)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_bit_identically(name, dtype):
    """Checkpoint after 18 steps (past IF-Shampoo's every-step warm-up), continue 6 more."""
    torch.manual_seed(0)
    model = Small().to(dtype)
    data = batches(24, dtype)
    opt = build(name, model)
    train(model, opt, data[:18])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    torch.manual_seed(1)  # optimizers that draw random probes (PSGD-Kron) draw the same ones in both runs
    train(model, opt, data[18:])

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = Small().to(dtype)
    resumed.load_state_dict(ckpt["model"])
    opt2 = build(name, resumed)
    opt2.load_state_dict(ckpt["opt"])
    torch.manual_seed(1)
    train(resumed, opt2, data[18:])
    for (n, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), f"{name}: {n} differs after resuming"
    for p, q in zip(model.parameters(), resumed.parameters()):  # state dtypes survive the load
        for key, v in opt.state[p].items():
            if torch.is_tensor(v):
                assert opt2.state[q][key].dtype == v.dtype, (name, key)


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_defaults_and_rejects_unknown_hyperparameters(name):
    model = Small()
    opt = build(name, model)
    assert isinstance(opt, torch.optim.Optimizer)
    with pytest.raises(RegistryError, match="unknown"):
        build(name, model, not_a_hyperparameter=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_wrong_types_and_bad_choices(name):
    spec, model = get_optimizer_spec(name), Small()
    for key, default in tunable_defaults(spec).items():
        bad = wrong_type(default)
        if bad is not None:
            with pytest.raises(RegistryError, match="wrong type"):
                build(name, model, **{key: bad})
        if isinstance(default, str):  # string hyperparameters are choices (impl, dtype knobs, schedules)
            with pytest.raises((RegistryError, ValueError)):
                build(name, model, **{key: "no-such-choice"})


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_required_exactly_when_needed(name):
    spec, model = get_optimizer_spec(name), Small()
    if spec.needs_batch_size:
        with pytest.raises(RegistryError, match="batch_size"):
            create_optimizer(name, model)
        # the class itself refuses too, for users outside the registry
        with pytest.raises((ValueError, TypeError), match="batch_size"):
            spec.factory(list(model.parameters()), **tunable_defaults(spec))
    else:
        with pytest.raises(RegistryError, match="batch_size"):
            create_optimizer(name, model, batch_size=B)


@pytest.mark.parametrize("name", NAMES)
def test_skips_params_without_grads_and_honours_param_groups(name):
    torch.manual_seed(0)
    model = Small()
    frozen_before = [p.detach().clone() for p in model.conv.parameters()]
    head_before = [p.detach().clone() for p in model.head.parameters()]
    unused_before = model.unused.detach().clone()
    groups = [  # named, as a name rule (ifshampoo_paper's lr_cov discount) refuses unnamed parameters
        {"params": list(model.conv.named_parameters()), "lr": 0.0},
        {"params": list(model.head.named_parameters()) + [("unused", model.unused)]},
    ]
    opt = build(name, groups, lr=get_optimizer_spec(name).test_lr)
    assert len(opt.param_groups) >= 2  # Muon splits each group by parameter rank (AdamW for vectors)
    train(model, opt, batches(3))
    assert model.unused.grad is None and torch.equal(model.unused, unused_before)
    assert not any(torch.is_tensor(v) for v in opt.state.get(model.unused, {}).values())
    assert all(torch.equal(a, b) for a, b in zip(model.conv.parameters(), frozen_before))  # lr = 0 group
    assert all(not torch.equal(a, b) for a, b in zip(model.head.parameters(), head_before))
    assert all(torch.isfinite(p).all() for p in model.parameters())
