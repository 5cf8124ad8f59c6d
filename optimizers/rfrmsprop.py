"""RF-RMSProp: RMSProp without the square root (the paper's diagonal root-free method).

Lin, Dangel, Eschenhagen, Bae, Turner, Makhzani, "Can We Remove the Square-Root in Adaptive Gradient
Methods? A Second-Order Perspective", ICML 2024, https://arxiv.org/abs/2402.03496 (Fig. 4;
update rule as the authors ran it: Lin et al. 2024).

What differs from AdamW: the second moment s <- (1-beta2) s + beta2 * B * g*g starts at s0 = 1 (not 0)
and is scaled by the batch size B, so it estimates a batch-size-independent empirical Fisher; the
step divides by s + lambda with no square root and no bias correction; there is no first-moment EMA
but heavy-ball momentum on the *preconditioned* direction; weight decay is added to that direction
after preconditioning (never preconditioned). State is kept in the parameter dtype by default.
"""
from __future__ import annotations

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._common import (StateDtypeOptimizer, check_batch_size, check_below_one, check_choice,
                                check_nonnegative, dtype_knob, resolve_dtype)
from rootbench.optimizers._compiled import (IMPLS, CompiledStepMixin, Kernel, kernel_min_numel, opmath_dtype,
                                  scalars_tensor)


class RFRMSProp(CompiledStepMixin, StateDtypeOptimizer):
    """Root-free RMSProp (Lin et al. 2024); ``batch_size`` B is required.

    ``lr`` = beta1, ``lr_cov`` = beta2 (the constructor's alpha is 1 - lr_cov), ``damping`` = lambda
    (added to s, outside), ``momentum`` = alpha1 (heavy-ball), ``weight_decay`` = gamma (added after
    preconditioning). Ablations (paper Fig. 4 / [R1] flags): ``s0_zero`` starts s at 0 (dummy_init);
    ``scale_by_batch=False`` uses B := 1 in the initialisation and the update (dummy_scaling).
    ``state_dtype`` is "param" (the parameter dtype), "float32" or "bfloat16".
    ``impl``: "reference" (the readable step below), "compiled" (one fused ``torch.compile`` pass per
    tensor, bound to the reference by tests/test_optimizer_fastpaths.py) or "auto" (compiled for
    models of at least 2**20 elements where compiling works, else reference); ``opt.impl_used``,
    ``opt.impl_note`` and ``opt.compile_time_s`` record what ran.
    """

    # lr and momentum: the prototype requires both; these defaults come from a scan on MNIST-1D
    # (README, "Defaults"): heavy-ball 0.9 matters for the method (0.74 vs 0.65 val accuracy there)
    def __init__(self, params, lr: float = 1e-3, lr_cov: float = 1e-2, damping: float = 1e-4,
                 momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int | None = None,
                 s0_zero: bool = False, scale_by_batch: bool = True, state_dtype: str = "param",
                 impl: str = "auto"):
        check_batch_size(batch_size, "rfrmsprop")
        check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
        check_below_one(momentum=momentum)
        check_nonnegative(lr_cov=lr_cov)
        if lr_cov > 1:
            raise ValueError(f"lr_cov must lie in [0, 1], got {lr_cov!r}")
        dtype_knob("state_dtype", state_dtype)
        check_choice("impl", impl, IMPLS)
        super().__init__(params, dict(lr=lr, lr_cov=lr_cov, damping=damping, momentum=momentum,
                                      weight_decay=weight_decay, batch_size=batch_size, s0_zero=bool(s0_zero),
                                      scale_by_batch=bool(scale_by_batch), state_dtype=state_dtype))
        self._setup_impl(impl, "rfrmsprop")

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

    def _reference_update(self, p: torch.Tensor, group: dict) -> None:
        """The readable reference step of one tensor (Lin et al. 2024)."""
        B = group["batch_size"] if group["scale_by_batch"] else 1  # dummy_scaling: B := 1 everywhere
        alpha = 1.0 - group["lr_cov"]  # the reference's constructor argument; beta2 = 1 - alpha
        lr, lam, wd, mom = group["lr"], group["damping"], group["weight_decay"], group["momentum"]
        state = self.state[p]
        dtype = resolve_dtype(group["state_dtype"], p)
        g = p.grad.to(dtype)  # may alias p.grad: only read, so p.grad is never overwritten
        if "square_avg" not in state:
            # stored as a = s / B (as the reference does): s0 = 1  <=>  a0 = 1/B
            state["square_avg"] = torch.full_like(g, 0.0 if group["s0_zero"] else 1.0 / B)
        a = state["square_avg"]
        a.mul_(alpha).addcmul_(g, g, value=1.0 - alpha)  # a <- (1-beta2) a + beta2 g*g
        d = g / (a * B + lam)  # no root; damping outside: g / (s + lambda)
        if wd != 0:
            d.add_(p.to(dtype), alpha=wd)  # decay after preconditioning, then through momentum
        if mom != 0:
            if "momentum_buffer" not in state:  # allocated only when momentum is used
                state["momentum_buffer"] = torch.zeros_like(d)
            d = state["momentum_buffer"].mul_(mom).add_(d)  # heavy-ball, no dampening
        p.add_(d, alpha=-lr)

    def _compiled_step(self, group: dict, params: list) -> list:
        """The same step as one fused compiled pass per tensor; returns the parameters it leaves to
        the reference step (small, non-contiguous or sparse ones, or all if compiling failed).

        The state is created exactly as the reference creates it. Weight decay is always applied
        (wd = 0 adds 0 * p, which changes nothing for finite p), so wd never triggers a recompile.
        """
        B = group["batch_size"] if group["scale_by_batch"] else 1
        alpha = 1.0 - group["lr_cov"]
        lr, lam, wd, mom = group["lr"], group["damping"], group["weight_decay"], group["momentum"]
        kernel = _MOMENTUM_KERNEL if mom != 0 else _KERNEL
        rest, scalars = [], {}
        for i, p in enumerate(params):
            g = self._flat_grad(p)
            if g is None or p.numel() < kernel_min_numel(p.device):
                rest.append(p)
                continue
            state = self.state[p]
            dtype = resolve_dtype(group["state_dtype"], p)
            if "square_avg" not in state:
                state["square_avg"] = torch.full_like(p.grad, 0.0 if group["s0_zero"] else 1.0 / B, dtype=dtype)
            if mom != 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(state["square_avg"])
            flats = self._flat_views(p, (state["square_avg"],) + ((state["momentum_buffer"],) if mom != 0 else ()))
            if flats is None:
                rest.append(p)
                continue
            key = (p.dtype, g.dtype, dtype, p.device)
            if key not in scalars:
                scalars[key] = scalars_tensor([alpha, 1.0 - alpha, float(B), lam, wd, -lr, mom],
                                              opmath_dtype(dtype), p.device)
            if not self._run_kernel(kernel, key, (flats[0], g) + flats[1:], scalars[key]):
                return rest + params[i:]
        return rest


