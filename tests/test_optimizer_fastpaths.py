"""Fast paths bound to the readable reference steps.

- rfrmsprop / rfadamw ``impl="multi_tensor"`` (the reference's eager ops run once on flat state
  buffers) and ``impl="compiled"`` (one ``torch.compile`` kernel call per bucket, every member in place) vs
  ``impl="reference"``, for fp32 and bf16 parameters, fp32 and bf16 state, every ablation switch (and
  the registered ablation variants), several param groups, mixed tensor sizes and several buckets:
  multi_tensor in fp32 is bit-identical on CPU step after step; otherwise each step is taken from the
  *same* state by both. More of the bucket machinery (state layout, checkpoints, changing membership)
  is tested in tests/test_optimizer_multitensor.py. Stated tolerance, u = unit
  roundoff of the dtype (2^-24 fp32, 2^-8 bf16; u_s for the state dtype):
  |p_fast - p_ref| <= 4 (u_p |p_ref| + u_s max|p_ref - p_old|), the max over all tensors, and
  |s_fast - s_ref| <= 4 u_s (|s_ref| + max|s_ref| + max|s_old|) for every state tensor s (s_old: before
  the step; a momentum buffer can cancel against its new direction, and a tensor's step with it).
  (The compiled pass keeps intermediates in fp32 and rounds once per stored value; eager rounds after
  every op, and fuses no multiply-adds.)
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
UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float64: 2.0**-53}
STATE_DTYPE = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float64: "float64"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# diagonal root-free methods: multi_tensor and compiled vs reference

SWITCHES = {
    "rfadamw": [
        dict(weight_decay=1e-2, bias_correction=True),
        dict(momentum=0.0),
        dict(s0_zero=True, lr_cov=0.1, momentum=0.5),
        dict(scale_by_batch=False, momentum=0.5),
    ],
    "rfrmsprop": [
        dict(weight_decay=1e-2, momentum=0.9),
        dict(momentum=0.0),
        dict(s0_zero=True, lr_cov=0.1, momentum=0.5),
        dict(scale_by_batch=False, momentum=0.5),
    ],
}
# group 0: a larger tensor and two small ones; group 1 (its own lr): small tensors cut into two buckets by the
# (patched) bucket limits; group 2: a single element
SHAPES = [[(256, 160), (300,), (1,)], [(7, 5, 3), (64,), (3000,)], [(1,)]]


@pytest.fixture
def small_thresholds(monkeypatch):
    """Limits scaled to test-sized tensors: flat buckets of <= 2048 elements, compiled buckets of <= 2 tensors."""
    monkeypatch.setitem(compiled_mod.CHUNK_MAX_NUMEL, "cpu", 2048)
    monkeypatch.setattr(compiled_mod, "COMPILED_MAX_TENSORS", 2)


def params_of(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(dtype)) for shapes in SHAPES for s in shapes]


def groups_of(params):
    n0, n1 = len(SHAPES[0]), len(SHAPES[0]) + len(SHAPES[1])
    return [{"params": params[:n0]}, {"params": params[n0:n1], "lr": 3e-3}, {"params": params[n1:]}]


def make(name, params, impl, hp, state_dtype=None):
    extra = {"state_dtype": STATE_DTYPE[state_dtype]} if state_dtype else {}
    return create_optimizer(name, groups_of(params), batch_size=B, lr=1e-2, impl=impl, **hp, **extra)


def set_grads(params_lists, g):
    grads = [(torch.randn(p.shape, generator=g) * 0.1).to(p.dtype) for p in params_lists[0]]
    for params in params_lists:
        for p, gr in zip(params, grads):
            p.grad = gr.clone()


def assert_step_matches(ref_params, fast_params, old, old_states, ref_opt, fast_opt, state_dtype):
    # the largest step of any tensor: a tensor's own step can be a cancellation (a momentum buffer against
    # its new direction), rounded relative to its terms
    step = max(float((a.detach().double() - o.double()).abs().max()) for a, o in zip(ref_params, old))
    for a, b, o_state in zip(ref_params, fast_params, old_states, strict=True):
        u_p, u_s = UNIT[a.dtype], max(UNIT[a.dtype], UNIT[state_dtype or a.dtype])
        x, y = a.detach().double(), b.detach().double()
        bound = 4 * (u_p * x.abs() + u_s * step)
        assert ((x - y).abs() <= bound).all(), f"param {tuple(a.shape)}: {float((x - y).abs().max())}"
        for key, v in ref_opt.state[a].items():
            if torch.is_tensor(v):
                w = fast_opt.state[b][key]
                assert w.dtype == v.dtype and w.shape == v.shape, key
                x, y = v.double(), w.double()
                # the state's own scale, and the previous state's: an update can cancel against it
                bound = 4 * u_s * (x.abs() + x.abs().max() + o_state.get(key, x).double().abs().max())
                assert ((x - y).abs() <= bound).all(), f"{key}: {float((x - y).abs().max())}"


def assert_identical(ref_params, fast_params, ref_opt, fast_opt):
    for a, b in zip(ref_params, fast_params):
        assert torch.equal(a, b), f"param {tuple(a.shape)}: {float((a.detach() - b.detach()).abs().max())}"
        assert ref_opt.state[a].keys() == fast_opt.state[b].keys()
        for key, v in ref_opt.state[a].items():
            w = fast_opt.state[b][key]
            assert (torch.equal(v, w) and v.dtype == w.dtype) if torch.is_tensor(v) else v == w, key


def one_step_parity(name, dtype, hp, impl="compiled", steps=3, state_dtype=None):
    """Each step starts both optimizers from the same parameters and state: the fast one continues its
    own plan (state in its flat buffers), the reference loads the fast one's state first."""
    g = torch.Generator().manual_seed(1)
    ref, fast = params_of(dtype), params_of(dtype)
    fast_opt = make(name, fast, impl, hp, state_dtype)
    assert fast_opt.impl_used == impl, fast_opt.impl_note
    for _ in range(steps):
        ref_opt = make(name, ref, "reference", hp, state_dtype)
        ref_opt.load_state_dict(fast_opt.state_dict())
        with torch.no_grad():
            for a, b in zip(ref, fast):
                a.copy_(b)
        set_grads([ref, fast], g)
        old = [p.detach().clone() for p in ref]
        old_states = [{k: v.clone() for k, v in ref_opt.state[p].items() if torch.is_tensor(v)} for p in ref]
        ref_opt.step()
        fast_opt.step()
        assert fast_opt.impl_used == impl, fast_opt.impl_note
        assert_step_matches(ref, fast, old, old_states, ref_opt, fast_opt, state_dtype)
    return fast_opt


