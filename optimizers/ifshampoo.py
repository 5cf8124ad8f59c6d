"""IF-Shampoo: inverse- and root-free Shampoo with Kronecker factors K_n, P = kron_n K_n K_n^T.

Lin, Dangel, Eschenhagen, Bae, Turner, Makhzani, "Can We Remove the Square-Root in Adaptive Gradient
Methods? A Second-Order Perspective", ICML 2024, https://arxiv.org/abs/2402.03496 (Fig. 3; update rule
as the authors ran it: Lin et al. 2024).

What differs from AdamW: instead of a diagonal sqrt(v) the preconditioner is a Kronecker product of
one dense factor per tensor axis, P = kron_n K_n K_n^T, which estimates the *inverse* of the
B-scaled empirical Fisher (+ damping) with exponent -1, not -1/2 or -1/4. The factors are updated
every few steps by a Riemannian-momentum step K <- K - beta2/max(1, |m_K|) K m_K that uses only
matmuls, traces and norms (so it runs in bf16), the direction P g gets heavy-ball momentum (no Adam
EMA, no bias correction), and weight decay is added after preconditioning. B (the examples the loss
is averaged over) is required, as for every root-free method.
"""

from __future__ import annotations

import functools
import math

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._common import (
    StateDtypeOptimizer,
    check_batch_size,
    check_below_one,
    check_choice,
    check_lr,
    check_nonnegative,
    dtype_knob,
    lr_of,
    refuse_foreign_names,
    resolve_dtype,
)

