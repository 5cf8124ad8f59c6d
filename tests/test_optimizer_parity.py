"""Parity of the paper's optimizers with independent oracles (Lin et al. 2024 and their reference code).

- sgd / adamw / rmsprop wrap torch.optim: the hyperparameter mapping is checked bit-exactly against
  torch.optim built by hand (impl="forloop" vs foreach=False).
- rfrmsprop / rfadamw: a float64 transcription of the equations of the paper's RF-RMSProp and RF-AdamW updates,
  written here in the paper's s-form (s = B a), loop by loop over the parameters.
- ifshampoo: the authors' package sirfshampoo==0.0.1 configured as section 7.1 says, float64 and
  float32, both schedules, with and without the 0.25 x lr_cov name discount.
- shampoo: an explicit numpy float64 L^(-1/4) G R^(-1/4) (order 2) and kron of three -1/6 roots (order 3).
Problems are tiny networks with 0-d, 1-D, 2-D, 3-D (depthwise, after squeeze) and 4-D (conv) parameters.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rootbench.optimizers import create_optimizer

B = 8  # examples the loss is averaged over
STEPS = 20


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and avoids OpenMP stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Net(nn.Module):
    """conv (4-D + bias), depthwise conv (3-D after squeeze), LayerNorm, Linear 'proj' and head, a scalar."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.dw = nn.Conv2d(4, 4, 3, groups=4, bias=False)
        self.norm = nn.LayerNorm(16)
        self.proj = nn.Linear(16, 6)
        self.head = nn.Linear(6, 3)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        h = torch.tanh(self.dw(torch.tanh(self.conv(x)))).flatten(1)
        return self.head(torch.tanh(self.proj(self.norm(h)))) * self.temperature


def make_problem(dtype, seed=0, steps=STEPS):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Net().to(dtype)
    data = [
        (torch.randn(B, 2, 6, 6, generator=g).to(dtype), torch.randint(0, 3, (B,), generator=g)) for _ in range(steps)
    ]
    return model, data


def train(model, opt, data, after_step=None):
    """Mean cross-entropy over B examples; returns the parameters after every step."""
    history = []
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        history.append([p.detach().clone() for p in model.parameters()])
    return history


def max_diffs(h1, h2):
    abs_d = max(float((a - b).abs().max()) for s1, s2 in zip(h1, h2) for a, b in zip(s1, s2))
    rel_d = max(
        float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for s1, s2 in zip(h1, h2) for a, b in zip(s1, s2)
    )
    return abs_d, rel_d


def assert_same_trajectory(h1, h2, rtol, atol):
    for step, (s1, s2) in enumerate(zip(h1, h2)):
        for a, b in zip(s1, s2):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, step=step: f"step {step}: {m}")


# ---------------------------------------------------------------------------------------------
# wrapped torch optimizers: the mapping of rootbench's names onto torch.optim

HP = dict(lr=3e-3, momentum=0.7, lr_cov=2e-2, damping=1e-6, weight_decay=1e-2)
TORCH_ORACLES = {
    "sgd": lambda ps: torch.optim.SGD(
        ps,
        lr=HP["lr"],
        momentum=HP["momentum"],
        weight_decay=HP["weight_decay"],
        dampening=0.0,
        nesterov=False,
        foreach=False,
    ),
    "adamw": lambda ps: torch.optim.AdamW(
        ps,
        lr=HP["lr"],
        betas=(HP["momentum"], 1 - HP["lr_cov"]),
        eps=HP["damping"],
        weight_decay=HP["weight_decay"],
        foreach=False,
    ),
    "rmsprop": lambda ps: torch.optim.RMSprop(
        ps,
        lr=HP["lr"],
        alpha=1 - HP["lr_cov"],
        eps=HP["damping"],
        momentum=HP["momentum"],
        weight_decay=HP["weight_decay"],
        foreach=False,
    ),
}