_NO_COMPILE = compiled_mod.compile_unavailable(torch.device("cpu"))
needs_compile = pytest.mark.skipif(_NO_COMPILE is not None, reason=f"torch.compile unavailable: {_NO_COMPILE}")
STATE_CASES = [
    (torch.float32, None),
    (torch.bfloat16, None),
    (torch.float32, torch.bfloat16),
    (torch.bfloat16, torch.float32),
]
STATE_IDS = ["fp32", "bf16", "fp32-bf16state", "bf16-fp32state"]


@pytest.mark.parametrize("dtype, state_dtype", STATE_CASES, ids=STATE_IDS)
@pytest.mark.parametrize("name", ["rfadamw", "rfrmsprop", "rfrmsprop_s0zero", "rfrmsprop_nob"])
def test_multi_tensor_step_matches_the_reference(name, dtype, state_dtype, small_thresholds):
    """fp32: bit-identical, step after step. 16-bit: within the stated tolerance from the same state (eager
    rounds a tensor's vectorised body and its scalar tail differently in bf16, and the flat layout moves
    the tails: measured 3 of 45k elements one bf16 unit apart)."""
    base = name.split("_")[0]
    for hp in SWITCHES[base] if name == base else [{}]:
        if dtype != torch.float32 or state_dtype is not None:
            opt = one_step_parity(name, dtype, hp, impl="multi_tensor", state_dtype=state_dtype)
        else:
            g = torch.Generator().manual_seed(1)
            ref, fast = params_of(dtype), params_of(dtype)
            ref_opt = make(name, ref, "reference", hp)
            opt = make(name, fast, "multi_tensor", hp)
            for _ in range(4):
                set_grads([ref, fast], g)
                ref_opt.step()
                opt.step()
                assert_identical(ref, fast, ref_opt, opt)
        assert opt.impl_used == "multi_tensor"
        assert len(opt._plans[1].buckets) == 2 and not any(b.compiled for b in opt._plans[0].buckets)  # no kernels


