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
from rootbench.optimizers._common import (StateDtypeOptimizer, check_batch_size, check_below_one, check_choice,
                                check_nonnegative, dtype_knob, resolve_dtype)
from rootbench.optimizers._compiled import (IMPLS, CompiledStepMixin, Kernel, kernel_min_numel, opmath_dtype,
                                  scalars_tensor)


class RFAdamW(CompiledStepMixin, StateDtypeOptimizer):
    """Root-free AdamW (Lin et al. 2024); ``batch_size`` B is required.

    b1 = ``momentum``, b2 = 1 - ``lr_cov``, eps = ``damping``; decoupled ``weight_decay``. Ablations:
    ``s0_zero`` (v0 = 0, dummy_init) and ``scale_by_batch=False`` (B := 1, dummy_scaling).
    ``state_dtype`` is "param" (the parameter dtype), "float32" or "bfloat16".
    ``impl``: "reference" (the readable step below), "compiled" (one fused ``torch.compile`` pass per
    tensor, bound to the reference by tests/test_optimizer_fastpaths.py) or "auto" (compiled for
    models of at least 2**20 elements where compiling works, else reference); ``opt.impl_used``,
    ``opt.impl_note`` and ``opt.compile_time_s`` record what ran.
    """

    # lr: the prototype requires it; 0.1 comes from a scan on MNIST-1D (README, "Defaults"). With
    # s = B v starting at 1 the early steps are SGD-sized, so root-free lr values sit near SGD's.
    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, lr_cov: float = 1e-3,
                 damping: float = 1e-4, weight_decay: float = 0.0, batch_size: int | None = None,
                 bias_correction: bool = False, s0_zero: bool = False, scale_by_batch: bool = True,
                 state_dtype: str = "param", impl: str = "auto"):
        check_batch_size(batch_size, "rfadamw")
        check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum)
        check_nonnegative(lr_cov=lr_cov)
        if not 0 < lr_cov <= 1:
            raise ValueError(f"lr_cov must lie in (0, 1], got {lr_cov!r}")
        dtype_knob("state_dtype", state_dtype)
        check_choice("impl", impl, IMPLS)
        super().__init__(params, dict(lr=lr, momentum=momentum, lr_cov=lr_cov, damping=damping,
                                      weight_decay=weight_decay, batch_size=batch_size,
                                      bias_correction=bool(bias_correction), s0_zero=bool(s0_zero),
                                      scale_by_batch=bool(scale_by_batch), state_dtype=state_dtype))
        self._setup_impl(impl, "rfadamw")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            todo = [p for p in group["params"] if p.grad is not None]
            if self.impl_used == "compiled":
                todo = self._compiled_step(group, todo)
            for p in todo:
                self._reference_update(p, group)
        return loss

    @staticmethod
    def _state_of(state: dict, p: torch.Tensor, group: dict, B: int, dtype: torch.dtype) -> dict:
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype)
            # v0 = 1/B, i.e. s = B v starts at 1 (0 for the s0_zero ablation)
            state["exp_avg_sq"] = torch.full_like(p, 0.0 if group["s0_zero"] else 1.0 / B, dtype=dtype)
        return state

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
        bc1 = 1.0 - b1 ** t if group["bias_correction"] else 1.0
        bc2 = 1.0 - b2 ** t if group["bias_correction"] else 1.0
        den = v * (B / bc2) + eps  # B v / bc2 + eps: no square root
        p.add_(m / den, alpha=-lr / bc1)

    def _compiled_step(self, group: dict, params: list) -> list:
        """The same step as one fused compiled pass per tensor; returns the parameters it leaves to
        the reference step (small, non-contiguous or sparse ones, or all if compiling failed)."""
        B = group["batch_size"] if group["scale_by_batch"] else 1
        b1, b2 = group["momentum"], 1.0 - group["lr_cov"]
        lr, eps, wd = group["lr"], group["damping"], group["weight_decay"]
        rest, scalars = [], {}
        for i, p in enumerate(params):
            g = self._flat_grad(p)
            if g is None or p.numel() < kernel_min_numel(p.device):
                rest.append(p)
                continue
            dtype = resolve_dtype(group["state_dtype"], p)
            state = self._state_of(self.state[p], p, group, B, dtype)
            flats = self._flat_views(p, (state["exp_avg"], state["exp_avg_sq"]))
            if flats is None:
                rest.append(p)
                continue
            t = state["step"] + 1
            key = (p.dtype, g.dtype, dtype, p.device)
            if (key, t) not in scalars:
                bc1 = 1.0 - b1 ** t if group["bias_correction"] else 1.0
                bc2 = 1.0 - b2 ** t if group["bias_correction"] else 1.0
                # the scalars as the reference's eager ops round them (to the op-math dtype), in one tensor
                values = [1.0 - lr * wd, b1, 1.0 - b1, b2, 1.0 - b2, B / bc2, eps, -lr / bc1]
                scalars[key, t] = scalars_tensor(values, opmath_dtype(dtype), p.device)
            fp, fm, fv = flats
            if not self._run_kernel(_RFADAMW_KERNEL, key, (fp, g, fm, fv), scalars[key, t]):
                return rest + params[i:]
            state["step"] = t
        return rest


def _rfadamw_tensor_update(p, g, m, v, sc):
    """One RF-AdamW step of one flattened tensor, in place; sc = [1 - lr wd, b1, 1 - b1, b2, 1 - b2,
    B / bc2, eps, -lr / bc1]. Intermediates stay in op-math precision (fp32 for 16-bit state)."""
    p.mul_(sc[0])
    gs = g.to(m.dtype)
    m.mul_(sc[1]).add_(gs * sc[2])
    v.mul_(sc[3]).add_(sc[4] * gs * gs)
    p.add_(m / (v * sc[5] + sc[6]) * sc[7])


_RFADAMW_KERNEL = Kernel(_rfadamw_tensor_update)

_SPACE = {"lr": ("log", 1e-3, 1.0), "momentum": ("log", 1e-3, 0.99), "lr_cov": ("log", 5e-5, 1e-1),
          "damping": ("log", 1e-7, 1e-3), "weight_decay": ("log", 1e-5, 1e-1)}  # section 6.1 RF envelopes; lr up to 1 (no published RF-AdamW sweep)
_META = dict(paper="https://arxiv.org/abs/2402.03496", family="adam", root_free=True, pair="adamw",
             wd_kind="decoupled", needs_batch_size=True, search_space=_SPACE, preconditioner="diagonal")

register_optimizer("rfadamw", RFAdamW, test_lr=0.05,
                   description="RF-AdamW: root-free AdamW, v0=1/B and B-scaled denominator, no square root",
                   **_META)
# the ablation switches s0_zero / scale_by_batch are plain hyperparameters here; the registered
# ablation variants live with RF-RMSProp, the method the paper ablates (Fig. 4)
