"""IF-Shampoo: inverse- and root-free Shampoo with Kronecker factors K_n, P = kron_n K_n K_n^T.

Lin, Dangel, Eschenhagen, Bae, Turner, Makhzani, "Can We Remove the Square-Root in Adaptive Gradient
Methods? A Second-Order Perspective", ICML 2024, https://arxiv.org/abs/2402.03496 (Fig. 3; update rule
as the authors ran it: methods.md section 3).

What differs from AdamW: instead of a diagonal sqrt(v) the preconditioner is a Kronecker product of
one dense factor per tensor axis, P = kron_n K_n K_n^T, which estimates the *inverse* of the
B-scaled empirical Fisher (+ damping) with exponent -1, not -1/2 or -1/4. The factors are updated
every few steps by a Riemannian-momentum step K <- K - beta2/max(1, |m_K|) K m_K that uses only
matmuls, traces and norms (so it runs in bf16), the direction P g gets heavy-ball momentum (no Adam
EMA, no bias correction), and weight decay is added after preconditioning. B (the examples the loss
is averaged over) is required, as for every root-free method.
"""
from __future__ import annotations

import math

import torch

from optimizers import register_optimizer
from optimizers._common import (StateDtypeOptimizer, check_batch_size, check_below_one, check_choice,
                                check_nonnegative, dtype_knob, resolve_dtype)

SCHEDULES = ("prototype_log4", "every_T")
DISCOUNT_PATTERNS = ("norm", "proj", "bias")  # section 3.9: the prototype's 0.25 x lr_cov name rule
DISCOUNT_FACTOR = 0.25


def prototype_next_update(step: int, T: int) -> int:
    """The prototype's warm-up schedule (section 3.6): after an update at ``step`` the next one is
    at step + min(max(floor(log4(step + 1)), 1), T); steps count from 0 and step 0 is an update."""
    floor_log4 = ((step + 1).bit_length() - 1) // 2  # largest k with 4**k <= step + 1, in integers
    return step + min(max(floor_log4, 1), T)


def prototype_update_steps(T: int, n_steps: int) -> list[int]:
    """All update steps below ``n_steps`` under the prototype schedule (e.g. for a callable T)."""
    steps, t = [], 0
    while t < n_steps:
        steps.append(t)
        t = prototype_next_update(t, T)
    return steps


def mode_product(X: torch.Tensor, M: torch.Tensor, n: int) -> torch.Tensor:
    """X x_n M: M multiplies axis n of X, (X x_n M)[..i..] = sum_j M[i, j] X[..j..]."""
    return torch.tensordot(M, X, dims=([1], [n])).movedim(0, n)


def _scalar_dtype(dtype: torch.dtype) -> torch.dtype:
    # traces, norms and scales of 16-bit factors are reduced in fp32: cheap scalars, no overflow
    return torch.promote_types(dtype, torch.float32)