@pytest.mark.parametrize("name", sorted(TORCH_ORACLES))
def test_wrapped_torch_optimizers_map_hyperparameters_exactly(name):
    model, data = make_problem(torch.float32)
    ref = copy.deepcopy(model)
    hp = {k: v for k, v in HP.items() if k in ("lr", "momentum", "weight_decay") or name != "sgd"}
    ours = train(model, create_optimizer(name, model, impl="forloop", **hp), data)
    theirs = train(ref, TORCH_ORACLES[name](ref.parameters()), data)
    assert_same_trajectory(ours, theirs, rtol=0, atol=0)  # same kernels: bit-exact


def test_rmsprop_has_no_fused_path_and_auto_is_foreach():
    model, _ = make_problem(torch.float32)
    opt = create_optimizer("rmsprop", model)
    assert opt.param_groups[0]["foreach"] is True
    with pytest.raises(ValueError, match="no fused"):
        create_optimizer("rmsprop", model, impl="fused")


# ---------------------------------------------------------------------------------------------
# root-free diagonal methods vs a float64 transcription of the paper's equations


def rfrmsprop_oracle(
    params, grads_of, steps, lr, lr_cov, damping, momentum, weight_decay, batch_size, s0_zero=False, scale_by_batch=True
):
    """Section 1.2 in the paper's s-form: s <- (1-b2) s + b2 B g*g; d = g/(s+lam) + wd mu; heavy-ball."""
    Bf = batch_size if scale_by_batch else 1
    s = [torch.zeros_like(p) if s0_zero else torch.ones_like(p) for p in params]
    m = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        grads = grads_of(params)
        for i, (mu, g) in enumerate(zip(params, grads)):
            s[i] = (1 - lr_cov) * s[i] + lr_cov * Bf * g * g
            d = g / (s[i] + damping) + weight_decay * mu
            if momentum != 0:
                m[i] = momentum * m[i] + d
                d = m[i]
            params[i] = mu - lr * d
        yield [p.clone() for p in params]