def _rfrmsprop_tensor_update(p, g, a, sc):
    """One RF-RMSProp step (no momentum) of one flattened tensor, in place;
    sc = [alpha, 1 - alpha, B, lambda, wd, -lr, momentum]. Intermediates stay in op-math precision."""
    gs = g.to(a.dtype)
    a.mul_(sc[0]).add_(sc[1] * gs * gs)
    d = gs / (a * sc[2] + sc[3]) + p.to(a.dtype) * sc[4]
    p.add_(d * sc[5])


def _rfrmsprop_momentum_tensor_update(p, g, a, buf, sc):
    """As ``_rfrmsprop_tensor_update`` with heavy-ball momentum on the preconditioned direction."""
    gs = g.to(a.dtype)
    a.mul_(sc[0]).add_(sc[1] * gs * gs)
    d = gs / (a * sc[2] + sc[3]) + p.to(a.dtype) * sc[4]
    buf.mul_(sc[6]).add_(d)
    p.add_(buf * sc[5])


_KERNEL = Kernel(_rfrmsprop_tensor_update)
_MOMENTUM_KERNEL = Kernel(_rfrmsprop_momentum_tensor_update)

_SPACE = {"lr": ("log", 5e-5, 1e-1), "lr_cov": ("log", 5e-5, 1e-1), "damping": ("log", 1e-7, 1e-3),
          "momentum": ("log", 1e-4, 0.99), "weight_decay": ("log", 1e-5, 1e-1)}  # section 6.1 envelopes
_META = dict(paper="https://arxiv.org/abs/2402.03496", family="rmsprop", root_free=True, pair="rmsprop",
             wd_kind="post_precond", needs_batch_size=True, search_space=_SPACE, preconditioner="diagonal")

register_optimizer("rfrmsprop", RFRMSProp, test_lr=5e-3,
                   description="RF-RMSProp: root-free RMSProp, s0=1 and B-scaled g^2, no square root (Lin et al. 2024)",
                   **_META)
# s0 = 0 makes the first steps about g / (beta2 B g^2 + lambda): it needs a smaller learning rate
register_optimizer("rfrmsprop_s0zero", RFRMSProp, defaults={"s0_zero": True}, parent="rfrmsprop", test_lr=5e-4,
                   description="RF-RMSProp ablation: s starts at 0 instead of 1 (the reference's dummy_init)",
                   **_META)
register_optimizer("rfrmsprop_nob", RFRMSProp, defaults={"scale_by_batch": False}, parent="rfrmsprop", test_lr=5e-3,
                   description="RF-RMSProp ablation: no batch-size factor B (the reference's dummy_scaling)",
                   **_META)
