"""Fast paths bound to the readable reference steps .

- rfrmsprop / rfadamw ``impl="compiled"`` (one ``torch.compile`` pass per tensor) vs ``impl="reference"``:
  each step taken from the *same* state by both, in fp32 and bf16 and under every ablation switch.
  Stated tolerance, u = unit roundoff of the dtype (2^-24 fp32, 2^-8 bf16; u_s for the state dtype):
  |p_fast - p_ref| <= 4 (u_p |p_ref| + u_s max|p_ref - p_old|) and |s_fast - s_ref| <= 4 u_s (|s_ref| + max|s_ref|)
  for every state tensor s. (The compiled pass keeps intermediates in fp32 and rounds once per
  stored value; eager rounds after every op, and fuses no multiply-adds.) Measured: <= 2.2 units.
  The kernel functions themselves run eagerly in fp64 against the reference: <= 1e-12 over 20 steps.
- ifshampoo ``impl="batched"`` (stacked bmm, no K K^T cache) vs the reference: fp64 rtol 1e-10,
  fp32 rtol 1e-4 / atol 1e-6 over 20 steps (measured <= 1.4e-6 relative), both schedules, the name
  discount, alpha2 = 0, no momentum, weight decay; state exactly K, m_K and the momentum buffer.
- shampoo ``impl="batched"`` (one eigh per factor size) vs the reference: fp64 rtol 1e-10, atol 1e-12.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rootbench.optimizers._compiled as compiled_mod
from rootbench.harness.measure import optimizer_state_bytes
from rootbench.optimizers import create_optimizer

B = 8
UNIT = {torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8, torch.float64: 2.0 ** -53}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# diagonal root-free methods: compiled vs reference

SWITCHES = {
    "rfadamw": [dict(weight_decay=1e-2, bias_correction=True), dict(momentum=0.0),
                dict(s0_zero=True, lr_cov=0.1, momentum=0.5), dict(scale_by_batch=False, momentum=0.5)],
    "rfrmsprop": [dict(weight_decay=1e-2, momentum=0.9), dict(momentum=0.0),
                  dict(s0_zero=True, lr_cov=0.1, momentum=0.5), dict(scale_by_batch=False, momentum=0.5)],
}
SHAPES = [(256, 160), (300,), (1,)]  # one tensor above the kernel's size threshold; the others take the reference


def params_of(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in SHAPES]


def assert_step_matches(ref_params, fast_params, old, ref_opt, fast_opt, state_dtype):
    for a, b, o in zip(ref_params, fast_params, old):
        u_p, u_s = UNIT[a.dtype], max(UNIT[a.dtype], UNIT[state_dtype or a.dtype])
        x, y = a.detach().double(), b.detach().double()
        bound = 4 * (u_p * x.abs() + u_s * (x - o.double()).abs().max())
        assert ((x - y).abs() <= bound).all(), f"param {tuple(a.shape)}: {float((x - y).abs().max())}"
        for key, v in ref_opt.state[a].items():
            if torch.is_tensor(v):
                w = fast_opt.state[b][key]
                assert w.dtype == v.dtype, key
                x, y = v.double(), w.double()
                bound = 4 * u_s * (x.abs() + x.abs().max())
                assert ((x - y).abs() <= bound).all(), f"{key}: {float((x - y).abs().max())}"


def one_step_parity(name, dtype, hp, steps=3, state_dtype=None):
    """Each step: the compiled optimizer starts from the reference's parameters and state."""
    g = torch.Generator().manual_seed(1)
    ref = params_of(dtype)
    fast = params_of(dtype)
    extra = {"state_dtype": {torch.float32: "float32", torch.bfloat16: "bfloat16"}[state_dtype]} if state_dtype else {}
    ref_opt = create_optimizer(name, ref, batch_size=B, lr=1e-2, impl="reference", **hp, **extra)
    for _ in range(steps):
        fast_opt = create_optimizer(name, fast, batch_size=B, lr=1e-2, impl="compiled", **hp, **extra)
        assert fast_opt.impl_used == "compiled", fast_opt.impl_note
        fast_opt.load_state_dict(ref_opt.state_dict())
        grads = [(torch.randn(p.shape, generator=g) * 0.1).to(dtype) for p in ref]
        with torch.no_grad():
            old = [p.detach().clone() for p in ref]
            for a, b, gr in zip(ref, fast, grads):
                b.copy_(a)
                a.grad, b.grad = gr.clone(), gr.clone()
        ref_opt.step()
        fast_opt.step()
        assert_step_matches(ref, fast, old, ref_opt, fast_opt, state_dtype)
    return fast_opt