@pytest.mark.slow
@needs_compile
@pytest.mark.parametrize("dtype, state_dtype", STATE_CASES, ids=STATE_IDS)
@pytest.mark.parametrize("name", ["rfadamw", "rfrmsprop"])
def test_compiled_step_matches_reference_from_the_same_state(name, dtype, state_dtype, small_thresholds):
    """Every ablation switch on the fp32 kernels; the 16-bit and mixed-dtype kernels under two of them
    (the switches are scalars: no recompiles)."""
    fp32 = (dtype, state_dtype) == (torch.float32, None)
    cases = SWITCHES[name] if fp32 else SWITCHES[name][:1] + SWITCHES[name][2:3]
    for hp in cases:
        opt = one_step_parity(name, dtype, hp, state_dtype=state_dtype)
        assert all(b.compiled for plan in opt._plans.values() for b in plan.buckets)  # a single element too
        assert [len(opt._plans[i].buckets) for i in range(3)] == [2, 2, 1]
    assert opt.compile_time_s >= 0.0


@pytest.mark.slow
@needs_compile
def test_compiled_kernels_compile_once_per_signature(small_thresholds):
    """New learning rates and bias corrections never recompile; a second optimizer on tensors of the same
    shapes (the step-time probe's copy, then the run's own) reuses the kernels; another model compiles its own
    without touching the first one's."""

    def model(shapes):
        params = [nn.Parameter(torch.randn(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        return params

    shapes = ((256, 160), (50000,), (20, 10, 20), (30,))
    params = model(shapes)
    opt = create_optimizer("rfadamw", params, batch_size=B, impl="compiled", bias_correction=True)
    opt.step()  # compiles a kernel per bucket signature
    assert len(opt._plans[0].buckets) == 2 and opt.compile_time_s > 0
    with torch._dynamo.config.patch(error_on_recompile=True):
        for lr in (1e-3, 5e-4, 2e-4):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()  # bias corrections change every step too
        twin = create_optimizer("rfadamw", model(shapes), batch_size=B, impl="compiled", bias_correction=True)
        twin.step()
        assert twin.compile_time_s == 0.0
        other = create_optimizer("rfadamw", model(((40000,), (17,), (1000, 3))), batch_size=B, impl="compiled")
        other.step()
        assert other.compile_time_s > 0
        opt.step()
    assert all(opt.state[p]["step"] == 5 for p in params)


@pytest.mark.parametrize("name", ["rfadamw", "rfrmsprop"])
def test_kernel_functions_restate_the_reference_in_fp64(name, monkeypatch, small_thresholds):
    """The compiled path's Python and kernel functions, the kernels run eagerly (nothing compiled)."""
    monkeypatch.setattr(compiled_mod.Kernel, "__call__", lambda self, key, flats, sc: self.fn(*flats, sc) or 0.0)
    for hp in SWITCHES[name] + [dict(momentum=0.0, weight_decay=1e-2)]:
        g = torch.Generator().manual_seed(2)
        ref, fast = params_of(torch.float64), params_of(torch.float64)
        ref_opt = make(name, ref, "reference", hp)
        fast_opt = make(name, fast, "reference", hp)
        fast_opt.impl_used = "compiled"  # the compiled step's Python, with the kernels run eagerly
        for _ in range(20):
            set_grads([ref, fast], g)
            ref_opt.step()
            fast_opt.step()
        assert all(b.compiled for plan in fast_opt._plans.values() for b in plan.buckets)
        for a, b in zip(ref, fast):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
            for key, v in ref_opt.state[a].items():
                if torch.is_tensor(v):
                    torch.testing.assert_close(fast_opt.state[b][key], v, rtol=1e-12, atol=1e-14)


def test_auto_is_multi_tensor_for_small_models_and_says_why():
    opt = create_optimizer("rfadamw", params_of(torch.float32), batch_size=B)
    assert opt.impl_used == "multi_tensor" and "not worth compiling" in opt.impl_note
    with pytest.raises(ValueError, match="impl"):
        create_optimizer("rfrmsprop", params_of(torch.float32), batch_size=B, impl="fastest")
    big = [nn.Parameter(torch.zeros(1 << 17))]
    impl, note = compiled_mod.resolve_impl("auto", big, "rfadamw")
    assert impl == ("compiled" if _NO_COMPILE is None else "multi_tensor"), note


def test_compiled_falls_back_visibly_where_compiling_is_unavailable(monkeypatch):
    monkeypatch.setenv(compiled_mod.ENV_DISABLE, "1")
    with pytest.warns(RuntimeWarning, match="cannot compile"):
        opt = create_optimizer("rfrmsprop", params_of(torch.float32), batch_size=B, impl="compiled")
    assert opt.impl_used == "multi_tensor" and compiled_mod.ENV_DISABLE in opt.impl_note
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto falls back quietly (the note says why)
        opt = create_optimizer("rfrmsprop", [nn.Parameter(torch.zeros(1 << 17))], batch_size=B)
    assert opt.impl_used == "multi_tensor" and compiled_mod.ENV_DISABLE in opt.impl_note


def test_a_compile_error_falls_back_to_multi_tensor_with_a_warning(monkeypatch, small_thresholds):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("simulated: no working C++ compiler")

        return run

    monkeypatch.setattr(compiled_mod.torch, "compile", broken_compile)
    monkeypatch.setattr(compiled_mod, "compile_unavailable", lambda device: None)
    import rootbench.optimizers.rfadamw as rfadamw_mod

    monkeypatch.setattr(rfadamw_mod, "_KERNEL", compiled_mod.Kernel(rfadamw_mod._KERNEL.fn))
    ref, fast = params_of(torch.float32), params_of(torch.float32)
    ref_opt = make("rfadamw", ref, "reference", {})
    fast_opt = make("rfadamw", fast, "compiled", {})
    set_grads([ref, fast], torch.Generator().manual_seed(0))
    ref_opt.step()
    with pytest.warns(RuntimeWarning, match="simulated"):
        fast_opt.step()
    assert fast_opt.impl_used == "multi_tensor" and "simulated" in fast_opt.impl_note
    assert_identical(ref, fast, ref_opt, fast_opt)  # nothing half-written: the step ran as multi_tensor
    fast_opt.step()
    ref_opt.step()
    assert_identical(ref, fast, ref_opt, fast_opt)


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
    data = [
        (torch.randn(B, 2, 6, 6, generator=g).to(dtype), torch.randint(0, 3, (B,), generator=g)) for _ in range(steps)
    ]
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
IF_CASES = [
    dict(schedule="prototype_log4", T=2),
    dict(schedule="every_T", T=3, lr_cov_name_discount=True),
    dict(schedule="every_T", T=1, riemannian_momentum=0.0, momentum=0.0, weight_decay=0.0),
]


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
            torch.testing.assert_close(a, b, **tol, msg=lambda m, step=step: f"step {step}: {m}")
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
    hp = dict(
        lr=1e-2, momentum=0.5, lr_cov=0.1, damping=1e-6, T=2, preconditioner_dtype="float64", max_preconditioner_dim=100
    )  # conv.weight's axes stay matrices, norm's 64 too
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
    data = [
        (torch.randn(B, 300, generator=g, dtype=torch.float64), torch.randint(0, 260, (B,), generator=g))
        for _ in range(4)
    ]
    hp = {**IF_HP, "schedule": "every_T", "T": 1, "preconditioner_dtype": "param", "momentum_dtype": "param"}
    ours = train(layer, create_optimizer("ifshampoo", layer, batch_size=B, impl="batched", **hp), data)
    theirs = train(ref, create_optimizer("ifshampoo", ref, batch_size=B, impl="reference", **hp), data)
    for a, b in zip(ours[-1], theirs[-1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