SCHEDULES = ("prototype_log4", "every_T")
IMPLS = ("auto", "reference", "batched")
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
    """Inverse-free Shampoo (Lin et al. 2024); ``batch_size`` B is required.

    Hyperparameters: ``lr`` = beta1, ``momentum`` = alpha1 (heavy-ball on the preconditioned
    direction), ``lr_cov`` = beta2 (factor step), ``riemannian_momentum`` = alpha2, ``damping`` =
    lambda, ``weight_decay`` = gamma (added after preconditioning). Factors are refreshed at update
    steps: ``schedule="prototype_log4"`` is the paper's warm-up (every step up to 15, then every
    min(floor(log4(t+1)), T)), ``"every_T"`` is [R2]'s step % T == 0. ``preconditioner_dtype``
    ("float32", "bfloat16", "float64" or "param") holds the factors, their momenta, the cached
    K K^T and the preconditioned step (default "param": the parameters' dtype, so that
    ``--precision bf16-pure`` runs the factors in bf16, the paper's low-precision setting);
    ``momentum_dtype`` holds the heavy-ball buffer.
    ``lr_cov_name_discount`` applies the prototype's 0.25 x lr_cov to parameters whose name
    contains norm/proj/bias; names come from named parameters (``model.named_parameters()``, or a
    model through ``create_optimizer``), and unnamed parameters are never discounted.
    ``impl``: "reference" (the single-tensor step of section 3.12, with the prototype's cached
    K K^T) or "batched" (parameters of equal squeezed shape and dtypes stacked, every product one
    ``bmm``, K K^T never formed, no host syncs, state no larger than [R2]'s: K, m_K, momentum);
    "auto" is "batched" except for float16 factors, which keep the reference's rescaling trick.
    The two agree up to round-off (tests/test_optimizer_fastpaths.py, tests/test_kronecker_fastpaths.py).
    Where PyTorch has no fast bf16 GEMM (CPUs without AVX-512), bf16 products run as fp32 GEMMs rounded once to
    bf16, which is what its bf16 kernel computes, ~20x faster; ``matmul_flops()`` states the FLOPs of a step.
    """

    # other optimizers' names for these knobs: refused with a pointer to ours (``_common.refuse_foreign_names``)
    FOREIGN_NAMES = {
        "betas": "momentum = beta1 and lr_cov = 1 - beta2",
        "eps": "damping",
        "alpha1": "momentum",
        "alpha2": "riemannian_momentum",
        "beta2": "lr_cov",
        "lam": "damping",
        "kappa": "weight_decay",
    }

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.9,
        lr_cov: float = 5e-2,
        riemannian_momentum: float = 0.5,
        damping: float = 1e-4,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        schedule: str = "prototype_log4",
        T: int = 2,
        preconditioner_dtype: str = "param",
        momentum_dtype: str = "param",
        lr_cov_name_discount: bool = False,
        impl: str = "auto",
        **foreign,
    ):
        refuse_foreign_names("ifshampoo", foreign, self.FOREIGN_NAMES)
        check_lr(lr)
        check_batch_size(batch_size, "ifshampoo")
        check_nonnegative(lr_cov=lr_cov, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum, riemannian_momentum=riemannian_momentum)
        check_choice("schedule", schedule, SCHEDULES)
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        dtype_knob("preconditioner_dtype", preconditioner_dtype)
        dtype_knob("momentum_dtype", momentum_dtype)
        check_choice("impl", impl, IMPLS)
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                lr_cov=lr_cov,
                riemannian_momentum=riemannian_momentum,
                damping=damping,
                weight_decay=weight_decay,
                batch_size=batch_size,
                schedule=schedule,
                T=T,
                preconditioner_dtype=preconditioner_dtype,
                momentum_dtype=momentum_dtype,
                lr_cov_name_discount=bool(lr_cov_name_discount),
            ),
        )
        if lr_cov_name_discount and not all(g.get("param_names") for g in self.param_groups):
            # without names the rule would discount nothing, silently (e.g. model.parameters() in a Lightning
            # module's configure_optimizers)
            raise ValueError(
                "lr_cov_name_discount matches parameter names (norm/proj/bias): pass named parameters, e.g. "
                "model.named_parameters() or rootbench.optimizers.create_optimizer(name, model, ...)"
            )
        self.impl = impl
        self.impl_used = "reference" if impl == "reference" else "batched"
        self._buckets: dict = {}  # group index -> {bucket key: _Bucket}; see _batched_step

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
        for index, group in enumerate(self.param_groups):
            update = self._is_update_step(group)
            names = group.get("param_names") or [""] * len(group["params"])
            todo = [(name, p) for name, p in zip(names, group["params"]) if p.grad is not None]
            if self._batched(group):
                todo = self._batched_step(index, group, todo, update)
            for name, p in todo:
                self._step_param(p, name, group, update)
            self._advance(group, update)
        return loss

    @torch.no_grad()
    def warm_start_share(self) -> dict:
        """How much of the preconditioner is still its start (K = I: SGD with momentum), for the claims.

        Per factor, P_n = K_n K_n^T against I: share_n = |I|_F / (|I|_F + |P_n - I|_F), 1 while the factor has
        not moved, towards 0 as the curvature estimate takes over; ``warm_start_share`` is the mean over all
        factors weighted by their size. Above 1/2 the run is closer to SGD than to the method.
        """
        total = weight = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p, {})
                n = 0
                while f"factor_{n}" in st:
                    K = st[f"factor_{n}"].to(torch.float64)
                    d = K.shape[0]
                    eye = torch.eye(d, dtype=torch.float64, device=K.device)
                    moved = float((K @ K.T - eye).pow(2).sum().sqrt())  # Frobenius norm
                    total += d * math.sqrt(d) / (math.sqrt(d) + moved)
                    weight += d
                    n += 1
        return {"warm_start_share": total / weight if weight else 1.0}  # before the first step: all start

    def matmul_flops(self) -> dict:
        """FLOPs of the matrix multiplies of one update step and of one regular step, over all parameters (the
        analytic count ``bench-optim`` compares with what runs). A tensor of squeezed sizes d_n, D = prod d_n:
        Z = G x_n K_n^T and Z_(n) Z_(n)^T take 2 D d_n each per axis, K^T K and K m_K 2 d_n^3 each; the
        direction G x_n K_n K_n^T takes 4 D d_n per axis batched (as K_n (K_n^T .)), 2 D d_n on the reference
        path, whose cached K K^T costs 2 d_n^3 per update."""
        update = regular = 0
        for group in self.param_groups:
            for p in group["params"]:
                dims = [d for d in p.shape if d != 1] or [1]
                D, sizes, cubes = math.prod(dims), sum(dims), sum(d**3 for d in dims)
                reference = not self._batched(group) or resolve_dtype(group["preconditioner_dtype"], p) not in (
                    torch.float32,
                    torch.float64,
                    torch.bfloat16,
                )
                direction = (2 if reference else 4) * D * sizes
                update += 4 * D * sizes + 4 * cubes + direction + (2 * cubes if reference else 0)
                regular += direction
        return {"update": update, "regular": regular}

    def load_state_dict(self, state_dict: dict) -> None:
        self._buckets = {}  # the loaded state is new tensors: buckets are rebuilt from it
        super().load_state_dict(state_dict)

    def _batched(self, group: dict) -> bool:
        if self.impl == "reference":
            return False
        return group["preconditioner_dtype"] != "float16"  # "param" fp16 is caught per bucket

    def _step_param(self, p: torch.Tensor, name: str, group: dict, update: bool) -> None:
        """The single-tensor reference step (section 3.12)."""
        state = self.state[p]
        pdt = resolve_dtype(group["preconditioner_dtype"], p)
        # squeeze axes of size 1; a 0-d (or all-ones) tensor becomes a 1-vector (section 3.1)
        shape = tuple(d for d in p.shape if d != 1) or (1,)
        G = p.grad.reshape(shape).to(pdt)  # may alias p.grad: only read, never written
        if "factor_0" not in state:
            self._init_state(state, shape, pdt, p.device)
        elif "factor_outer_0" not in state:  # state from the batched path, which keeps no cache
            self._refresh_outer(state, [state[f"factor_{n}"] for n in range(len(shape))])
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
        p.add_(d, alpha=-lr_of(group))

    # -- the batched fast path ------------------------------------------------------------------
    def _batched_step(self, index: int, group: dict, todo: list, update: bool) -> list:
        """Step every parameter whose bucket the batched path handles; return the rest.

        A bucket holds the parameters of one group with equal squeezed shape, parameter dtype,
        factor dtype and momentum dtype. Its factors K_n, their momenta m_K and the momentum
        buffers are stacked tensors; each parameter's ``self.state`` entries are views into them,
        so the state is stored once and ``state_dict`` is unchanged. Loading a state dict (or a
        change of which parameters have gradients) replaces those views; the bucket is then
        rebuilt from the per-parameter state.
        """
        groups: dict = {}
        rest = []
        for name, p in todo:
            pdt = resolve_dtype(group["preconditioner_dtype"], p)
            if pdt not in (torch.float32, torch.float64, torch.bfloat16) or p.grad.is_sparse:
                rest.append((name, p))  # float16: the reference's rescaling guards its range
                continue
            shape = tuple(d for d in p.shape if d != 1) or (1,)
            key = (
                shape,
                p.dtype,
                pdt,
                resolve_dtype(group["momentum_dtype"], p),
                p.device,
                group["riemannian_momentum"] != 0,
                group["momentum"] != 0,
            )
            groups.setdefault(key, []).append((name, p))
        if group["lr_cov_name_discount"]:  # discounted members first: the discount is then a slice
            groups = {k: sorted(v, key=lambda m: not _discounted(m[0])) for k, v in groups.items()}
        old = self._buckets.get(index, {})
        buckets = {}
        for key, members in groups.items():
            bucket = old.get(key)
            if bucket is None or not bucket.valid(self.state, [p for _, p in members]):
                bucket = _Bucket(self.state, key, members, group)
            bucket.step(group, update)
            buckets[key] = bucket
        self._buckets[index] = buckets
        return rest

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
        for n, K in enumerate(new_factors):
            state[f"factor_{n}"].copy_(K)
        IFShampoo._refresh_outer(state, new_factors)

    @staticmethod
    def _refresh_outer(state: dict, factors: list) -> None:
        """Cache (K/s)(K/s)^T per axis and prod s^2 (section 3.4 trick 2), s = max(1, sqrt(max|K|))."""
        sdt = _scalar_dtype(factors[0].dtype)
        scale = torch.ones((), dtype=sdt, device=factors[0].device)
        for n, K in enumerate(factors):
            # carried outside so that the cached product stays near unit scale; cached here so that
            # the steps between updates cost one product per axis
            s = K.abs().max().to(sdt).sqrt().clamp(min=1.0)
            K_s = K / s
            state[f"factor_outer_{n}"] = K_s @ K_s.T
            scale = scale * s * s
        state["outer_scale"] = scale