def rfadamw_oracle(
    params,
    grads_of,
    steps,
    lr,
    lr_cov,
    damping,
    momentum,
    weight_decay,
    batch_size,
    s0_zero=False,
    scale_by_batch=True,
    bias_correction=False,
):
    """Section 2: decoupled decay first; m EMA; v0 = 1/B; den = B v / bc2 + eps, no root."""
    Bf = batch_size if scale_by_batch else 1
    b1, b2 = momentum, 1 - lr_cov
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) if s0_zero else torch.full_like(p, 1 / Bf) for p in params]
    for t in range(1, steps + 1):
        grads = grads_of(params)  # the backward pass saw the parameters before the decay
        params = [mu * (1 - lr * weight_decay) for mu in params]
        for i, (mu, g) in enumerate(zip(params, grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            bc1, bc2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
            params[i] = mu - (lr / bc1) * m[i] / (Bf * v[i] / bc2 + damping)
        yield [p.clone() for p in params]


def functional_grads(model, data):
    """grads_of(params) at step k: gradient of the step-k mean loss at ``params`` (a fresh graph)."""
    names = [n for n, _ in model.named_parameters()]
    it = iter(data)

    def grads_of(params):
        x, y = next(it)
        ps = [p.detach().requires_grad_(True) for p in params]
        out = torch.func.functional_call(model, dict(zip(names, ps)), (x,))
        return torch.autograd.grad(F.cross_entropy(out, y), ps)

    return grads_of


RF_CASES = [
    dict(lr=1e-2, lr_cov=5e-2, damping=1e-4, momentum=0.9, weight_decay=1e-2),
    dict(lr=1e-2, lr_cov=5e-2, damping=1e-4, momentum=0.0, weight_decay=0.0),
    dict(lr=1e-3, lr_cov=5e-2, damping=1e-3, momentum=0.5, weight_decay=1e-3, s0_zero=True),
    dict(lr=1e-2, lr_cov=5e-2, damping=1e-4, momentum=0.5, weight_decay=1e-3, scale_by_batch=False),
]


@pytest.mark.parametrize("case", RF_CASES, ids=["mom+wd", "plain", "s0zero", "noB"])
@pytest.mark.parametrize("name,oracle", [("rfrmsprop", rfrmsprop_oracle), ("rfadamw", rfadamw_oracle)])
def test_root_free_diagonal_methods_match_transcription(name, oracle, case):
    model, data = make_problem(torch.float64)
    ref = copy.deepcopy(model)
    ours = train(model, create_optimizer(name, model, batch_size=B, **case), data)
    theirs = list(
        oracle([p.detach().clone() for p in ref.parameters()], functional_grads(ref, data), STEPS, batch_size=B, **case)
    )
    assert_same_trajectory(ours, theirs, rtol=1e-12, atol=1e-14)


def test_rfadamw_bias_correction_switch_matches_transcription():
    case = dict(lr=1e-3, lr_cov=1e-2, damping=1e-4, momentum=0.9, weight_decay=1e-2)
    model, data = make_problem(torch.float64)
    ref = copy.deepcopy(model)
    ours = train(model, create_optimizer("rfadamw", model, batch_size=B, bias_correction=True, **case), data)
    theirs = list(
        rfadamw_oracle(
            [p.detach().clone() for p in ref.parameters()],
            functional_grads(ref, data),
            STEPS,
            batch_size=B,
            bias_correction=True,
            **case,
        )
    )
    assert_same_trajectory(ours, theirs, rtol=1e-12, atol=1e-14)


def test_root_free_methods_do_not_overwrite_grad():
    model, data = make_problem(torch.float32, steps=1)
    for name in ("rfrmsprop", "rfadamw", "ifshampoo"):
        m = copy.deepcopy(model)
        opt = create_optimizer(name, m, batch_size=B)
        x, y = data[0]
        F.cross_entropy(m(x), y).backward()
        grads = [p.grad.clone() for p in m.parameters()]
        opt.step()
        assert all(torch.equal(a, p.grad) for a, p in zip(grads, m.parameters())), name


# ---------------------------------------------------------------------------------------------
# IF-Shampoo vs the authors' sirfshampoo==0.0.1 (section 7.1)

sirfshampoo = pytest.importorskip("sirfshampoo")
IF_HP = dict(lr=1e-2, momentum=0.9, lr_cov=0.1, riemannian_momentum=0.5, damping=1e-3, weight_decay=1e-2)


def prototype_steps_transcribed(T, n):
    """Section 3.6 written out independently: next = t + min(max(floor(log4(t+1)), 1), T)."""
    out, t = [], 0
    while t < n:
        out.append(t)
        k = 0
        while 4 ** (k + 1) <= t + 1:
            k += 1
        t += min(max(k, 1), T)
    return out


def test_prototype_schedule_matches_section_3_6():
    from rootbench.optimizers.ifshampoo import prototype_update_steps

    assert prototype_update_steps(2, 24) == list(range(16)) + [17, 19, 21, 23]
    steps10 = prototype_update_steps(10, 300)
    assert steps10[:16] == list(range(16)) and steps10[16:20] == [17, 19, 21, 23]
    assert {b - a for a, b in zip(steps10, steps10[1:]) if 63 <= a < 255} == {3}
    for T in (1, 2, 3, 10):
        assert prototype_update_steps(T, 5000) == prototype_steps_transcribed(T, 5000)


def sirf_oracle(model, schedule, T, discount, steps):
    disc = lambda n: any(s in n for s in ("norm", "proj", "bias"))  # noqa: E731
    named = list(model.named_parameters())
    groups = [dict(params=[p for n, p in named if not (discount and disc(n))])]
    if discount:
        groups.append(dict(params=[p for n, p in named if disc(n)], beta2=0.25 * IF_HP["lr_cov"]))
    if schedule == "prototype_log4":
        ups = set(prototype_steps_transcribed(T, steps))
        T_arg = lambda step: step in ups  # noqa: E731
    else:
        T_arg = T
    return sirfshampoo.SIRFShampoo(
        model,
        params=groups,
        lr=IF_HP["lr"],
        beta2=IF_HP["lr_cov"],
        alpha1=IF_HP["momentum"],
        alpha2=IF_HP["riemannian_momentum"],
        lam=IF_HP["damping"],
        kappa=IF_HP["weight_decay"],
        batch_size=B,
        T=T_arg,
        preconditioner_dtypes=None,
    )


IF_CASES = [("prototype_log4", 2, False), ("prototype_log4", 2, True), ("every_T", 3, False), ("every_T", 1, True)]


@pytest.mark.parametrize("schedule,T,discount", IF_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ifshampoo_matches_sirfshampoo(dtype, schedule, T, discount):
    model, data = make_problem(dtype)
    ref = copy.deepcopy(model)
    opt = create_optimizer(
        "ifshampoo",
        model,
        batch_size=B,
        schedule=schedule,
        T=T,
        lr_cov_name_discount=discount,
        preconditioner_dtype="param",
        momentum_dtype="param",
        **IF_HP,
    )
    ours = train(model, opt, data)
    theirs = train(ref, sirf_oracle(ref, schedule, T, discount, STEPS), data)
    if dtype == torch.float64:
        assert_same_trajectory(ours, theirs, rtol=1e-10, atol=1e-12)
    else:  # different operation order (cached K K^T, fused adds): fp32 round-off only
        assert_same_trajectory(ours, theirs, rtol=2e-5, atol=2e-6)  # measured: <= 5.1e-7 abs


def test_ifshampoo_discount_changes_the_trajectory():
    """Guards the parity test above against a discount that silently does nothing."""
    model, data = make_problem(torch.float64, steps=5)
    h = {}
    for discount in (False, True):
        m = copy.deepcopy(model)
        h[discount] = train(
            m,
            create_optimizer(
                "ifshampoo", m, batch_size=B, lr_cov_name_discount=discount, preconditioner_dtype="param", **IF_HP
            ),
            data,
        )
    assert not torch.equal(h[False][-1][2], h[True][-1][2])  # conv.bias is discounted


# ---------------------------------------------------------------------------------------------
# Shampoo vs an explicit float64 inverse-root computation in numpy


def np_inverse_root(L, exponent, eps):
    lam, Q = np.linalg.eigh(L)
    lam = lam - min(lam.min(), 0.0) + eps
    return (Q * lam**exponent) @ Q.T


def shampoo_oracle(W0, grad_of, steps, lr, lr_cov, damping, momentum, weight_decay, T, max_dim=10**9):
    """Section 4.1 with explicit matrices: L^(-1/4) G R^(-1/4) (2-D) or R1 R2 R3 on the three axes (3-D).

    An axis longer than ``max_dim`` keeps only diag(G_(k) G_(k)^T) and is scaled elementwise.
    """
    W = W0.copy()
    N = W.ndim
    diagonal = [d > max_dim for d in W.shape]
    factors = [np.zeros(d) if diag else np.zeros((d, d)) for d, diag in zip(W.shape, diagonal)]
    roots = None
    filtered = np.zeros_like(W)
    out = []
    for t in range(1, steps + 1):
        G = grad_of(W)
        unfold = [np.moveaxis(G, k, 0).reshape(G.shape[k], -1) for k in range(N)]
        factors = [
            (1 - lr_cov) * L + lr_cov * ((U * U).sum(1) if diag else U @ U.T)
            for L, U, diag in zip(factors, unfold, diagonal)
        ]
        filtered = momentum * filtered + (1 - momentum) * G if momentum else G
        if t % T == 0:
            roots = [
                np.diag((L + damping) ** (-1.0 / (2 * N))) if diag else np_inverse_root(L, -1.0 / (2 * N), damping)
                for L, diag in zip(factors, diagonal)
            ]
        if t < T:
            d = filtered
        elif N == 2:
            d = roots[0] @ filtered @ roots[1]  # L^(-1/4) G R^(-1/4)
        else:
            d = np.einsum("ia,jb,kc,abc->ijk", *roots, filtered)
        W = W * (1 - lr * weight_decay) - lr * d
        out.append(W.copy())
    return out


def quadratic_problem(shape, seed=0):
    """loss_k(W) = mean_i 0.5 (<W, X_ki> - y_ki)^2; numpy gradients for the oracle, torch for ours."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((STEPS, B) + shape)
    y = rng.standard_normal((STEPS, B))
    W0 = rng.standard_normal(shape) * 0.1
    axes = tuple(range(1, len(shape) + 1))
    k = iter(range(STEPS))

    def grad_np(W):
        i = next(k)
        r = (X[i] * W).sum(axis=axes) - y[i]
        return np.tensordot(r, X[i], axes=(0, 0)) / B

    def loss_torch(W, i):
        return 0.5 * ((torch.tensor(X[i]) * W).sum(dim=axes) - torch.tensor(y[i])).pow(2).mean()

    return W0, grad_np, loss_torch


@pytest.mark.parametrize(
    "shape,max_dim", [((5, 3), 10**9), ((4, 3, 2), 10**9), ((5, 3), 4)], ids=["matrix", "3d", "matrix-diagonal-axis"]
)
@pytest.mark.parametrize("T,momentum", [(1, 0.0), (3, 0.5)])
def test_shampoo_matches_explicit_inverse_roots(shape, max_dim, T, momentum):
    hp = dict(lr=1e-2, lr_cov=0.1, damping=1e-6, momentum=momentum, weight_decay=1e-2)
    W0, grad_np, loss_torch = quadratic_problem(shape)
    expected = shampoo_oracle(W0, grad_np, STEPS, T=T, max_dim=max_dim, **hp)
    W = torch.tensor(W0, requires_grad=True)
    opt = create_optimizer(
        "shampoo", [W], T=T, preconditioner_dtype="float64", max_preconditioner_dim=min(max_dim, 8192), **hp
    )
    for i in range(STEPS):
        opt.zero_grad()
        loss_torch(W, i).backward()
        opt.step()
        np.testing.assert_allclose(W.detach().numpy(), expected[i], rtol=1e-10, atol=1e-12, err_msg=f"step {i}")


@pytest.mark.parametrize("grafting", ["adagrad", "adam"])
def test_shampoo_grafting_takes_the_diagonal_methods_norm(grafting):
    """Each step has the norm of the grafted diagonal step; before the first root it *is* that step."""
    W0, grad_np, loss_torch = quadratic_problem((5, 3))
    lr, eps, beta2 = 1e-2, 1e-3, 0.9
    W = torch.tensor(W0, requires_grad=True)
    opt = create_optimizer(
        "shampoo",
        [W],
        lr=lr,
        T=2,
        momentum=0.0,
        preconditioner_dtype="float64",
        grafting=grafting,
        grafting_epsilon=eps,
        grafting_beta2=beta2,
    )
    acc = np.zeros_like(W0)
    for i in range(6):
        before = W.detach().numpy().copy()
        opt.zero_grad()
        loss_torch(W, i).backward()
        g = W.grad.numpy().copy()
        opt.step()
        if grafting == "adagrad":
            acc = acc + g * g
            graft = g / (np.sqrt(acc) + eps)
        else:
            acc = beta2 * acc + (1 - beta2) * g * g
            graft = g / (np.sqrt(acc / (1 - beta2 ** (i + 1))) + eps)
        step = (before - W.detach().numpy()) / lr
        if i == 0:  # t = 1 < T: the grafted step alone
            np.testing.assert_allclose(step, graft, rtol=1e-12)
        else:
            np.testing.assert_allclose(np.linalg.norm(step), np.linalg.norm(graft), rtol=1e-12)
            assert not np.allclose(step, graft)  # ...but Shampoo's direction