_NO_COMPILE = compiled_mod.compile_unavailable(torch.device("cpu"))
needs_compile = pytest.mark.skipif(_NO_COMPILE is not None, reason=f"torch.compile unavailable: {_NO_COMPILE}")


@pytest.mark.slow
@needs_compile
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["rfadamw", "rfrmsprop"])
def test_compiled_step_matches_reference_from_the_same_state(name, dtype):
    """Every ablation switch on one compiled kernel per dtype (the switches are scalars: no recompiles)."""
    cases = SWITCHES[name] if dtype == torch.float32 else [c for c in SWITCHES[name] if c.get("momentum", 0.9)]
    for hp in cases:
        opt = one_step_parity(name, dtype, hp)
    assert opt.compile_time_s >= 0.0


@pytest.mark.slow
@needs_compile
def test_compiled_kernel_does_not_recompile_for_new_lr_or_shapes():
    params = [nn.Parameter(torch.randn(s)) for s in ((256, 160), (50000,), (200, 10, 20))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = create_optimizer("rfadamw", params, batch_size=B, impl="compiled", bias_correction=True)
    opt.step()  # compiles at most once (for the first tensor's dtype signature)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for lr in (1e-3, 5e-4, 2e-4):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()  # bias corrections change every step too
    assert all(opt.state[p]["step"] == 4 for p in params)


class EagerKernel(compiled_mod.Kernel):
    """The kernel function run eagerly: checks its algebra without compiling."""

    def __call__(self, key, flats, scalars):
        self.fn(*flats, scalars)
        return 0.0


@pytest.mark.parametrize("name", ["rfadamw", "rfrmsprop"])
def test_kernel_functions_restate_the_reference_in_fp64(name, monkeypatch):
    import rootbench.optimizers.rfadamw as rfadamw_mod
    import rootbench.optimizers.rfrmsprop as rfrmsprop_mod

    module = rfadamw_mod if name == "rfadamw" else rfrmsprop_mod
    for attr in ("_RFADAMW_KERNEL", "_KERNEL", "_MOMENTUM_KERNEL"):
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, EagerKernel(getattr(module, attr).fn))
    monkeypatch.setattr(compiled_mod, "MIN_KERNEL_NUMEL", 2)
    for hp in SWITCHES[name] + [dict(momentum=0.0)]:
        g = torch.Generator().manual_seed(2)
        ref, fast = params_of(torch.float64), params_of(torch.float64)
        ref_opt = create_optimizer(name, ref, batch_size=B, lr=1e-2, impl="reference", **hp)
        fast_opt = create_optimizer(name, fast, batch_size=B, lr=1e-2, impl="reference", **hp)
        fast_opt.impl_used = "compiled"  # the compiled step's Python, with the kernel run eagerly
        for _ in range(20):
            grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.1 for p in ref]
            for a, b, gr in zip(ref, fast, grads):
                a.grad, b.grad = gr.clone(), gr.clone()
            ref_opt.step()
            fast_opt.step()
        for a, b in zip(ref, fast):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
        for a, b in zip(ref, fast):
            for key, v in ref_opt.state[a].items():
                if torch.is_tensor(v):
                    torch.testing.assert_close(fast_opt.state[b][key], v, rtol=1e-12, atol=1e-14)


def test_auto_keeps_the_reference_for_small_models_and_says_why():
    opt = create_optimizer("rfadamw", params_of(torch.float32), batch_size=B)
    assert opt.impl_used == "reference" and "not worth compiling" in opt.impl_note
    with pytest.raises(ValueError, match="impl"):
        create_optimizer("rfrmsprop", params_of(torch.float32), batch_size=B, impl="fastest")


def test_compiled_falls_back_visibly_where_compiling_is_unavailable(monkeypatch):
    monkeypatch.setenv(compiled_mod.ENV_DISABLE, "1")
    with pytest.warns(RuntimeWarning, match="cannot compile"):
        opt = create_optimizer("rfrmsprop", params_of(torch.float32), batch_size=B, impl="compiled")
    assert opt.impl_used == "reference" and compiled_mod.ENV_DISABLE in opt.impl_note