@functools.cache
def _slow_bf16_gemm(device_type: str) -> bool:
    """Whether PyTorch multiplies bf16 matrices on this device with its scalar fallback kernel: CPUs without
    oneDNN's bf16 path (no AVX-512). That kernel accumulates in fp32 and rounds once, as an fp32 GEMM of the
    upcast operands rounded to bf16 does (equal up to summation order), at ~1.5 instead of ~50 GFLOP/s
    (AVX2 EPYC, one thread: ``bench-optim --task ... --dtype bf16``)."""
    if device_type != "cpu":
        return False
    try:
        return not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return True


def _upcast(X: torch.Tensor) -> torch.Tensor:
    """X as the GEMMs below take it: bf16 in fp32 where bf16 GEMMs are the slow kernel (a factor used in several
    products is upcast once), else X itself."""
    return X.float() if X.dtype == torch.bfloat16 and _slow_bf16_gemm(X.device.type) else X


def _bmm(A: torch.Tensor, B: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A B per batch element in ``dtype`` (default A's): bf16 where that is the slow kernel as an fp32 GEMM of the
    (upcast) operands and one rounding, which is what that kernel computes, at the fp32 GEMM's speed."""
    dtype = dtype or A.dtype
    if dtype == torch.bfloat16 and _slow_bf16_gemm(A.device.type):
        return torch.bmm(_upcast(A), _upcast(B)).to(dtype)
    return torch.bmm(A, B)


def _baddbmm_(
    C: torch.Tensor, A: torch.Tensor, B: torch.Tensor | None = None, beta: float = 1.0, alpha: float = 1.0
) -> torch.Tensor:
    """C <- beta C + alpha A B in place (B None: A A^T, A converted once), rounded once as ``_bmm``; beta = 0
    ignores C (NaN included)."""
    if C.dtype == torch.bfloat16 and _slow_bf16_gemm(C.device.type):
        A = _upcast(A)
        B = A.transpose(1, 2) if B is None else _upcast(B)
        return C.copy_(torch.baddbmm(C.float(), A, B, beta=beta, alpha=alpha))
    return C.baddbmm_(A, A.transpose(1, 2) if B is None else B, beta=beta, alpha=alpha)


def _rotate(X: torch.Tensor, M: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """X x_N M on the last axis of X (M^T with ``transpose``; axis 0 of X and M is the batch), returned with that
    axis first, in X's dtype: (b, d_1, ..., d_N) -> (b, d_N, d_1, ..., d_N-1). One ``bmm`` of M with a transposed
    view of X; N rotations multiply every axis and restore the layout, with no copies (moving a middle axis last
    and back copied the tensor twice per product: 2.6x the time of a bucket of 128x128x3x3 convolutions)."""
    b, dims = X.shape[0], X.shape[1:]
    A = M.transpose(1, 2) if transpose else M
    return _bmm(A, X.reshape(b, -1, dims[-1]).transpose(1, 2), X.dtype).view((b, dims[-1]) + dims[:-1])


def _all_axes(X: torch.Tensor, Ms: list, transpose: bool = False) -> torch.Tensor:
    """X x_1 M_1 ... x_N M_N per batch element (M_n^T with ``transpose``), in X's layout. Matrices take
    M_1 X M_2^T on views (two rotations measured 0-20% slower at the transformer tasks' shapes); the other
    orders rotate (vectors: 2.2x faster than the product on a view; 3-D+ tensors: no copies)."""
    if X.dim() == 3:
        A, C = (M.transpose(1, 2) for M in Ms) if transpose else (Ms[0], Ms[1])
        Y = _bmm(A, X, X.dtype)
        return _bmm(Y, C.transpose(1, 2), X.dtype)
    for M in reversed(Ms):
        X = _rotate(X, M, transpose)
    return X


def _discounted(name: str) -> bool:
    return any(s in name for s in DISCOUNT_PATTERNS)


def _fro_norm(X: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-batch-element Frobenius norm as ``dtype``; computed in X's dtype, since asking for fp32
    would first copy a 16-bit X to fp32 (the reduction accumulates in fp32 either way)."""
    return torch.linalg.vector_norm(X.reshape(X.shape[0], -1), dim=1).to(dtype)


class _Bucket:
    """The stacked state of same-shape parameters and their batched IF-Shampoo step."""

    def __init__(self, state: dict, key: tuple, members: list, group: dict):
        shape, _, pdt, mdt, device, has_factor_momentum, has_momentum = key
        self.shape, self.pdt = shape, pdt
        self.params = [p for _, p in members]
        # members arrive with the discounted ones (section 3.9) first: their count is a slice bound
        self.n_discounted = sum(_discounted(name) for name, _ in members) if group["lr_cov_name_discount"] else 0
        N = len(shape)
        for p in self.params:
            st = state[p]
            if "factor_0" not in st:
                IFShampoo._init_state(st, shape, pdt, device)
            if has_factor_momentum:
                for n, d in enumerate(shape):
                    st.setdefault(f"factor_momentum_{n}", torch.zeros(d, d, dtype=pdt, device=device))
            if has_momentum:
                st.setdefault("momentum_buffer", torch.zeros_like(p, dtype=mdt))
        # stack the per-parameter state (a copy), then point the per-parameter entries at views
        self.keys = [f"factor_{n}" for n in range(N)]
        if has_factor_momentum:
            self.keys += [f"factor_momentum_{n}" for n in range(N)]
        if has_momentum:
            self.keys.append("momentum_buffer")
        # members share the squeezed shape, not the shape ([1, 1, 96] and [96]): momentum is stacked
        # squeezed and each parameter gets a view of its own shape back
        self.stacked = {
            k: torch.stack([state[p][k].reshape(shape) if k == "momentum_buffer" else state[p][k] for p in self.params])
            for k in self.keys
        }
        self.views = []
        for i, p in enumerate(self.params):
            st = state[p]
            for k in [k for k in st if k.startswith("factor_outer_") or k == "outer_scale"]:
                del st[k]  # the reference's K K^T cache: the batched step forms no K K^T
            views = {
                k: self.stacked[k][i].view(p.shape) if k == "momentum_buffer" else self.stacked[k][i] for k in self.keys
            }
            st.update(views)
            self.views.append(views)

    def valid(self, state: dict, params: list) -> bool:
        """Same parameters, and every per-parameter state entry is still this bucket's view."""
        return len(params) == len(self.params) and all(
            p is q and all(state[p].get(k) is v for k, v in views.items())
            for p, q, views in zip(params, self.params, self.views)
        )

    def step(self, group: dict, update: bool) -> None:
        b, shape, pdt = len(self.params), self.shape, self.pdt
        grads = [p.grad.reshape(shape) for p in self.params]
        if b == 1:
            G = grads[0].to(pdt).unsqueeze(0)  # a view where no cast is needed
        else:
            G = torch.empty((b,) + shape, dtype=pdt, device=grads[0].device)
            torch._foreach_copy_(list(G.unbind(0)), grads)
        Ks = [self.stacked[f"factor_{n}"] for n in range(len(shape))]
        if update:
            self._update_factors(G, Ks, group)
        # V = G x_1 (K_1 K_1^T) ... x_N (K_N K_N^T), as K_n (K_n^T .): 2N products, no K K^T kept
        Kc = [_upcast(K) for K in Ks]
        V = _all_axes(_all_axes(G, Kc, transpose=True), Kc)
        lr, wd, mom = lr_of(group), group["weight_decay"], group["momentum"]
        if mom != 0:
            buf = self.stacked["momentum_buffer"]
            torch.add(V.view(buf.shape), buf, alpha=mom, out=buf)  # m <- alpha1 m + V (elementwise: may alias)
            bufs = [v["momentum_buffer"] for v in self.views]
            if wd != 0:
                torch._foreach_add_(bufs, self.params, alpha=wd)  # decay after preconditioning, in the momentum
            torch._foreach_add_(self.params, bufs, alpha=-lr)
        else:
            if wd != 0:
                torch._foreach_mul_(self.params, 1.0 - lr * wd)  # p - lr (V + wd p)
            torch._foreach_add_(self.params, [v.view(p.shape) for v, p in zip(V.unbind(0), self.params)], alpha=-lr)

    def _update_factors(self, G: torch.Tensor, Ks: list, group: dict) -> None:
        """Section 3.2 for every bucket member at once, in the unscaled form (no host syncs):
        m_n <- a2 m_n + (1 - a2) Delta_n with
        Delta_n = 1/2 [lam prod_{m!=n} t_m K_n^T K_n + (B / D_-n) Z_(n) Z_(n)^T - I],
        Z = G x_1 K_1^T ... x_N K_N^T, t_m = |K_m|_F^2 / d_m (= Tr(K_m^T K_m) / d_m); then
        K_n <- K_n - beta2 / max(1, |m_n|_F) K_n m_n. All Delta_n use the old factors."""
        shape, N, b = self.shape, len(self.shape), G.shape[0]
        sdt = _scalar_dtype(self.pdt)
        lam, alpha2, B = group["damping"], group["riemannian_momentum"], group["batch_size"]
        numel = math.prod(shape)
        Kc = [_upcast(K) for K in Ks]  # the factors as the products take them, converted once
        Z = _all_axes(G, Kc, transpose=True)
        # Frobenius norms reduce in fp32 inside; a 16-bit result is rounded like the reference's trace
        traces = [_fro_norm(K, sdt).square() / d for K, d in zip(Ks, shape)] if N > 1 else []
        momenta = []
        for n, (K, Kn, d) in enumerate(zip(Ks, Kc, shape, strict=True)):
            target = self.stacked[f"factor_momentum_{n}"] if alpha2 != 0 else torch.empty_like(K)
            # target <- alpha2 target + (1 - alpha2) (B / (2 D_-n)) Z_(n) Z_(n)^T   (beta=0 ignores target)
            U = self._unfolding(Z, n)
            _baddbmm_(target, U, beta=alpha2, alpha=(1 - alpha2) * B * d / (2 * numel))  # U U^T
            # ... + (1 - alpha2) (lam / 2) prod_{m!=n} t_m K^T K
            c = (1 - alpha2) * lam / 2
            if N == 1:
                _baddbmm_(target, Kn.transpose(1, 2), alpha=c)  # K^T K
            else:
                others = functools.reduce(torch.mul, [t for m, t in enumerate(traces) if m != n])
                _baddbmm_(target, Kn.transpose(1, 2), K * (others * c).view(b, 1, 1).to(K.dtype))
            target.diagonal(dim1=1, dim2=2).sub_((1 - alpha2) / 2)  # ... - (1 - alpha2) I / 2
            momenta.append(target)
        for K, Kn, m_K in zip(Ks, Kc, momenta, strict=True):
            # first-order truncation of K exp(-beta2 m_K), the step clamped by max(1, |m_K|_F)
            step = -group["lr_cov"] / _fro_norm(m_K, sdt).clamp(min=1.0)
            if self.n_discounted:
                step[: self.n_discounted] *= DISCOUNT_FACTOR
            # the step is rounded to the factor dtype, as the reference's 0-d scalar is
            K.addcmul_(_bmm(Kn, m_K, K.dtype), step.view(b, 1, 1).to(K.dtype))

    @staticmethod
    def _unfolding(Z: torch.Tensor, n: int) -> torch.Tensor:
        """Z_(n), the mode-n unfolding per batch element (a view for the first and last axes)."""
        b, dims = Z.shape[0], Z.shape[1:]
        if n == len(dims) - 1:
            return Z.reshape(b, -1, dims[-1]).transpose(1, 2)
        return Z.movedim(n + 1, 1).reshape(b, dims[n], -1)


# lr: four decades around the paper's ViT region (2.2e-4 to 4.3e-4), the width every method gets; lr_cov: the
# factor step, whose time constant 1/lr_cov (in preconditioner updates) runs from 1.25 updates (the paper's
# 0.8) to half the run's updates, so the K = I start is left behind in every draw; momenta 1 - m log-uniform
_SPACE = {
    "lr": ("log", 3e-6, 3e-2),
    "momentum": ("log1m", 1e-2, 1.0),
    "lr_cov": ("horizon", 1.25, 0.5, "updates"),
    "riemannian_momentum": ("log1m", 0.1, 0.9),
    "damping": ("log", 3e-5, 1e-3),
    "weight_decay": ("log", 1e-6, 6e-2),
}
# the paper's best run on GC-ViT / ImageWoof (no CNN runs of IF-Shampoo were published)
_PUBLISHED = {
    "vit": {
        "lr": 2.21e-4,
        "lr_cov": 0.168,
        "damping": 4.97e-5,
        "momentum": 0.168,
        "weight_decay": 2.40e-3,
        "riemannian_momentum": 0.553,
    }
}
_META = dict(
    paper="https://arxiv.org/abs/2402.03496",
    family="shampoo",
    root_free=True,
    pair="shampoo",
    wd_kind="post_precond",
    needs_batch_size=True,
    test_lr=0.02,
    search_space=_SPACE,
    preconditioner="kronecker",
    period_hparam="T",
    bounds={"riemannian_momentum": "[0, 1)"},
    published=_PUBLISHED,
    warm_start=True,
)

register_optimizer(
    "ifshampoo",
    IFShampoo,
    description="IF-Shampoo: inverse- and root-free Kronecker preconditioner, matmuls only (Lin et al. 2024)",
    **_META,
)
register_optimizer(
    "ifshampoo_paper",
    IFShampoo,
    parent="ifshampoo",
    defaults={
        "schedule": "prototype_log4",
        "T": 2,
        "preconditioner_dtype": "bfloat16",
        "momentum_dtype": "bfloat16",
        "lr_cov_name_discount": True,
    },
    description="IF-Shampoo as run in the paper: log4 warm-up, T=2, bf16 factors and momentum, "
    "0.25 lr_cov on norm/proj/bias",
    **_META,
)