class IFShampoo(StateDtypeOptimizer):
    """Inverse-free Shampoo (methods.md section 3.12); ``batch_size`` B is required.

    Hyperparameters: ``lr`` = beta1, ``momentum`` = alpha1 (heavy-ball on the preconditioned
    direction), ``lr_cov`` = beta2 (factor step), ``riemannian_momentum`` = alpha2, ``damping`` =
    lambda, ``weight_decay`` = gamma (added after preconditioning). Factors are refreshed at update
    steps: ``schedule="prototype_log4"`` is the paper's warm-up (every step up to 15, then every
    min(floor(log4(t+1)), T)), ``"every_T"`` is [R2]'s step % T == 0. ``preconditioner_dtype``
    ("float32", "bfloat16", "float64" or "param") holds the factors, their momenta, the cached
    K K^T and the preconditioned step; ``momentum_dtype`` holds the heavy-ball buffer.
    ``lr_cov_name_discount`` applies the prototype's 0.25 x lr_cov to parameters whose name
    contains norm/proj/bias; names come from named parameters (``model.named_parameters()``, or a
    model through ``create_optimizer``), and unnamed parameters are never discounted.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, lr_cov: float = 5e-2,
                 riemannian_momentum: float = 0.5, damping: float = 1e-4, weight_decay: float = 0.0,
                 batch_size: int | None = None, schedule: str = "prototype_log4", T: int = 2,
                 preconditioner_dtype: str = "float32", momentum_dtype: str = "param",
                 lr_cov_name_discount: bool = False):
        check_batch_size(batch_size, "ifshampoo")
        check_nonnegative(lr=lr, lr_cov=lr_cov, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum, riemannian_momentum=riemannian_momentum)
        check_choice("schedule", schedule, SCHEDULES)
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        dtype_knob("preconditioner_dtype", preconditioner_dtype)
        dtype_knob("momentum_dtype", momentum_dtype)
        super().__init__(params, dict(lr=lr, momentum=momentum, lr_cov=lr_cov,
                                      riemannian_momentum=riemannian_momentum, damping=damping,
                                      weight_decay=weight_decay, batch_size=batch_size, schedule=schedule,
                                      T=T, preconditioner_dtype=preconditioner_dtype,
                                      momentum_dtype=momentum_dtype,
                                      lr_cov_name_discount=bool(lr_cov_name_discount)))

    # -- schedule: a per-group counter in the param group, so it survives state_dict round trips
    @staticmethod
    def _is_update_step(group: dict) -> bool:
        t = group.setdefault("global_step", 0)
        if group["schedule"] == "every_T":
            return t % group["T"] == 0
        return t == group.setdefault("next_update", 0)

    @staticmethod
    def _advance(group: dict, updated: bool) -> None:
        if updated and group["schedule"] == "prototype_log4":
            group["next_update"] = prototype_next_update(group["global_step"], group["T"])
        group["global_step"] += 1

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = self._is_update_step(group)
            names = group.get("param_names") or [""] * len(group["params"])
            for name, p in zip(names, group["params"]):
                if p.grad is not None:
                    self._step_param(p, name, group, update)
            self._advance(group, update)
        return loss

    def _step_param(self, p: torch.Tensor, name: str, group: dict, update: bool) -> None:
        """The single-tensor reference step (section 3.12)."""
        state = self.state[p]
        pdt = resolve_dtype(group["preconditioner_dtype"], p)
        # squeeze axes of size 1; a 0-d (or all-ones) tensor becomes a 1-vector (section 3.1)
        shape = tuple(d for d in p.shape if d != 1) or (1,)
        G = p.grad.reshape(shape).to(pdt)  # may alias p.grad: only read, never written
        if "factor_0" not in state:
            self._init_state(state, shape, pdt, p.device)
        if update:
            lr_cov = group["lr_cov"]
            if group["lr_cov_name_discount"] and any(s in name for s in DISCOUNT_PATTERNS):
                lr_cov *= DISCOUNT_FACTOR
            self._update_factors(state, G, group, lr_cov)

        # V = (prod_n s_n^2) * G x_1 (K_1 K_1^T) ... x_N (K_N K_N^T): plain gradient, no sqrt(B) here
        V = G
        for n in range(G.ndim):
            V = mode_product(V, state[f"factor_outer_{n}"], n)
        d = (V * state["outer_scale"]).reshape(p.shape)
        if group["weight_decay"] != 0:
            d = d + group["weight_decay"] * p  # after preconditioning, then through the momentum
        if group["momentum"] != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, dtype=resolve_dtype(group["momentum_dtype"], p))
            d = state["momentum_buffer"].mul_(group["momentum"]).add_(d)  # heavy-ball, m0 = 0
        p.add_(d, alpha=-group["lr"])

    @staticmethod
    def _init_state(state: dict, shape: tuple, dtype: torch.dtype, device) -> None:
        # K = I: the method starts as SGD with momentum and the preconditioner grows from there;
        # the cached K K^T starts as I too (the prototype's all-ones cache is only harmless because
        # step 0 is always an update)
        for n, d in enumerate(shape):
            state[f"factor_{n}"] = torch.eye(d, dtype=dtype, device=device)
            state[f"factor_outer_{n}"] = torch.eye(d, dtype=dtype, device=device)
        state["outer_scale"] = torch.ones((), dtype=_scalar_dtype(dtype), device=device)

    @staticmethod
    def _update_factors(state: dict, G: torch.Tensor, group: dict, lr_cov: float) -> None:
        """One Riemannian-momentum step on every K_n (section 3.2), all Delta_n from the old factors."""
        N, dims = G.ndim, G.shape
        sdt = _scalar_dtype(G.dtype)
        lam, alpha2, B = group["damping"], group["riemannian_momentum"], group["batch_size"]
        Ks = [state[f"factor_{n}"] for n in range(N)]
        # section 3.4 trick 1: contract with K_n / sqrt(d_n) so Z and K^T K stay near unit scale;
        # the 1/d factors are undone by the d_n/2 and lam*prod(d)/2 weights below (algebraically exact)
        scaled = [K / math.sqrt(d) for K, d in zip(Ks, dims)]
        Z = G * math.sqrt(B)  # the curvature uses the B-scaled gradient
        for n, Ks_n in enumerate(scaled):
            Z = mode_product(Z, Ks_n.T, n)  # Z = sqrt(B) G x_1 K_1^T ... x_N K_N^T
        KtKs = [Ks_n.T @ Ks_n for Ks_n in scaled]
        mean_traces = [KtK.diagonal().to(sdt).mean() for KtK in KtKs]  # Tr(K^T K) / d^2
        numel = math.prod(dims)
        new_factors = []
        for n in range(N):
            others = [m for m in range(N) if m != n]
            trace_others = torch.ones((), dtype=sdt, device=G.device)
            for m in others:
                trace_others = trace_others * mean_traces[m]
            ZZt = torch.tensordot(Z, Z, dims=(others, others))  # Z_(n) Z_(n)^T (an outer product if N = 1)
            # Delta_n = 1/2 [lam prod_{m!=n} t_m K^T K + Z_(n) Z_(n)^T / D_-n - I], in scaled form
            delta = KtKs[n] * (trace_others * (lam / 2 * numel)) + ZZt * (dims[n] / 2)
            delta.diagonal().sub_(0.5)
            if alpha2 != 0:
                key = f"factor_momentum_{n}"
                if key not in state:
                    state[key] = torch.zeros_like(delta)
                m_K = state[key].mul_(alpha2).add_(delta, alpha=1 - alpha2)  # Riemannian momentum
            else:
                m_K = delta  # no momentum state is kept when alpha2 = 0
            # first-order truncation of K exp(-beta2 m_K), with the step clamped by max(1, |m_K|_F)
            step = lr_cov / torch.linalg.vector_norm(m_K, dtype=sdt).clamp(min=1.0)
            new_factors.append(Ks[n] - (Ks[n] @ m_K) * step)
        scale = torch.ones((), dtype=sdt, device=G.device)
        for n, K in enumerate(new_factors):
            state[f"factor_{n}"].copy_(K)
            # section 3.4 trick 2: form (K/s)(K/s)^T with s = max(1, sqrt(max|K|)) and carry s^2 outside;
            # cached here so that the steps between updates cost one product per axis
            s = K.abs().max().to(sdt).sqrt().clamp(min=1.0)
            K_s = K / s
            state[f"factor_outer_{n}"].copy_(K_s @ K_s.T)
            scale = scale * s * s
        state["outer_scale"].copy_(scale)


_SPACE = {"lr": ("log", 8e-5, 8e-4), "momentum": ("log", 0.1, 0.95), "lr_cov": ("log", 0.05, 0.8),
          "riemannian_momentum": ("log", 0.1, 0.9), "damping": ("log", 3e-5, 1e-3),
          "weight_decay": ("log", 1e-6, 6e-2)}  # section 6.1 IF-Shampoo envelopes across the ViTs
_META = dict(paper="https://arxiv.org/abs/2402.03496", family="shampoo", root_free=True, pair="shampoo",
             wd_kind="post_precond", needs_batch_size=True, test_lr=0.02, search_space=_SPACE)

register_optimizer("ifshampoo", IFShampoo,
                   description="IF-Shampoo: inverse- and root-free Kronecker preconditioner, matmuls only (Lin et al. 2024)",
                   **_META)
register_optimizer("ifshampoo_paper", IFShampoo, parent="ifshampoo",
                   defaults={"schedule": "prototype_log4", "T": 2, "preconditioner_dtype": "bfloat16",
                             "momentum_dtype": "bfloat16", "lr_cov_name_discount": True},
                   description="IF-Shampoo as run in the paper: log4 warm-up, T=2, bf16 factors and momentum, "
                               "0.25 lr_cov on norm/proj/bias",
                   **_META)
