"""Shampoo: the paper's root-based Kronecker baseline, with Distributed-Shampoo semantics as run there.

Gupta, Koren, Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML 2018,
https://arxiv.org/abs/1802.09568; configured as Meta's Distributed Shampoo was run in Lin et al.,
"Can We Remove the Square-Root in Adaptive Gradient Methods?", ICML 2024, https://arxiv.org/abs/2402.03496
(Lin et al. 2024). Implemented in-house from that description.

What differs from AdamW: one factor per tensor axis, L_k <- beta2 L_k + (1-beta2) G_(k) G_(k)^T, and the
direction is the filtered gradient (an EMA of g, betas[0] = momentum, no bias correction) multiplied on
every axis by L_k^(-1/(2N)), computed by an eigendecomposition every T steps (the inverse root the
root-free methods avoid). Before the first root (step < start) the step is the plain filtered
gradient, unless a diagonal method is grafted. Weight decay is decoupled, as in AdamW.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._common import (StateDtypeOptimizer, check_below_one, check_choice, check_nonnegative,
                                dtype_knob, resolve_dtype)

GRAFTINGS = ("none", "adagrad", "adam")
IMPLS = ("auto", "reference", "batched")  # auto = batched: same math, one eigh call per factor size
EIGH_DTYPES = (torch.float32, torch.float64)


def mode_product(X: torch.Tensor, M: torch.Tensor, n: int) -> torch.Tensor:
    """X x_n M: M multiplies axis n of X."""
    return torch.tensordot(M, X, dims=([1], [n])).movedim(0, n)


def axis_gram(G: torch.Tensor, k: int) -> torch.Tensor:
    """G_(k) G_(k)^T: the mode-k unfolding times its transpose."""
    others = [m for m in range(G.ndim) if m != k]
    return torch.tensordot(G, G, dims=(others, others))


def axis_sq_sum(G: torch.Tensor, k: int) -> torch.Tensor:
    """diag(G_(k) G_(k)^T): the diagonal statistic of an axis above max_preconditioner_dim."""
    others = [m for m in range(G.ndim) if m != k]
    return (G * G).sum(dim=others) if others else G * G


class Shampoo(StateDtypeOptimizer):
    """Shampoo with per-axis EMA factors and eigh inverse roots (Lin et al. 2024).

    ``lr``; ``momentum`` = betas[0] (filtered-gradient EMA); ``lr_cov`` = 1 - betas[1] (factor EMA;
    0 sums, AdaGrad-style); ``damping`` = epsilon, added to the eigenvalues after a PSD shift;
    decoupled ``weight_decay``; roots every ``T`` steps from step ``start_preconditioning_step``
    (-1: T), exponent -1/(2 * order). Axes longer than ``max_preconditioner_dim`` keep a diagonal
    factor. ``preconditioner_dtype`` ("float32", "float64", "bfloat16", "param") holds factors,
    roots and the filtered gradient; the default "param" follows the parameters, so that
    ``--precision bf16-pure`` puts all optimizer state in bf16 (DS as the paper ran it kept fp32
    factors: pass ``preconditioner_dtype="float32"``). eigh runs only in fp32/fp64: 16-bit factors are decomposed in
    fp64 with a warning, and fp32 failures are retried in fp64; both count in the parameter's state
    ``eigh_fp64_fallbacks``. A root that still fails (or is non-finite) keeps the previous root, as
    DS does, counted in ``root_failures``. ``grafting`` ("none", "adagrad", "adam") rescales each parameter's
    Shampoo direction to the norm of the grafted diagonal direction and runs alone before ``start``.
    ``impl``: "reference" decomposes factor by factor; "batched" (= "auto") stacks the factors of
    equal size and dtype into one ``torch.linalg.eigh`` call (tests/test_optimizer_fastpaths.py).
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9, lr_cov: float = 1e-2,
                 damping: float = 1e-6, weight_decay: float = 0.0, T: int = 2, start_preconditioning_step: int = -1,
                 max_preconditioner_dim: int = 8192, preconditioner_dtype: str = "param",
                 grafting: str = "none", grafting_epsilon: float = 1e-3, grafting_beta2: float = 0.999,
                 impl: str = "auto"):
        check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay, grafting_epsilon=grafting_epsilon)
        check_below_one(momentum=momentum, grafting_beta2=grafting_beta2)
        check_nonnegative(lr_cov=lr_cov)
        if lr_cov > 1:
            raise ValueError(f"lr_cov must lie in [0, 1], got {lr_cov!r}")
        for knob, value in (("T", T), ("max_preconditioner_dim", max_preconditioner_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{knob} must be a positive integer, got {value!r}")
        if not isinstance(start_preconditioning_step, int) or not (start_preconditioning_step == -1
                                                                   or start_preconditioning_step >= T):
            raise ValueError(f"start_preconditioning_step must be -1 (= T) or >= T={T}, "
                             f"got {start_preconditioning_step!r}")
        dtype_knob("preconditioner_dtype", preconditioner_dtype)
        check_choice("grafting", grafting, GRAFTINGS)
        check_choice("impl", impl, IMPLS)
        super().__init__(params, dict(lr=lr, momentum=momentum, lr_cov=lr_cov, damping=damping,
                                      weight_decay=weight_decay, T=T,
                                      start_preconditioning_step=start_preconditioning_step,
                                      max_preconditioner_dim=max_preconditioner_dim,
                                      preconditioner_dtype=preconditioner_dtype, grafting=grafting,
                                      grafting_epsilon=grafting_epsilon, grafting_beta2=grafting_beta2))
        self.impl = impl
        self.impl_used = "reference" if impl == "reference" else "batched"
        self._warned_root_failure = False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if self.impl == "reference":
                for p in params:
                    self._step_param(p, group)
            else:
                self._batched_step(params, group)
        return loss

    def _step_param(self, p: torch.Tensor, group: dict) -> None:
        """The single-tensor reference step (section 4.1); steps count from 1 as in DS."""
        s = self._statistics(p, group)
        if s.needs_roots:
            for k in range(s.N):
                self._set_root(s, k, self._inverse_root(s.state, s.state[f"factor_{k}"], -1.0 / (2 * s.N),
                                                        group["damping"]))
        self._descend(p, group, s)

    def _set_root(self, s: SimpleNamespace, k: int, R: torch.Tensor | None) -> None:
        """Store a new inverse root, or keep the previous one when the decomposition failed or gave
        non-finite values, as Distributed Shampoo does ("using previous inverted factor matrix and
        continuing"); before any root exists that is the identity (the plain step of t < T).
        Failures are counted in ``state["root_failures"]``: a numerical event, not a crash."""
        if R is not None and bool(torch.isfinite(R).all()):
            s.state[f"root_{k}"] = R.to(s.pdt)
            return
        s.state["root_failures"] = s.state.get("root_failures", 0) + 1
        if not self._warned_root_failure:
            self._warned_root_failure = True
            warnings.warn("shampoo: an inverse root failed (eigh did not converge or gave non-finite values); "
                          "keeping the previous root (counted in state['root_failures'])", RuntimeWarning,
                          stacklevel=3)
        if f"root_{k}" not in s.state:
            L = s.state[f"factor_{k}"]
            eye = torch.ones(L.shape[0]) if L.ndim == 1 else torch.eye(L.shape[0])
            s.state[f"root_{k}"] = eye.to(device=L.device, dtype=s.pdt)

    def _statistics(self, p: torch.Tensor, group: dict) -> SimpleNamespace:
        """Update the factors and the filtered gradient; say whether this step computes roots."""
        state = self.state[p]
        pdt = resolve_dtype(group["preconditioner_dtype"], p)
        cdt = torch.promote_types(p.dtype, torch.float32)  # the roots are applied in >= fp32 (DS patch 63666e2)
        shape = tuple(p.shape) or (1,)  # the unsqueezed shape: order N = p.dim(), size-1 axes included
        G = p.grad.reshape(shape).to(pdt)
        N = G.ndim
        if "step" not in state:
            state["step"] = 0
            state["eigh_fp64_fallbacks"] = 0
            for k, d in enumerate(shape):
                diagonal = d > group["max_preconditioner_dim"]
                state[f"factor_{k}"] = torch.zeros((d,) if diagonal else (d, d), dtype=pdt, device=p.device)
        state["step"] += 1
        t = state["step"]
        beta2 = 1.0 - group["lr_cov"]
        for k in range(N):
            L = state[f"factor_{k}"]
            stat = axis_sq_sum(G, k) if L.ndim == 1 else axis_gram(G, k)
            if beta2 == 1.0:
                L.add_(stat)  # lr_cov = 0: AdaGrad-style sums
            else:
                L.mul_(beta2).add_(stat, alpha=1.0 - beta2)

        g_tilde = G  # filtered gradient: an EMA of g, no bias correction (not a heavy-ball buffer)
        if group["momentum"] != 0:
            if "filtered_grad" not in state:
                state["filtered_grad"] = torch.zeros_like(G)
            g_tilde = state["filtered_grad"].mul_(group["momentum"]).add_(G, alpha=1.0 - group["momentum"])
        g_tilde = g_tilde.to(cdt)

        start = group["T"] if group["start_preconditioning_step"] == -1 else group["start_preconditioning_step"]
        needs_roots = t >= start and (t % group["T"] == 0 or "root_0" not in state)
        return SimpleNamespace(state=state, G=G, g_tilde=g_tilde, t=t, N=N, pdt=pdt, cdt=cdt, start=start,
                               needs_roots=needs_roots)

    def _descend(self, p: torch.Tensor, group: dict, s: SimpleNamespace) -> None:
        """Precondition the filtered gradient with the roots (or graft), then step."""
        state, g_tilde, t, N, cdt = s.state, s.g_tilde, s.t, s.N, s.cdt
        graft = self._graft_direction(state, s.G.to(cdt), g_tilde, group, t) if group["grafting"] != "none" else None
        if t < s.start:
            d = g_tilde if graft is None else graft  # no roots yet: plain (or grafted) steps
        else:
            d = g_tilde
            for k in range(N):
                R = state[f"root_{k}"].to(cdt)
                d = mode_product(d, R, k) if R.ndim == 2 else d * R.reshape([-1 if m == k else 1 for m in range(N)])
            if graft is not None:  # per-parameter grafting: Shampoo's direction, the graft's norm
                d_norm = torch.linalg.vector_norm(d)
                d = d * torch.where(d_norm > 0, torch.linalg.vector_norm(graft) / d_norm, 0.0)
        if group["weight_decay"] != 0:
            p.mul_(1.0 - group["lr"] * group["weight_decay"])  # decoupled
        p.add_(d.reshape(p.shape), alpha=-group["lr"])

    def _batched_step(self, params: list, group: dict) -> None:
        """The reference step with every inverse root of this step from one batched ``eigh`` per
        factor size and dtype (one LAPACK call per matrix still, but no per-matrix Python on CPU
        and one batched solver launch on CUDA). Diagonal and 16-bit factors, and any batch whose
        decomposition fails, take the reference's per-factor path (with its fp64 retry)."""
        pending = [(p, self._statistics(p, group)) for p in params]
        batches: dict = {}
        for _, s in pending:
            if not s.needs_roots:
                continue
            exponent = -1.0 / (2 * s.N)
            for k in range(s.N):
                L = s.state[f"factor_{k}"]
                if L.ndim == 2 and L.dtype in EIGH_DTYPES:
                    batches.setdefault((L.shape[0], L.dtype, L.device, exponent), []).append((s, k))
                else:
                    self._set_root(s, k, self._inverse_root(s.state, L, exponent, group["damping"]))
        for (_, _, _, exponent), items in batches.items():
            factors = torch.stack([s.state[f"factor_{k}"] for s, k in items])
            try:
                lam, Q = torch.linalg.eigh(factors)
            except torch.linalg.LinAlgError:
                for s, k in items:
                    self._set_root(s, k, self._inverse_root(s.state, s.state[f"factor_{k}"], exponent,
                                                            group["damping"]))
                continue
            # the reference's PSD shift and epsilon per matrix, then Q diag(lam^e) Q^T
            lam = lam - lam.min(dim=-1, keepdim=True).values.clamp(max=0) + group["damping"]
            roots = torch.matmul(Q * (lam ** exponent).unsqueeze(-2), Q.transpose(-1, -2))
            for (s, k), R in zip(items, roots.unbind(0)):
                self._set_root(s, k, R)
        for p, s in pending:
            self._descend(p, group, s)

    @staticmethod
    def _inverse_root(state: dict, L: torch.Tensor, exponent: float, eps: float) -> torch.Tensor | None:
        """(L - min(lambda_min, 0) I + eps I)^exponent by eigh; diagonal factors elementwise.
        None when eigh fails even in float64 (the caller keeps the previous root)."""
        if L.ndim == 1:
            return (L - L.min().clamp(max=0) + eps) ** exponent
        A = L
        if A.dtype not in EIGH_DTYPES:
            warnings.warn(f"shampoo: eigh does not run in {A.dtype}; decomposing the factors in float64 "
                          "(counted in state['eigh_fp64_fallbacks'])", RuntimeWarning, stacklevel=3)
            A = A.double()
            state["eigh_fp64_fallbacks"] += 1
        try:
            lam, Q = torch.linalg.eigh(A)
        except torch.linalg.LinAlgError:  # DS retries a failed decomposition in double precision
            if A.dtype == torch.float64:
                return None
            try:
                lam, Q = torch.linalg.eigh(A.double())
            except torch.linalg.LinAlgError:
                return None
            state["eigh_fp64_fallbacks"] += 1
        lam = lam - lam.min().clamp(max=0) + eps  # PSD shift, then epsilon on the eigenvalues
        return (Q * lam ** exponent) @ Q.T

    @staticmethod
    def _graft_direction(state: dict, g: torch.Tensor, g_tilde: torch.Tensor, group: dict, t: int) -> torch.Tensor:
        """Diagonal AdaGrad (sums) or Adam-style (EMA, bias-corrected) direction on the filtered gradient."""
        if "graft_sq" not in state:
            state["graft_sq"] = torch.zeros_like(g)
        acc = state["graft_sq"]
        if group["grafting"] == "adagrad":
            acc.addcmul_(g, g)
            denom = acc.sqrt()
        else:
            b = group["grafting_beta2"]
            acc.mul_(b).addcmul_(g, g, value=1.0 - b)
            denom = (acc / (1.0 - b ** t)).sqrt()
        return g_tilde / (denom + group["grafting_epsilon"])


_SPACE = {"lr": ("log", 5e-4, 1e-1), "momentum": ("log", 0.1, 0.99), "lr_cov": ("log", 5e-4, 1e-1),
          "damping": ("log", 1e-10, 1e-5), "weight_decay": ("log", 5e-5, 1e-1)}  # section 6.1 Shampoo envelopes

register_optimizer(
    "shampoo", Shampoo,
    description="Shampoo: per-axis Kronecker factors with eigh inverse roots (DS semantics as run in the paper)",
    paper="https://arxiv.org/abs/1802.09568", family="shampoo", root_free=False, pair="ifshampoo",
    wd_kind="decoupled", test_lr=0.01, search_space=_SPACE, preconditioner="kronecker", period_hparam="T",
)
