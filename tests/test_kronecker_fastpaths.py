"""The Kronecker fast paths bound to the readable reference steps (beyond tests/test_optimizer_fastpaths.py).

- the mode products of the batched paths (IF-Shampoo's and Shampoo's copy: matrices on views, other orders by
  rotation, one ``bmm`` on a transposed view per axis, no copies) equal the reference's ``tensordot`` mode
  products: fp64, rtol 1e-12, orders 1 to 4;
- bf16 products through fp32 (where PyTorch's bf16 GEMM is its scalar fallback kernel) equal that kernel up to
  summation order: at most a few elements one bf16 ulp apart, and IF-Shampoo's trajectory with them within
  bf16 round-off of the native one;
- Shampoo's stacked buckets vs the per-parameter reference: fp64 rtol 1e-10 / atol 1e-12, also when parameters
  skip steps (buckets split by step count), across state_dict round trips both ways, with a root that fails for
  one bucket member only, and with exactly the reference's state bytes; with bf16 factors (statistics through
  fp32, rounded as the reference rounds) within 1e-2 of the largest entry after 4 steps (measured 1.6e-3).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rootbench.harness.measure import optimizer_state_bytes
from rootbench.optimizers import create_optimizer
from rootbench.optimizers import ifshampoo as ifs
from rootbench.optimizers import shampoo as shampoo_mod
from rootbench.optimizers.shampoo import mode_product

B = 8


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# products


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 1, 6), (6, 5, 3, 3)])
@pytest.mark.parametrize("transpose", [False, True])
def test_rotated_products_equal_mode_products(shape, transpose):
    g = torch.Generator().manual_seed(0)
    b = 3
    X = torch.randn((b,) + shape, generator=g, dtype=torch.float64)
    Ms = [torch.randn(b, d, d, generator=g, dtype=torch.float64) for d in shape]
    ours = [ifs._all_axes(X, Ms, transpose=transpose)]
    if not transpose:  # Shampoo keeps its own copy of the products (its run identity covers its own file only)
        ours.append(shampoo_mod._all_axes(X, Ms))
    for Y in ours:
        for i in range(b):
            ref = X[i]
            for n, M in enumerate(Ms):
                ref = mode_product(ref, M[i].T if transpose else M[i], n)
            torch.testing.assert_close(Y[i], ref, rtol=1e-12, atol=1e-12)
        assert Y.shape == X.shape and Y.is_contiguous()


def test_bf16_products_through_fp32_equal_the_bf16_kernel(monkeypatch):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 40, 70, generator=g).bfloat16()
    Bm = torch.randn(3, 70, 30, generator=g).bfloat16()
    C = torch.randn(3, 40, 30, generator=g).bfloat16()
    monkeypatch.setattr(ifs, "_slow_bf16_gemm", lambda device_type: True)
    through_fp32 = ifs._bmm(A, Bm), ifs._baddbmm_(C.clone(), A, Bm, beta=0.5, alpha=0.3)
    monkeypatch.setattr(ifs, "_slow_bf16_gemm", lambda device_type: False)
    native = ifs._bmm(A, Bm), ifs._baddbmm_(C.clone(), A, Bm, beta=0.5, alpha=0.3)
    ulp = 2.0**-7  # bf16: 8 significant bits
    for ours, theirs in zip(through_fp32, native, strict=True):
        assert ours.dtype == theirs.dtype == torch.bfloat16
        rel = (ours.float() - theirs.float()).abs() / theirs.float().abs().clamp(min=1e-3)
        assert float(rel.max()) <= ulp  # the same fp32 accumulation, one rounding: one ulp where the order differs
        assert int((ours != theirs).sum()) <= 0.01 * ours.numel()


class Net(nn.Module):
    """A bucket of two same-shape Linear layers, a 4-D conv, a vector, a scalar and a [1, 1, 16] token."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)
        self.token = nn.Parameter(torch.zeros(1, 1, 16))
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1) + self.token[0]
        return self.head(torch.tanh(self.b(torch.tanh(self.a(h))))) * self.temperature


def problem(dtype, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Net().to(dtype)
    data = [
        (torch.randn(B, 2, 4, 4, generator=g).to(dtype), torch.randint(0, 3, (B,), generator=g)) for _ in range(steps)
    ]
    return model, data


def train(model, opt, data, skip=lambda step, name: False):
    out = []
    for step, (x, y) in enumerate(data):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            if skip(step, name):
                p.grad = None
        opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out


def test_ifshampoo_bf16_through_fp32_stays_with_the_bf16_kernel(monkeypatch):
    """The whole batched step with bf16 factors: the fp32-accumulated products against the bf16 kernel's."""
    hp = dict(
        preconditioner_dtype="bfloat16", momentum_dtype="bfloat16", schedule="every_T", T=1, lr=0.02, impl="batched"
    )
    runs = []
    for slow in (True, False):
        monkeypatch.setattr(ifs, "_slow_bf16_gemm", lambda device_type, slow=slow: slow)
        model, data = problem(torch.float32, steps=3)
        opt = create_optimizer("ifshampoo", model, batch_size=B, **hp)
        runs.append((train(model, opt, data), opt))
    (ours, opt), (theirs, _) = runs
    assert all(v.dtype == torch.bfloat16 for s in opt.state.values() for k, v in s.items() if k.startswith("factor"))
    # summation order only: far inside the bf16 drift of 20 steps that the reference test allows (10%)
    for a, b in zip(ours[-1], theirs[-1], strict=True):
        assert float((a - b).abs().max()) <= 0.01 * float(b.abs().max()), a.shape


# ---------------------------------------------------------------------------------------------
# Shampoo's buckets


SH_HP = dict(lr=1e-2, momentum=0.5, lr_cov=0.1, damping=1e-6, T=2, weight_decay=1e-2, preconditioner_dtype="float64")


def assert_same(ours, theirs, rtol=1e-10, atol=1e-12):
    for step, (s1, s2) in enumerate(zip(ours, theirs, strict=True)):
        for a, b in zip(s1, s2, strict=True):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, step=step: f"step {step}: {m}")


