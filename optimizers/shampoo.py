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

import functools
import math
import warnings
from types import SimpleNamespace

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._common import (
    StateDtypeOptimizer,
    check_below_one,
    check_choice,
    check_lr,
    check_nonnegative,
    dtype_knob,
    lr_of,
    refuse_foreign_names,
    resolve_dtype,
)

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
    ``impl``: "reference" steps parameter by parameter and decomposes factor by factor; "batched" (= "auto")
    stacks parameters of equal shape, dtypes and step count (statistics and directions one ``bmm`` per axis)
    and the factors of equal size and dtype into one ``torch.linalg.eigh`` call; state and ``state_dict`` are
    the reference's (tests/test_optimizer_fastpaths.py, tests/test_kronecker_fastpaths.py).
    ``matmul_flops()`` states the matrix-multiply FLOPs of a step.
    """

    # other optimizers' names for these knobs: refused with a pointer to ours (``_common.refuse_foreign_names``)
    FOREIGN_NAMES = {
        "betas": "momentum = beta1 and lr_cov = 1 - beta2",
        "eps": "damping",
        "epsilon": "damping",
        "beta2": "lr_cov = 1 - beta2",
    }

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        momentum: float = 0.9,
        lr_cov: float = 1e-2,
        damping: float = 1e-6,
        weight_decay: float = 0.0,
        T: int = 2,
        start_preconditioning_step: int = -1,
        max_preconditioner_dim: int = 8192,
        preconditioner_dtype: str = "param",
        grafting: str = "none",
        grafting_epsilon: float = 1e-3,
        grafting_beta2: float = 0.999,
        impl: str = "auto",
        **foreign,
    ):
        refuse_foreign_names("shampoo", foreign, self.FOREIGN_NAMES)
        check_lr(lr)
        check_nonnegative(damping=damping, weight_decay=weight_decay, grafting_epsilon=grafting_epsilon)
        check_below_one(momentum=momentum, grafting_beta2=grafting_beta2)
        check_nonnegative(lr_cov=lr_cov)
        if lr_cov > 1:
            raise ValueError(f"lr_cov must lie in [0, 1], got {lr_cov!r}")
        for knob, value in (("T", T), ("max_preconditioner_dim", max_preconditioner_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{knob} must be a positive integer, got {value!r}")
        if not isinstance(start_preconditioning_step, int) or not (
            start_preconditioning_step == -1 or start_preconditioning_step >= T
        ):
            raise ValueError(
                f"start_preconditioning_step must be -1 (= T) or >= T={T}, got {start_preconditioning_step!r}"
            )
        dtype_knob("preconditioner_dtype", preconditioner_dtype)
        check_choice("grafting", grafting, GRAFTINGS)
        check_choice("impl", impl, IMPLS)
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                lr_cov=lr_cov,
                damping=damping,
                weight_decay=weight_decay,
                T=T,
                start_preconditioning_step=start_preconditioning_step,
                max_preconditioner_dim=max_preconditioner_dim,
                preconditioner_dtype=preconditioner_dtype,
                grafting=grafting,
                grafting_epsilon=grafting_epsilon,
                grafting_beta2=grafting_beta2,
            ),
        )
        self.impl = impl
        self.impl_used = "reference" if impl == "reference" else "batched"
        self._warned_root_failure = False
        self._buckets: dict = {}  # group index -> {(key, member ids): _Bucket}; see _batched_step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if self.impl == "reference":
                for p in params:
                    self._step_param(p, group)
            else:
                self._batched_step(index, params, group)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        self._buckets = {}  # the loaded state is new tensors: buckets are rebuilt from it
        super().load_state_dict(state_dict)

    def matmul_flops(self) -> dict:
        """FLOPs of the matrix multiplies of one root step and of one regular step once roots exist, over all
        parameters (the analytic count ``bench-optim`` compares with what runs; eigh is not a matrix multiply).
        A tensor of sizes d_k, D = prod d_k, per matrix axis (d_k <= max_preconditioner_dim): the statistic
        G_(k) G_(k)^T and the mode product with the root take 2 D d_k each; a root Q diag Q^T 2 d_k^3."""
        update = regular = 0
        for group in self.param_groups:
            for p in group["params"]:
                dims = list(p.shape) or [1]
                D = math.prod(dims)
                mats = [d for d in dims if d <= group["max_preconditioner_dim"]]
                regular += 4 * D * sum(mats)
                update += 4 * D * sum(mats) + 2 * sum(d**3 for d in mats)
        return {"update": update, "regular": regular}

    def _step_param(self, p: torch.Tensor, group: dict) -> None:
        """The single-tensor reference step (section 4.1); steps count from 1 as in DS."""
        s = self._statistics(p, group)
        if s.needs_roots:
            for k in range(s.N):
                self._set_root(
                    s, k, self._inverse_root(s.state, s.state[f"factor_{k}"], -1.0 / (2 * s.N), group["damping"])
                )
        self._descend(p, group, s)

    def _set_root(self, s: SimpleNamespace, k: int, R: torch.Tensor | None) -> None:
        """Store a new inverse root, or keep the previous one when the decomposition failed or gave
        non-finite values, as Distributed Shampoo does ("using previous inverted factor matrix and
        continuing"); before any root exists that is the identity (the plain step of t < T).
        Failures are counted in ``state["root_failures"]``: a numerical event, not a crash."""
        if R is not None and bool(torch.isfinite(R).all()):
            s.state[f"root_{k}"] = R.to(s.pdt)
            return
        self._root_failed(s.state)
        if f"root_{k}" not in s.state:
            L = s.state[f"factor_{k}"]
            eye = torch.ones(L.shape[0]) if L.ndim == 1 else torch.eye(L.shape[0])
            s.state[f"root_{k}"] = eye.to(device=L.device, dtype=s.pdt)

    def _root_failed(self, state: dict) -> None:
        state["root_failures"] = state.get("root_failures", 0) + 1
        if not self._warned_root_failure:
            self._warned_root_failure = True
            warnings.warn(
                "shampoo: an inverse root failed (eigh did not converge or gave non-finite values); "
                "keeping the previous root (counted in state['root_failures'])",
                RuntimeWarning,
                stacklevel=4,
            )

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
        return SimpleNamespace(
            state=state, G=G, g_tilde=g_tilde, t=t, N=N, pdt=pdt, cdt=cdt, start=start, needs_roots=needs_roots
        )

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
            p.mul_(1.0 - lr_of(group) * group["weight_decay"])  # decoupled
        p.add_(d.reshape(p.shape), alpha=-lr_of(group))

    def _batched_step(self, index: int, params: list, group: dict) -> None:
        """The reference step with parameters of equal shape, dtypes and step count stacked (``_Bucket``: one
        ``bmm`` per axis and bucket for the statistics and for the direction, state as views of stacked tensors)
        and every inverse root of this step from one batched ``eigh`` per factor size and dtype (one LAPACK call
        per matrix still on CPU, one solver launch on CUDA). Grafting, diagonal (over-long) axes and sparse
        gradients take the per-parameter reference step; 16-bit factors and a batch whose decomposition fails
        take the reference's per-factor roots (with its fp64 retry)."""
        groups: dict = {}
        rest = []
        for p in params:
            shape = tuple(p.shape) or (1,)
            if group["grafting"] != "none" or p.grad.is_sparse or max(shape) > group["max_preconditioner_dim"]:
                rest.append(p)
                continue
            st = self.state[p]
            key = (
                shape,
                p.dtype,
                resolve_dtype(group["preconditioner_dtype"], p),
                p.device,
                group["momentum"] != 0,
                st.get("step", 0),
                "root_0" in st,
            )  # members share the step count, hence the root schedule
            groups.setdefault(key, []).append(p)
        old = self._buckets.get(index, {})
        buckets = {}
        for key, members in groups.items():
            cache_key = key[:5] + tuple(id(p) for p in members)  # the step count advances: not part of the key
            bucket = old.get(cache_key)
            if bucket is None or not bucket.valid(self.state, members):
                bucket = _Bucket(self.state, key, members, group)
            buckets[cache_key] = bucket
        self._buckets[index] = buckets

        eps = group["damping"]
        batches: dict = {}  # (size, dtype, device) -> parts (L (n, d, d), exponent, states, write(R, ok))

        def add(L, exponent, states, write):
            if L.dtype in EIGH_DTYPES:
                batches.setdefault((L.shape[-1], L.dtype, L.device), []).append((L, exponent, states, write))
            else:
                self._roots_one_by_one(L, exponent, states, write, eps)

        for bucket in buckets.values():
            if bucket.statistics(group):
                for k in range(bucket.N):
                    add(
                        bucket.stacked[f"factor_{k}"],
                        bucket.exponent,
                        bucket.states,
                        functools.partial(bucket.write_roots, self, k),
                    )
        pending = [(p, self._statistics(p, group)) for p in rest]
        for _, s in pending:
            if not s.needs_roots:
                continue
            for k in range(s.N):
                L = s.state[f"factor_{k}"]
                if L.ndim == 1:  # a diagonal factor: elementwise
                    self._set_root(s, k, self._inverse_root(s.state, L, -1.0 / (2 * s.N), eps))
                else:
                    add(
                        L.unsqueeze(0),
                        -1.0 / (2 * s.N),
                        [s.state],
                        lambda R, ok, s=s, k=k: self._set_root(s, k, R[0] if ok[0] else None),
                    )
        for parts in batches.values():
            factors = torch.cat([L for L, *_ in parts]) if len(parts) > 1 else parts[0][0]
            try:
                lam, Q = torch.linalg.eigh(factors)
            except torch.linalg.LinAlgError:
                for part in parts:
                    self._roots_one_by_one(*part, eps)
                continue
            # the reference's PSD shift and epsilon per matrix, then Q diag(lam^e) Q^T
            lam = lam - lam.min(dim=-1, keepdim=True).values.clamp(max=0) + eps
            bounds = [0]
            for L, *_ in parts:
                bounds.append(bounds[-1] + L.shape[0])
            powers = [lam[i:j] ** e for (_, e, *_), i, j in zip(parts, bounds, bounds[1:], strict=False)]
            lam_e = torch.cat(powers) if len(powers) > 1 else powers[0]
            roots = torch.matmul(Q * lam_e.unsqueeze(-2), Q.transpose(-1, -2))
            ok = torch.isfinite(roots).flatten(1).all(1).tolist()  # one host sync per batch, not per root
            for (_, _, _, write), i, j in zip(parts, bounds, bounds[1:], strict=False):
                write(roots[i:j], ok[i:j])
        for bucket in buckets.values():
            bucket.descend(group)
        for p, s in pending:
            self._descend(p, group, s)

    def _roots_one_by_one(self, L: torch.Tensor, exponent: float, states: list, write, eps: float) -> None:
        """The reference's per-factor roots (fp64 for 16-bit factors, fp64 retry of a failed eigh) of a stack."""
        Rs = [self._inverse_root(st, L[i], exponent, eps) for i, st in enumerate(states)]
        ok = [R is not None and bool(torch.isfinite(R).all()) for R in Rs]
        out = torch.zeros(L.shape, dtype=next((R.dtype for R in Rs if R is not None), L.dtype), device=L.device)
        for i, R in enumerate(Rs):
            if R is not None:
                out[i] = R
        write(out, ok)

    @staticmethod
    def _inverse_root(state: dict, L: torch.Tensor, exponent: float, eps: float) -> torch.Tensor | None:
        """(L - min(lambda_min, 0) I + eps I)^exponent by eigh; diagonal factors elementwise.
        None when eigh fails even in float64 (the caller keeps the previous root)."""
        if L.ndim == 1:
            return (L - L.min().clamp(max=0) + eps) ** exponent
        A = L
        if A.dtype not in EIGH_DTYPES:
            warnings.warn(
                f"shampoo: eigh does not run in {A.dtype}; decomposing the factors in float64 "
                "(counted in state['eigh_fp64_fallbacks'])",
                RuntimeWarning,
                stacklevel=3,
            )
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
        return (Q * lam**exponent) @ Q.T

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
            denom = (acc / (1.0 - b**t)).sqrt()
        return g_tilde / (denom + group["grafting_epsilon"])


STACKED = ("factor_", "root_", "filtered_grad")  # the per-parameter state a bucket stacks


def _all_axes(X: torch.Tensor, Ms: list) -> torch.Tensor:
    """X x_1 M_1 ... x_N M_N per batch element (axis 0 of X and of every M is the batch), in X's layout: matrices
    as M_1 X M_2^T on views; other orders by N rotations, each one ``bmm`` of M with a transposed view of X that
    multiplies the last axis and moves it first (no copies). As IF-Shampoo's batched path does, kept apart so
    that each optimizer's run identity covers its own code only."""
    b = X.shape[0]
    if X.dim() == 3:
        return torch.bmm(torch.bmm(Ms[0], X), Ms[1].transpose(1, 2))
    for M in reversed(Ms):
        dims = X.shape[1:]
        X = torch.bmm(M, X.reshape(b, -1, dims[-1]).transpose(1, 2)).view((b, dims[-1]) + dims[:-1])
    return X


def _unfolding(G: torch.Tensor, k: int) -> torch.Tensor:
    """G_(k) per batch element (axis 0 is the batch): a view for the first and last axes, a copy otherwise."""
    b, dims = G.shape[0], G.shape[1:]
    if k == len(dims) - 1:
        return G.reshape(b, -1, dims[-1]).transpose(1, 2)
    return G.movedim(k + 1, 1).reshape(b, dims[k], -1)


class _Bucket:
    """The stacked state of same-shape parameters with equal step counts, and their batched Shampoo step.

    Factors L_k, roots R_k and the filtered gradient are stacked tensors; each parameter's ``self.state``
    entries are views into them, so the state is stored once and ``state_dict`` is unchanged. Loading a
    state dict, or a root stored by the per-parameter path, replaces those views; the bucket is then rebuilt
    from the per-parameter state."""

    def __init__(self, state: dict, key: tuple, members: list, group: dict):
        shape, param_dtype, pdt, device, has_momentum = key[:5]
        self.shape, self.N, self.pdt, self.params = shape, len(shape), pdt, members
        self.cdt = torch.promote_types(param_dtype, torch.float32)  # roots applied in >= fp32, as the reference
        self.exponent = -1.0 / (2 * self.N)
        self.states = [state[p] for p in members]
        for st in self.states:
            if "step" not in st:  # as the reference's first step
                st["step"] = 0
                st["eigh_fp64_fallbacks"] = 0
                for k, d in enumerate(shape):
                    st[f"factor_{k}"] = torch.zeros((d, d), dtype=pdt, device=device)
            if has_momentum and "filtered_grad" not in st:
                st["filtered_grad"] = torch.zeros(shape, dtype=pdt, device=device)
        keys = [k for k in self.states[0] if k.startswith(STACKED) and all(k in st for st in self.states)]
        self.stacked = {k: torch.stack([st[k] for st in self.states]) for k in keys}
        self.views = [{} for _ in members]
        for k in keys:
            self._point(k)

    def _point(self, key: str) -> None:
        for i, st in enumerate(self.states):
            st[key] = self.views[i][key] = self.stacked[key][i]

    def valid(self, state: dict, params: list) -> bool:
        """Same parameters, and every stackable per-parameter entry is still this bucket's view."""
        return len(params) == len(self.params) and all(
            p is q and state[p] is st and all(v is views.get(k) for k, v in st.items() if k.startswith(STACKED))
            for p, q, st, views in zip(params, self.params, self.states, self.views, strict=False)
        )

    def statistics(self, group: dict) -> bool:
        """L_k <- beta2 L_k + (1 - beta2) G_(k) G_(k)^T and the filtered gradient; whether roots are due."""
        b, shape = len(self.params), self.shape
        grads = [p.grad.reshape(shape) for p in self.params]
        if b == 1:
            G = grads[0].to(self.pdt).unsqueeze(0)
        else:
            G = torch.empty((b,) + shape, dtype=self.pdt, device=grads[0].device)
            torch._foreach_copy_(list(G.unbind(0)), grads)
        for st in self.states:
            st["step"] += 1
        self.t = t = self.states[0]["step"]
        beta2 = 1.0 - group["lr_cov"]
        for k in range(self.N):
            U, L = _unfolding(G, k), self.stacked[f"factor_{k}"]
            if L.dtype in EIGH_DTYPES:  # one fused update; lr_cov = 0: AdaGrad-style sums (beta = alpha = 1)
                L.baddbmm_(U, U.transpose(1, 2), beta=beta2, alpha=1.0 if beta2 == 1.0 else 1.0 - beta2)
            else:
                # 16-bit factors: the statistic as an fp32 GEMM rounded once (what a 16-bit GEMM accumulating in
                # fp32 gives, ~20x faster than PyTorch's bf16 kernel on CPUs without AVX-512), then rounded as
                # the reference rounds (twice): eps-sized eigenvalues of near-null directions amplify differences
                Uf = U.float()
                stat = torch.bmm(Uf, Uf.transpose(1, 2)).to(L.dtype)
                L.add_(stat) if beta2 == 1.0 else L.mul_(beta2).add_(stat, alpha=1.0 - beta2)
        g_tilde = G
        if group["momentum"] != 0:  # filtered gradient: an EMA of g, no bias correction
            g_tilde = self.stacked["filtered_grad"].mul_(group["momentum"]).add_(G, alpha=1.0 - group["momentum"])
        self.g_tilde = g_tilde.to(self.cdt)
        T = group["T"]
        self.start = T if group["start_preconditioning_step"] == -1 else group["start_preconditioning_step"]
        return t >= self.start and (t % T == 0 or "root_0" not in self.states[0])

    def write_roots(self, opt: Shampoo, k: int, R: torch.Tensor, ok: list) -> None:
        """Store new roots of axis k; a failed one keeps the previous root (the identity before the first)."""
        key = f"root_{k}"
        if key not in self.stacked:
            d = self.shape[k]
            eye = torch.eye(d, dtype=self.pdt, device=R.device)
            self.stacked[key] = eye.expand(len(self.params), d, d).clone()
            self._point(key)
        dest = self.stacked[key]
        if all(ok):
            dest.copy_(R)
            return
        for i, good in enumerate(ok):
            if good:
                dest[i].copy_(R[i])
            else:
                opt._root_failed(self.states[i])

    def descend(self, group: dict) -> None:
        """Precondition the filtered gradient with the roots on every axis, then step (decoupled decay)."""
        d, self.g_tilde = self.g_tilde, None  # a temporary: not held between steps (nor counted as state)
        if self.t >= self.start:
            d = _all_axes(d, [self.stacked[f"root_{k}"].to(self.cdt) for k in range(self.N)])
        lr, wd = lr_of(group), group["weight_decay"]
        if wd != 0:
            torch._foreach_mul_(self.params, 1.0 - lr * wd)
        torch._foreach_add_(
            self.params, [v.view(p.shape) for v, p in zip(d.unbind(0), self.params, strict=True)], alpha=-lr
        )


# lr: four decades around the paper's region (2e-3 to 4.4e-2 on the ViTs); lr_cov: the factors' EMA rate, its
# time constant from 10 steps to half the run; momentum 1 - m log-uniform
_SPACE = {
    "lr": ("log", 1e-4, 1.0),
    "momentum": ("log1m", 1e-2, 1.0),
    "lr_cov": ("horizon", 10, 0.5),
    "damping": ("log", 1e-10, 1e-5),
    "weight_decay": ("log", 5e-5, 1e-1),
}
_PUBLISHED = {
    "vit": {"lr": 3.17e-2, "lr_cov": 3.21e-2, "damping": 5.46e-9, "momentum": 0.592, "weight_decay": 1.40e-2}
}  # the paper's best run on GC-ViT / ImageWoof

register_optimizer(
    "shampoo",
    Shampoo,
    description="Shampoo: per-axis Kronecker factors with eigh inverse roots (DS semantics as run in the paper)",
    paper="https://arxiv.org/abs/1802.09568",
    family="shampoo",
    root_free=False,
    pair="ifshampoo",
    wd_kind="decoupled",
    test_lr=0.01,
    search_space=_SPACE,
    preconditioner="kronecker",
    period_hparam="T",
    published=_PUBLISHED,
    ema_rates=("lr_cov",),
)
