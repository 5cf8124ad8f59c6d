"""RF-AdamW: AdamW without the square root (the authors' later diagonal root-free variant).

Lin, Dangel, Eschenhagen, Bae, Turner, Makhzani, "Can We Remove the Square-Root in Adaptive Gradient
Methods? A Second-Order Perspective", ICML 2024, https://arxiv.org/abs/2402.03496; this variant is the
authors' ``MyAdamW`` (added after the paper), methods.md section 2.

What differs from AdamW, and nothing else: the second moment starts at v0 = 1/B instead of 0 (so
s = B v starts at 1), the denominator is B v / bc2 + eps with no square root, and bias correction is
off by default (it assumes a zero initial state, which no longer holds). Weight decay is decoupled
and applied first, the first moment is Adam's EMA, and the memory traffic is AdamW's.
"""
from __future__ import annotations

import torch

from optimizers import register_optimizer
from optimizers._common import (StateDtypeOptimizer, check_batch_size, check_below_one, check_nonnegative,
                                dtype_knob, resolve_dtype)


class RFAdamW(StateDtypeOptimizer):
    """Root-free AdamW (methods.md section 2); ``batch_size`` B is required.

    b1 = ``momentum``, b2 = 1 - ``lr_cov``, eps = ``damping``; decoupled ``weight_decay``. Ablations:
    ``s0_zero`` (v0 = 0, dummy_init) and ``scale_by_batch=False`` (B := 1, dummy_scaling).
    ``state_dtype`` is "param" (the parameter dtype), "float32" or "bfloat16".
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, lr_cov: float = 1e-3,
                 damping: float = 1e-4, weight_decay: float = 0.0, batch_size: int | None = None,
                 bias_correction: bool = False, s0_zero: bool = False, scale_by_batch: bool = True,
                 state_dtype: str = "param"):
        check_batch_size(batch_size, "rfadamw")
        check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum)
        check_nonnegative(lr_cov=lr_cov)
        if not 0 < lr_cov <= 1:
            raise ValueError(f"lr_cov must lie in (0, 1], got {lr_cov!r}")
        dtype_knob("state_dtype", state_dtype)
        super().__init__(params, dict(lr=lr, momentum=momentum, lr_cov=lr_cov, damping=damping,
                                      weight_decay=weight_decay, batch_size=batch_size,
                                      bias_correction=bool(bias_correction), s0_zero=bool(s0_zero),
                                      scale_by_batch=bool(scale_by_batch), state_dtype=state_dtype))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            B = group["batch_size"] if group["scale_by_batch"] else 1  # dummy_scaling: B := 1 everywhere
            b1, b2 = group["momentum"], 1.0 - group["lr_cov"]
            lr, eps, wd = group["lr"], group["damping"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                dtype = resolve_dtype(group["state_dtype"], p)
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype)
                    # v0 = 1/B, i.e. s = B v starts at 1 (0 for the s0_zero ablation)
                    state["exp_avg_sq"] = torch.full_like(p, 0.0 if group["s0_zero"] else 1.0 / B, dtype=dtype)
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
        return loss


_SPACE = {"lr": ("log", 5e-5, 1e-1), "momentum": ("log", 1e-3, 0.99), "lr_cov": ("log", 5e-5, 1e-1),
          "damping": ("log", 1e-7, 1e-3), "weight_decay": ("log", 1e-5, 1e-1)}  # section 6.1 RF envelopes
_META = dict(paper="https://arxiv.org/abs/2402.03496", family="adam", root_free=True, pair="adamw",
             wd_kind="decoupled", needs_batch_size=True, search_space=_SPACE)

register_optimizer("rfadamw", RFAdamW, test_lr=0.05,
                   description="RF-AdamW: root-free AdamW, v0=1/B and B-scaled denominator, no square root",
                   **_META)
# the ablation switches s0_zero / scale_by_batch are plain hyperparameters here; the registered
# ablation variants live with RF-RMSProp, the method the paper ablates (Fig. 4)