@pytest.mark.parametrize(
    "hp",
    [SH_HP, dict(SH_HP, momentum=0.0, lr_cov=0.0, T=3, weight_decay=0.0), dict(SH_HP, start_preconditioning_step=4)],
    ids=["ema", "adagrad-sums-no-momentum", "late-start"],
)
def test_shampoo_buckets_match_the_reference(hp):
    model, data = problem(torch.float64, steps=8)
    ref = copy.deepcopy(model)
    opt = create_optimizer("shampoo", model, impl="batched", **hp)
    ours = train(model, opt, data)
    ref_opt = create_optimizer("shampoo", ref, impl="reference", **hp)
    assert_same(ours, train(ref, ref_opt, data))
    assert any(len(b.params) == 2 for bs in opt._buckets.values() for b in bs.values())  # a.weight with b.weight
    assert optimizer_state_bytes(opt) == optimizer_state_bytes(ref_opt)  # stacked storage, counted once
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert set(opt.state[p]) == set(ref_opt.state[q])
        assert opt.state[p]["step"] == ref_opt.state[q]["step"]


def test_shampoo_buckets_follow_parameters_that_skip_steps():
    """b.* has no gradient on steps 1 and 2: its step count falls behind a.*'s, so they leave their shared
    bucket (and their roots fall due on other steps) but each still steps exactly as the reference."""
    model, data = problem(torch.float64, steps=8)
    ref = copy.deepcopy(model)
    skip = lambda step, name: name.startswith("b.") and step in (1, 2)  # noqa: E731
    opt = create_optimizer("shampoo", model, impl="batched", **SH_HP)
    ours = train(model, opt, data, skip)
    ref_opt = create_optimizer("shampoo", ref, impl="reference", **SH_HP)
    assert_same(ours, train(ref, ref_opt, data, skip))
    assert opt.state[model.a.weight]["step"] == 8 and opt.state[model.b.weight]["step"] == 6
    assert optimizer_state_bytes(opt) == optimizer_state_bytes(ref_opt)


def test_shampoo_state_moves_between_buckets_and_the_reference():
    model, data = problem(torch.float64, steps=12)
    opt = create_optimizer("shampoo", model, impl="batched", **SH_HP)
    train(model, opt, data[:5])
    clone = copy.deepcopy(model)
    ref_opt = create_optimizer("shampoo", clone, impl="reference", **SH_HP)
    ref_opt.load_state_dict(opt.state_dict())
    assert_same(train(model, opt, data[5:8]), train(clone, ref_opt, data[5:8]))
    back = create_optimizer("shampoo", clone, impl="batched", **SH_HP)
    back.load_state_dict(ref_opt.state_dict())
    assert_same(train(clone, back, data[8:]), train(model, opt, data[8:]))


def test_shampoo_bucket_keeps_the_previous_root_of_the_member_whose_root_failed(monkeypatch):
    model, data = problem(torch.float32, steps=4)
    opt = create_optimizer("shampoo", model, impl="batched", lr=1e-2, T=2)
    train(model, opt, data[:2])  # roots at step 2
    a, b = model.a.weight, model.b.weight
    before = {p: opt.state[p]["root_0"].clone() for p in (a, b)}
    real = torch.linalg.eigh
    target = opt.state[b]["factor_0"]

    def poisoned(A, *args, **kwargs):
        lam, Q = real(A, *args, **kwargs)
        if A.dim() == 3:  # the stacked 16x16 batch: b.weight's first factor gets a NaN eigenvector
            for i in range(A.shape[0]):
                if torch.equal(A[i], target):
                    Q = Q.clone()
                    Q[i, 0, 0] = float("nan")
        return lam, Q

    monkeypatch.setattr(torch.linalg, "eigh", poisoned)
    with pytest.warns(RuntimeWarning, match="keeping the previous root"):
        train(model, opt, data[2:])  # roots again at step 4
    assert opt.state[b]["root_failures"] == 1 and "root_failures" not in opt.state[a]
    torch.testing.assert_close(opt.state[b]["root_0"], before[b], rtol=0, atol=0)
    assert not torch.equal(opt.state[a]["root_0"], before[a])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_shampoo_buckets_with_bf16_factors_decompose_in_fp64_visibly():
    model, data = problem(torch.float32, steps=4)
    ref = copy.deepcopy(model)
    hp = dict(lr=1e-2, T=2, preconditioner_dtype="bfloat16")
    opt = create_optimizer("shampoo", model, impl="batched", **hp)
    ref_opt = create_optimizer("shampoo", ref, impl="reference", **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours, theirs = train(model, opt, data), train(ref, ref_opt, data)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert opt.state[p]["eigh_fp64_fallbacks"] == ref_opt.state[q]["eigh_fp64_fallbacks"] > 0
        assert opt.state[p]["root_0"].dtype == torch.bfloat16
    # the same roundings; bf16 products summed in another order (measured <= 1.6e-3 of the largest entry; rounding
    # the statistics once instead, 4.4e-2: the eps-sized eigenvalues of near-null directions amplify round-off)
    for a, b in zip(ours[-1], theirs[-1], strict=True):
        assert float((a - b).abs().max()) <= 1e-2 * float(b.abs().max()), a.shape
