"""Recorded optimizer-state bytes equal what each method must hold, computed here independently.

The expected sizes follow the paper: the diagonal methods hold one or two
parameter-sized buffers in the state dtype; the Kronecker methods one d x d factor (plus momentum and
cache) per tensor axis. The run records ``opt_state_bytes`` by walking the live optimizer.
"""

import math

import pytest

from rootbench.harness import run as harness_run
from rootbench.harness.config import RunConfig
from rootbench.tasks import create_task

TASK = "mnist1d-mlp"


def shapes():
    model = create_task(TASK, "smoke").build_model()
    return [tuple(p.shape) for p in model.parameters()]


def run(opt, precision, **hparams):
    rows = harness_run(
        TASK,
        opt,
        RunConfig(
            tier="smoke", precision=precision, ref_steps=0, hparams=hparams, task_settings={"steps": 4, "eval_every": 4}
        ),
    )
    assert rows[0]["status"] == "ok", rows[0]["status_message"]
    return rows[0]


@pytest.mark.parametrize("precision, width", [("fp32", 4), ("bf16-pure", 2)])
@pytest.mark.parametrize(
    "opt, buffers, extra_per_tensor",
    [
        ("sgd", 1, 0),  # momentum buffer
        ("adamw", 2, 4),  # exp_avg, exp_avg_sq (+ torch's float32 step counter per tensor)
        ("rmsprop", 1, 4),  # square_avg (+ step counter); momentum 0 by default
        ("rfadamw", 2, 0),  # m, v; the step count is a Python int
        ("rfrmsprop", 2, 0),  # s and the heavy-ball buffer (momentum > 0 here)
    ],
)
def test_diagonal_state_is_exactly_buffers_per_parameter(opt, buffers, extra_per_tensor, precision, width):
    hp = {"momentum": 0.9} if opt == "rfrmsprop" else {}
    r = run(opt, precision, **hp)
    n = sum(math.prod(s) for s in shapes())
    assert r["n_params"] == n
    expected = buffers * width * n + extra_per_tensor * len(shapes())
    assert r["opt_state_bytes"] == expected
    if extra_per_tensor == 0:
        assert r["opt_state_bytes_per_param"] == buffers * width  # exactly 8 (fp32) or 4 (bf16-pure) B/param


def kron_dims(shape):
    dims = [d for d in shape if d != 1] or [1]  # squeezed; a scalar becomes a 1-vector
    return dims


@pytest.mark.parametrize("impl", ["reference", "batched"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-pure"])
def test_ifshampoo_state_is_its_factors_momenta_and_cache(precision, impl):
    r = run("ifshampoo", precision, impl=impl)
    width = 4 if precision == "fp32" else 2  # factors and momentum follow the parameters' dtype by default
    expected = 0
    for shape in shapes():
        dims = kron_dims(shape)
        factor = width  # preconditioner_dtype "param" (default)
        # K, its Riemannian momentum m_K (riemannian_momentum 0.5 > 0) and, on the reference path
        # only, the cached K K^T per axis with its rescaling scalar (float32); the batched default
        # (auto) forms no K K^T and holds what [R2] holds
        expected += sum((3 if impl == "reference" else 2) * d * d * factor for d in dims)
        expected += 4 if impl == "reference" else 0
        expected += math.prod(shape) * width  # heavy-ball buffer (momentum 0.9), parameter dtype
    assert r["opt_state_bytes"] == expected


def test_shampoo_state_is_its_factors_roots_and_filtered_gradient():
    r = run("shampoo", "fp32")
    expected = 0
    for shape in shapes():
        dims = list(shape)  # Shampoo keeps one factor per axis of the unsqueezed tensor (the paper)
        expected += sum(2 * d * d * 4 for d in dims)  # factor L_k and its inverse root, float32
        expected += math.prod(shape) * 4  # the filtered gradient (momentum 0.9)
    assert r["opt_state_bytes"] == expected
