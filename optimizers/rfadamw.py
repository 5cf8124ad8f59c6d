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
    check_lr,
    check_nonnegative,
    diagonal_warm_start_share,
    dtype_knob,
    lr_of,
    refuse_foreign_names,
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
    flat state buffers per bucket of same-dtype tensors), "compiled" (one ``torch.compile`` kernel call per
    bucket, every member's step in place) or "auto" (compiled for models of at least 2**17 elements where
    compiling works, else multi_tensor); see optimizers/_compiled.py. The fast paths are bound to the
    reference by tests/test_optimizer_fastpaths.py; ``opt.impl_used``, ``opt.impl_note`` and
    ``opt.compile_time_s`` record what ran.
    """

    # lr: the prototype requires it; 0.1 comes from a scan on MNIST-1D (README, "Defaults"). With
    # s = B v starting at 1 the early steps are SGD-sized, so root-free lr values sit near SGD's.
    # other optimizers' names for these knobs: refused with a pointer to ours (``_common.refuse_foreign_names``)
    FOREIGN_NAMES = {
        "betas": "momentum = beta1 and lr_cov = 1 - beta2",
        "eps": "damping (added to B v / bc2, with no square root)",
        "beta1": "momentum",
        "beta2": "lr_cov = 1 - beta2",
    }

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
        **foreign,
    ):
        refuse_foreign_names("rfadamw", foreign, self.FOREIGN_NAMES)
        check_lr(lr)
        check_batch_size(batch_size, "rfadamw")
        check_nonnegative(damping=damping, weight_decay=weight_decay)
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

    def step(self, closure=None):  # no_grad: the mixin's step; tracking is plain Python
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
        lr, eps, wd = lr_of(group), group["damping"], group["weight_decay"]
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
        return B, b1, b2, lr_of(group), group["damping"], group["weight_decay"], bc1, bc2

    def _flat_update(self, bucket, group: dict, grads: list) -> None:
        """multi_tensor: the reference's ops run once on the bucket's flat state, then one ``_foreach_add_`` of
        the direction into the parameters."""
        t = bucket.records[0]["step"] + 1
        B, b1, b2, lr, eps, wd, bc1, bc2 = self._hyper(group, t)
        m, v = bucket.states["exp_avg"], bucket.states["exp_avg_sq"]
        g = flat_copy(grads, bucket.dtype, numel=bucket.numel, same_dtype=bucket.grad_dtype == bucket.dtype)
        m.mul_(b1).add_(g, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        d = torch.div(m, torch.mul(v, B / bc2, out=g).add_(eps), out=g)  # g's buffer: den, then m / den
        # the decoupled decay, after the moments (they never read p); p * 1.0 == p, so skipping it changes nothing
        if 1.0 - lr * wd != 1.0:
            torch._foreach_mul_(bucket.p_views, 1.0 - lr * wd)
        torch._foreach_add_(bucket.p_views, d.split(bucket.sizes), alpha=-lr / bc1)
        for record in bucket.records:
            record["step"] = t

    def _compiled_update(self, bucket, group: dict, grads: list) -> None:
        """compiled: every member's step in one kernel call, in place."""
        t = bucket.records[0]["step"] + 1
        B, b1, b2, lr, eps, wd, bc1, bc2 = self._hyper(group, t)
        sc = scalars_tensor(
            [1.0 - lr * wd, b1, 1.0 - b1, b2, 1.0 - b2, B / bc2, eps, -lr / bc1], bucket.dtype, bucket.params[0].device
        )
        lists = (bucket.p_views, grads, bucket.views["exp_avg"], bucket.views["exp_avg_sq"])
        self._run_kernel(_KERNEL, bucket, lists, sc)
        for record in bucket.records:
            record["step"] = t


# The compiled kernel (lists of same-shape tensors, in place). Intermediates and scalars are in op-math precision
# (fp32 for 16-bit state).


def _rfadamw_tensor_update(p, g, m, v, sc):
    """One RF-AdamW step of one tensor; sc = [1 - lr wd, b1, 1 - b1, b2, 1 - b2, B / bc2, eps, -lr / bc1]."""
    p.mul_(sc[0])
    gs = g.to(m.dtype)
    m.mul_(sc[1]).add_(gs * sc[2])
    v.mul_(sc[3]).add_(sc[4] * gs * gs)
    p.add_(m / (v * sc[5] + sc[6]) * sc[7])


def _rfadamw_update(ps, gs, ms, vs, sc):
    """The step of every tensor of a bucket (one compiled graph: Dynamo unrolls the loop)."""
    for p, g, m, v in zip(ps, gs, ms, vs):
        _rfadamw_tensor_update(p, g, m, v, sc)


_KERNEL = Kernel(_rfadamw_update)

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