def test_a_compile_error_falls_back_to_the_reference_step_with_a_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("simulated: no working C++ compiler")
        return run

    monkeypatch.setattr(compiled_mod.torch, "compile", broken_compile)
    import rootbench.optimizers.rfadamw as rfadamw_mod

    monkeypatch.setattr(rfadamw_mod, "_RFADAMW_KERNEL", compiled_mod.Kernel(rfadamw_mod._RFADAMW_KERNEL.fn))
    ref, fast = params_of(torch.float32), params_of(torch.float32)
    ref_opt = create_optimizer("rfadamw", ref, batch_size=B, impl="reference")
    fast_opt = create_optimizer("rfadamw", fast, batch_size=B, impl="compiled")
    for a, b in zip(ref, fast):
        a.grad = torch.full_like(a, 0.1)
        b.grad = torch.full_like(b, 0.1)
    ref_opt.step()
    with pytest.warns(RuntimeWarning, match="simulated"):
        fast_opt.step()
    assert fast_opt.impl_used == "reference" and "simulated" in fast_opt.impl_note
    for a, b in zip(ref, fast):
        assert torch.equal(a, b)  # nothing was half-written: the whole step ran as the reference
    assert all(fast_opt.state[b]["step"] == 1 for b in fast)


# ---------------------------------------------------------------------------------------------
# IF-Shampoo and Shampoo: batched vs reference


