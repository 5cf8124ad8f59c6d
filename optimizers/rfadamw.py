"""RF-AdamW: AdamW without the square root (the authors' later diagonal root-free variant).

Lin, Dangel, Eschenhagen, Bae, Turner, Makhzani, "Can We Remove the Square-Root in Adaptive Gradient
Methods? A Second-Order Perspective", ICML 2024, https://arxiv.org/abs/2402.03496; this variant is the
authors' ``MyAdamW`` (added to their code after the paper).

What differs from AdamW, and nothing else: the second moment starts at v0 = 1/B instead of 0 (so
s = B v starts at 1), the denominator is B v / bc2 + eps with no square root, and bias correction is
off by default (it assumes a zero initial state, which no longer holds). Weight decay is decoupled
and applied first, the first moment is Adam's EMA, and the memory traffic is AdamW's.
"""

from __future__ import annotations

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._common import (
    StateDtypeOptimizer,
    check_batch_size,
    check_below_one,
    check_choice,
    check_nonnegative,
    diagonal_warm_start_share,
    dtype_knob,
    resolve_dtype,
    track_warm_start,
)
from rootbench.optimizers._compiled import IMPLS, CompiledStepMixin, Kernel, flat_copy, scalars_tensor


class RFAdamW(CompiledStepMixin, StateDtypeOptimizer):
    """Root-free AdamW (Lin et al. 2024); ``batch_size`` B is required.

    b1 = ``momentum``, b2 = 1 - ``lr_cov``, eps = ``damping``; decoupled ``weight_decay``. Ablations:
    ``s0_zero`` (v0 = 0, dummy_init) and ``scale_by_batch=False`` (B := 1, dummy_scaling).
    ``state_dtype`` is "param" (the parameter dtype), "float32" or "bfloat16".
    ``impl``: "reference" (the readable per-tensor step below), "multi_tensor" (its ops run once on
    flat state buffers per bucket of same-dtype tensors), "compiled" (one fused ``torch.compile`` pass
    per bucket, and per large tensor) or "auto" (compiled for models of at least 2**17 elements where
    compiling works, else multi_tensor); see optimizers/_compiled.py. The fast paths are bound to the
    reference by tests/test_optimizer_fastpaths.py; ``opt.impl_used``, ``opt.impl_note`` and
    ``opt.compile_time_s`` record what ran.
    """

    # lr: the prototype requires it; 0.1 comes from a scan on MNIST-1D (README, "Defaults"). With
    # s = B v starting at 1 the early steps are SGD-sized, so root-free lr values sit near SGD's.
    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.9,
        lr_cov: float = 1e-3,
        damping: float = 1e-4,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        bias_correction: bool = False,
        s0_zero: bool = False,
        scale_by_batch: bool = True,
        state_dtype: str = "param",
        impl: str = "auto",
    ):
        check_batch_size(batch_size, "rfadamw")
        check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum)
        check_nonnegative(lr_cov=lr_cov)
        if not 0 < lr_cov <= 1:
            raise ValueError(f"lr_cov must lie in (0, 1], got {lr_cov!r}")
        dtype_knob("state_dtype", state_dtype)
        check_choice("impl", impl, IMPLS)
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                lr_cov=lr_cov,
                damping=damping,
                weight_decay=weight_decay,
                batch_size=batch_size,
                bias_correction=bool(bias_correction),
                s0_zero=bool(s0_zero),
                scale_by_batch=bool(scale_by_batch),
                state_dtype=state_dtype,
            ),
        )
        self._setup_impl(impl, "rfadamw")

    @staticmethod
    def _state_of(state: dict, p: torch.Tensor, group: dict, B: int, dtype: torch.dtype) -> dict:
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype)
            # v0 = 1/B, i.e. s = B v starts at 1 (0 for the s0_zero ablation)
            state["exp_avg_sq"] = torch.full_like(p, 0.0 if group["s0_zero"] else 1.0 / B, dtype=dtype)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        track_warm_start(self)
        return loss

    def warm_start_share(self) -> dict:
        """The share of the preconditioner still owed to s0 (``_common.diagonal_warm_start_share``)."""
        return diagonal_warm_start_share(self, "exp_avg_sq")

    def _reference_update(self, p: torch.Tensor, group: dict) -> None:
        """The readable reference step of one tensor (Lin et al. 2024)."""
        B = group["batch_size"] if group["scale_by_batch"] else 1  # dummy_scaling: B := 1 everywhere
        b1, b2 = group["momentum"], 1.0 - group["lr_cov"]
        lr, eps, wd = group["lr"], group["damping"], group["weight_decay"]
        dtype = resolve_dtype(group["state_dtype"], p)
        state = self._state_of(self.state[p], p, group, B, dtype)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        p.mul_(1.0 - lr * wd)  # decoupled decay first, before the gradient is read
        g = p.grad.to(dtype)
        m.mul_(b1).add_(g, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        bc1 = 1.0 - b1**t if group["bias_correction"] else 1.0
        bc2 = 1.0 - b2**t if group["bias_correction"] else 1.0
        den = v * (B / bc2) + eps  # B v / bc2 + eps: no square root
        p.add_(m / den, alpha=-lr / bc1)

    # -- fast paths (optimizers/_compiled.py): the same step, bound to the reference by tests -------

    def _state_keys(self, group: dict) -> tuple:
        return ("exp_avg", "exp_avg_sq")

    def _init_state(self, p: torch.Tensor, group: dict, dtype: torch.dtype) -> dict:
        return self._state_of(self.state[p], p, group, group["batch_size"] if group["scale_by_batch"] else 1, dtype)

    def _bucket_tag(self, state: dict):
        return state["step"]  # members of a bucket share the bias corrections

    @staticmethod
    def _hyper(group: dict, t: int) -> tuple:
        """(B, b1, b2, lr, eps, wd, bc1, bc2) of the reference step at step ``t``."""
        b1, b2 = group["momentum"], 1.0 - group["lr_cov"]
        bc1 = 1.0 - b1**t if group["bias_correction"] else 1.0
        bc2 = 1.0 - b2**t if group["bias_correction"] else 1.0
        B = group["batch_size"] if group["scale_by_batch"] else 1
        return B, b1, b2, group["lr"], group["damping"], group["weight_decay"], bc1, bc2

    def _flat_update(self, bucket, group: dict, grads: list) -> None:
        """The step of a bucket on its flat state: the reference's ops run once (or one compiled pass),
        then one ``_foreach_add_`` of the direction into the parameters."""
        t = bucket.records[0]["step"] + 1
        B, b1, b2, lr, eps, wd, bc1, bc2 = self._hyper(group, t)
        m, v = bucket.states["exp_avg"], bucket.states["exp_avg_sq"]
        g = flat_copy(grads, bucket.dtype)
        if bucket.compiled:  # m, v and g <- m / den in one fused pass
            sc = scalars_tensor([b1, 1.0 - b1, b2, 1.0 - b2, B / bc2, eps], bucket.dtype, g.device)
            self._run_kernel(_FLAT_KERNEL, (bucket.dtype, g.device), (g, m, v), sc)
            d = g
        else:
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            d = torch.div(m, torch.mul(v, B / bc2, out=g).add_(eps), out=g)  # g's buffer: den, then m / den
        # the decoupled decay, after the moments (they never read p; and a compile failure above has then
        # written nothing); p * 1.0 == p, so skipping it changes nothing
        if 1.0 - lr * wd != 1.0:
            torch._foreach_mul_(bucket.p_views, 1.0 - lr * wd)
        torch._foreach_add_(bucket.p_views, d.split(bucket.sizes), alpha=-lr / bc1)
        for record in bucket.records:
            record["step"] = t

    def _tensor_update(self, p: torch.Tensor, group: dict) -> bool:
        """One compiled pass over a large tensor, in place; False where it does not apply."""
        g = self._flat_grad(p)
        state = self.state[p]
        flats = None if g is None else self._flat_views(p, (state["exp_avg"], state["exp_avg_sq"]))
        if flats is None:
            return False
        t = state["step"] + 1
        B, b1, b2, lr, eps, wd, bc1, bc2 = self._hyper(group, t)
        fp, fm, fv = flats
        sc = scalars_tensor([1.0 - lr * wd, b1, 1.0 - b1, b2, 1.0 - b2, B / bc2, eps, -lr / bc1], fm.dtype, p.device)
        self._run_kernel(_TENSOR_KERNEL, (p.dtype, g.dtype, fm.dtype, p.device), (fp, g, fm, fv), sc)
        state["step"] = t
        return True


# The compiled kernels (flattened tensors, in place). Intermediates and scalars are in op-math precision
# (fp32 for 16-bit state).


def _rfadamw_tensor_update(p, g, m, v, sc):
    """One RF-AdamW step of one tensor; sc = [1 - lr wd, b1, 1 - b1, b2, 1 - b2, B / bc2, eps, -lr / bc1]."""
    p.mul_(sc[0])
    gs = g.to(m.dtype)
    m.mul_(sc[1]).add_(gs * sc[2])
    v.mul_(sc[3]).add_(sc[4] * gs * gs)
    p.add_(m / (v * sc[5] + sc[6]) * sc[7])


def _rfadamw_flat_update(g, m, v, sc):
    """The moments of a flat bucket and g <- m / (B v / bc2 + eps), the direction; g has the state
    dtype; sc = [b1, 1 - b1, b2, 1 - b2, B / bc2, eps]."""
    m.mul_(sc[0]).add_(g * sc[1])
    v.mul_(sc[2]).add_(sc[3] * g * g)
    g.copy_(m / (v * sc[4] + sc[5]))


_TENSOR_KERNEL = Kernel(_rfadamw_tensor_update)
_FLAT_KERNEL = Kernel(_rfadamw_flat_update)

# lr: four decades around its SGD-like scale (v0 = 1/B makes early steps SGD-sized; no published RF-AdamW
# sweep); lr_cov = 1 - beta2: time constant from 10 steps to half the run (the start must be left behind);
# momentum = beta1 with 1 - beta1 log-uniform
_SPACE = {
    "lr": ("log", 3e-4, 3.0),
    "momentum": ("log1m", 1e-2, 1.0),
    "lr_cov": ("horizon", 10, 0.5),
    "damping": ("log", 1e-7, 1e-3),
    "weight_decay": ("log", 1e-5, 1e-1),
}
_META = dict(
    paper="https://arxiv.org/abs/2402.03496",
    family="adam",
    root_free=True,
    pair="adamw",
    wd_kind="decoupled",
    needs_batch_size=True,
    search_space=_SPACE,
    preconditioner="diagonal",
    warm_start=True,
    ema_rates=("lr_cov",),
)

register_optimizer(
    "rfadamw",
    RFAdamW,
    test_lr=0.05,
    description="RF-AdamW: root-free AdamW, v0=1/B and B-scaled denominator, no square root",
    **_META,
)
# the ablation switches s0_zero / scale_by_batch are plain hyperparameters here; the registered
# ablation variants live with RF-RMSProp, the method the paper ablates (Fig. 4)
