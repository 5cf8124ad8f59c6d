"""IF-Shampoo needs no matrix decomposition and so runs with bf16 factors; Shampoo cannot.

The paper's claim (Lin et al. 2024): IF-Shampoo uses only matmuls, traces and norms, so
its factors, momenta and preconditioned step can live in bf16. Shampoo's inverse roots need eigh,
which PyTorch runs only in fp32/fp64. rootbench's Shampoo therefore *falls back to float64 visibly*
for 16-bit factors: a RuntimeWarning plus the per-parameter counter state["eigh_fp64_fallbacks"]
(the behaviour of current Distributed Shampoo, "Retrying in double precision").
"""

from __future__ import annotations

import pathlib
import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rootbench.optimizers import create_optimizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
BANNED = (
    "eigh",
    "eig",
    "eigvals",
    "eigvalsh",
    "inv",
    "inv_ex",
    "pinv",
    "solve",
    "solve_ex",
    "lstsq",
    "cholesky",
    "cholesky_ex",
    "cholesky_inverse",
    "svd",
    "svdvals",
    "matrix_power",
    "sqrtm",
    "expm",
    "matrix_exp",
    "lu",
    "lu_factor",
    "qr",
)
B = 16
LR = 0.01


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ifshampoo_source_calls_no_decomposition_or_inverse():
    source = (ROOT / "optimizers" / "ifshampoo.py").read_text()
    found = sorted({m.group(1) for m in re.finditer(r"\b(" + "|".join(BANNED) + r")\b", source)})
    assert not found, f"optimizers/ifshampoo.py mentions {found}; IF-Shampoo must use only matmuls, traces, norms"
    assert "linalg." not in source.replace("linalg.vector_norm", "")


def test_premise_eigh_does_not_run_in_bf16():
    with pytest.raises(RuntimeError):
        torch.linalg.eigh(torch.eye(3, dtype=torch.bfloat16))


def problem(param_dtype, steps=40, seed=0):
    """A teacher network labels Gaussian inputs; returns the model, training batches and a test batch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(16, 3)).to(param_dtype)
    teacher = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(16, 3))

    def batch(n):
        x = torch.randn(n, 2, 4, 4, generator=g)
        with torch.no_grad():
            return x.to(param_dtype), teacher(x).argmax(-1)

    return model, [batch(B) for _ in range(steps)], batch(512)


def held_out_loss(model, batch):
    with torch.no_grad():
        return float(F.cross_entropy(model(batch[0]).float(), batch[1]))


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x).float(), y).backward()
        opt.step()


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16], ids=["fp32-params", "bf16-params"])
def test_ifshampoo_trains_with_bf16_factors(param_dtype):
    results = {}
    for knob in ("bfloat16", "float32"):
        model, data, held_out = problem(param_dtype)
        opt = create_optimizer("ifshampoo", model, batch_size=B, lr=LR, preconditioner_dtype=knob, momentum_dtype=knob)
        before = held_out_loss(model, held_out)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback of any kind
            train(model, opt, data)
        results[knob] = held_out_loss(model, held_out)
        if knob == "bfloat16":
            state = opt.state[model[0].weight]
            factors = [v for k, v in state.items() if k.startswith("factor")]
            # K and m_K per axis of the 4-D conv weight (the reference path also caches K K^T)
            assert len(factors) >= 2 * 4 and all(v.dtype == torch.bfloat16 for v in factors)
            assert state["momentum_buffer"].dtype == torch.bfloat16
            assert all(torch.isfinite(v).all() for v in state.values())
    assert results["bfloat16"] < 0.8 * before, (before, results)
    assert abs(results["bfloat16"] - results["float32"]) < 0.1 * results["float32"], results


@pytest.mark.parametrize(
    "param_dtype,knob",
    [(torch.float32, "bfloat16"), (torch.bfloat16, "param")],
    ids=["bf16-factors", "bf16-params-param-factors"],
)
def test_shampoo_with_bf16_factors_falls_back_to_fp64_visibly(param_dtype, knob):
    model, data, _ = problem(param_dtype, steps=6)
    opt = create_optimizer("shampoo", model, lr=1e-3, T=2, preconditioner_dtype=knob)
    with pytest.warns(RuntimeWarning, match="float64"):
        train(model, opt, data)
    state = opt.state[model[3].weight]
    assert state["factor_0"].dtype == torch.bfloat16
    # roots at steps 2, 4, 6: one fp64 decomposition per factor each time
    assert state["eigh_fp64_fallbacks"] == 3 * 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_shampoo_with_fp32_factors_needs_no_fallback():
    model, data, _ = problem(torch.float32, steps=6)
    opt = create_optimizer("shampoo", model, lr=1e-3, T=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, opt, data)
    assert all(s["eigh_fp64_fallbacks"] == 0 for s in opt.state.values())


def test_shampoo_retries_a_failed_fp32_eigh_in_fp64(monkeypatch):
    real_eigh = torch.linalg.eigh

    def failing_in_fp32(A, *args, **kwargs):
        if A.dtype == torch.float32:
            raise torch.linalg.LinAlgError("simulated convergence failure")
        return real_eigh(A, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", failing_in_fp32)
    model, data, _ = problem(torch.float32, steps=2)
    opt = create_optimizer("shampoo", model, lr=1e-3, T=2)
    train(model, opt, data)
    assert opt.state[model[3].weight]["eigh_fp64_fallbacks"] == 2  # one root per factor at step 2
    assert opt.state[model[3].weight]["root_0"].dtype == torch.float32