class Net(nn.Module):
    """Two same-shape Linear layers (one bucket of 2), a conv (4-D), LayerNorm, a 'proj', a scalar, and a
    ViT-style [1, 1, 64] token that shares its squeezed shape with the [64] vectors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.norm = nn.LayerNorm(64)
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.proj = nn.Linear(64, 3)
        self.temperature = nn.Parameter(torch.tensor(1.0))
        self.token = nn.Parameter(torch.zeros(1, 1, 64))

    def forward(self, x):
        h = self.norm(torch.tanh(self.conv(x)).flatten(1)) + self.token[0]
        return self.proj(torch.tanh(self.b(torch.tanh(self.a(h))))) * self.temperature


def problem(dtype, steps=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Net().to(dtype)
    data = [(torch.randn(B, 2, 6, 6, generator=g).to(dtype), torch.randint(0, 3, (B,), generator=g))
            for _ in range(steps)]
    return model, data


def train(model, opt, data):
    out = []
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out


IF_HP = dict(lr=1e-2, momentum=0.9, lr_cov=0.1, riemannian_momentum=0.5, damping=1e-3, weight_decay=1e-2)
IF_CASES = [dict(schedule="prototype_log4", T=2), dict(schedule="every_T", T=3, lr_cov_name_discount=True),
            dict(schedule="every_T", T=1, riemannian_momentum=0.0, momentum=0.0, weight_decay=0.0)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", IF_CASES, ids=["log4", "every3-discount", "no-momenta"])
def test_ifshampoo_batched_matches_reference(dtype, case):
    model, data = problem(dtype)
    ref = copy.deepcopy(model)
    hp = {**IF_HP, **case, "preconditioner_dtype": "param", "momentum_dtype": "param"}
    fast_opt = create_optimizer("ifshampoo", model, batch_size=B, impl="batched", **hp)
    ours = train(model, fast_opt, data)
    theirs = train(ref, create_optimizer("ifshampoo", ref, batch_size=B, impl="reference", **hp), data)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    for step, (s1, s2) in enumerate(zip(ours, theirs)):
        for a, b in zip(s1, s2):
            torch.testing.assert_close(a, b, **tol, msg=lambda m: f"step {step}: {m}")
    # state: K and m_K per axis (m_K only with alpha2 > 0) and the momentum buffer, nothing else
    esize = torch.tensor([], dtype=dtype).element_size()
    expected = 0
    for p in model.parameters():
        dims = [d for d in p.shape if d != 1] or [1]
        expected += sum(d * d for d in dims) * esize * (2 if hp["riemannian_momentum"] else 1)
        expected += p.numel() * esize if hp["momentum"] else 0
    assert optimizer_state_bytes(fast_opt) == expected


def test_ifshampoo_state_moves_between_batched_and_reference():
    """A batched checkpoint continues on the reference (its K K^T cache is rebuilt) and back."""
    model, data = problem(torch.float64, steps=12)
    hp = {**IF_HP, "preconditioner_dtype": "param", "momentum_dtype": "param"}
    opt = create_optimizer("ifshampoo", model, batch_size=B, impl="batched", **hp)
    train(model, opt, data[:6])
    clone = copy.deepcopy(model)
    ref_opt = create_optimizer("ifshampoo", clone, batch_size=B, impl="reference", **hp)
    ref_opt.load_state_dict(opt.state_dict())
    a = train(model, opt, data[6:9])
    b = train(clone, ref_opt, data[6:9])
    for x, y in zip(a[-1], b[-1]):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    back = create_optimizer("ifshampoo", clone, batch_size=B, impl="batched", **hp)
    back.load_state_dict(ref_opt.state_dict())
    c = train(clone, back, data[9:])
    d = train(model, opt, data[9:])
    for x, y in zip(c[-1], d[-1]):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_ifshampoo_batched_bf16_factors_stay_close_to_the_reference():
    """bf16 factors: no fallback of any kind, bf16 state, and the trajectory within bf16 drift of the
    reference's (measured: <= 2.2% of the largest parameter entry after 20 steps)."""
    model, data = problem(torch.float32)
    ref = copy.deepcopy(model)
    hp = dict(preconditioner_dtype="bfloat16", momentum_dtype="bfloat16", schedule="every_T", T=1, lr=0.02)
    opt = create_optimizer("ifshampoo", model, batch_size=B, impl="batched", **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = train(model, opt, data)
    theirs = train(ref, create_optimizer("ifshampoo", ref, batch_size=B, impl="reference", **hp), data)
    assert all(v.dtype == torch.bfloat16 for s in opt.state.values() for k, v in s.items() if k.startswith("factor"))
    for a, b in zip(ours[-1], theirs[-1]):
        assert torch.isfinite(a).all()
        assert float((a - b).abs().max()) <= 0.1 * float(b.abs().max()), (a.shape, float((a - b).abs().max()))


def test_shampoo_batched_eigh_matches_reference():
    model, data = problem(torch.float64, steps=10)
    ref = copy.deepcopy(model)
    hp = dict(lr=1e-2, momentum=0.5, lr_cov=0.1, damping=1e-6, T=2, preconditioner_dtype="float64",
              max_preconditioner_dim=100)  # conv.weight's axes stay matrices, norm's 64 too
    calls = []
    real = torch.linalg.eigh

    def counting(A, *args, **kwargs):
        calls.append(A.shape)
        return real(A, *args, **kwargs)

    torch.linalg.eigh = counting
    try:
        ours = train(model, create_optimizer("shampoo", model, impl="batched", **hp), data)
    finally:
        torch.linalg.eigh = real
    theirs = train(ref, create_optimizer("shampoo", ref, impl="reference", **hp), data)
    for a, b in zip(ours[-1], theirs[-1]):  # the batched products round differently: ~1e-14
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(len(s) == 3 and s[0] > 1 for s in calls)  # a stacked batch of same-size factors


def test_shampoo_batched_retries_a_failed_batch_per_factor_in_fp64(monkeypatch):
    real = torch.linalg.eigh

    def failing_in_fp32(A, *args, **kwargs):
        if A.dtype == torch.float32:
            raise torch.linalg.LinAlgError("simulated convergence failure")
        return real(A, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", failing_in_fp32)
    model, data = problem(torch.float32, steps=2)
    opt = create_optimizer("shampoo", model, impl="batched", T=2, lr=1e-3)
    train(model, opt, data)
    assert opt.state[model.a.weight]["eigh_fp64_fallbacks"] == 2  # both factors, at step 2
    assert opt.state[model.a.weight]["root_0"].dtype == torch.float32
    assert all(torch.isfinite(p.detach()).all() for p in model.parameters())


def test_ifshampoo_batched_matches_reference_on_large_factors():
    """Factors of realistic size (a Linear(300, 260) and its bias), fp64."""
    torch.manual_seed(0)
    layer = nn.Linear(300, 260).double()
    ref = copy.deepcopy(layer)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(B, 300, generator=g, dtype=torch.float64), torch.randint(0, 260, (B,), generator=g))
            for _ in range(4)]
    hp = {**IF_HP, "schedule": "every_T", "T": 1, "preconditioner_dtype": "param", "momentum_dtype": "param"}
    ours = train(layer, create_optimizer("ifshampoo", layer, batch_size=B, impl="batched", **hp), data)
    theirs = train(ref, create_optimizer("ifshampoo", ref, batch_size=B, impl="reference", **hp), data)
    for a, b in zip(ours[-1], theirs[-1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
