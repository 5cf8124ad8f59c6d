"""Pieces shared by rootbench's in-house optimizers (not an optimizer itself: the name starts with ``_``)."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_choice(knob: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{knob} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_nonnegative(**values) -> None:
    for knob, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{knob} must be a non-negative number, got {value!r}")


def check_lr(lr) -> None:
    """A learning rate: a non-negative number, or a 0-d floating tensor (as torch.optim accepts; schedulers
    update it in place, so the optimizers read it at every step through ``lr_of``)."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1 or lr.dim() != 0 or not lr.is_floating_point():
            raise ValueError(f"lr must be a number or a 0-d floating tensor, got a tensor of shape {tuple(lr.shape)}")
        lr = float(lr)
    check_nonnegative(lr=lr)


def lr_of(group: dict) -> float:
    """The param group's learning rate as a Python float (a 0-d tensor lr is read now)."""
    lr = group["lr"]
    return float(lr) if isinstance(lr, torch.Tensor) else lr


def refuse_foreign_names(optimizer: str, given: dict, foreign: dict) -> None:
    """Hyperparameter names from other optimizers' APIs (AdamW's ``betas``/``eps``, RMSprop's ``alpha``) get an
    error naming rootbench's own: they are not mapped silently, since they do not mean the same thing here
    (``damping`` is added to B times the EMA, with no root; Adam's ``eps`` is added outside a square root)."""
    if not given:
        return
    hints = [f"{k}: {foreign[k]}" for k in given if k in foreign]
    others = sorted(k for k in given if k not in foreign)
    if others:
        raise TypeError(f"{optimizer} got unexpected keyword argument(s) {', '.join(map(repr, others))}")
    raise TypeError(f"{optimizer} does not take AdamW/RMSprop names; use its own: " + "; ".join(hints))


def check_below_one(**values) -> None:
    for knob, value in values.items():
        check_nonnegative(**{knob: value})
        if not value < 1:
            raise ValueError(f"{knob} must lie in [0, 1), got {value!r}")


def check_batch_size(batch_size, optimizer: str) -> None:
    """Root-free methods scale the squared gradient by B, which has no sensible default."""
    if batch_size is None:
        raise ValueError(
            f"{optimizer} needs batch_size=B, the number of examples the loss is averaged "
            "over (Lin et al. 2024); it has no default"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{optimizer}: batch_size must be a positive integer, got {batch_size!r}")


def dtype_knob(knob: str, value: str, allow_param: bool = True) -> None:
    """Dtype hyperparameters are strings (registry defaults must be primitive)."""
    check_choice(knob, value, (("param",) if allow_param else ()) + tuple(DTYPES))


def resolve_dtype(value: str, param: torch.Tensor) -> torch.dtype:
    return param.dtype if value == "param" else DTYPES[value]


class StateDtypeOptimizer(torch.optim.Optimizer):
    """An ``Optimizer`` whose state tensors keep their own dtype through ``load_state_dict``.

    ``torch.optim.Optimizer.load_state_dict`` casts every floating-point state tensor to the
    parameter's dtype. That would silently turn fp32 factors of a bf16 parameter (or fp64 factors
    of an fp32 one) into the parameter dtype and break a bit-identical continuation, so the saved
    tensors are put back as they were (copied, on the parameter's device).
    """

    def load_state_dict(self, state_dict: dict) -> None:
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        saved = {i: {k: v for k, v in state_dict["state"].get(i, {}).items() if _holds_tensors(v)} for i in saved_ids}
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(saved_ids, params):
            for key, value in saved[i].items():
                self.state[p][key] = _copied_to(value, p.device)


def _holds_tensors(value) -> bool:
    return torch.is_tensor(value) or (isinstance(value, (list, tuple)) and any(map(_holds_tensors, value)))


def _copied_to(value, device):
    """A copy of a state value (a tensor, or lists of them, as PSGD keeps its factors) on ``device``, dtypes kept."""
    if torch.is_tensor(value):
        return value.to(device=device, copy=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_copied_to(v, device) for v in value)
    return value


@torch.no_grad()
def diagonal_warm_start_share(optimizer, state_key: str) -> dict:
    """How much of a root-free diagonal preconditioner is still its start, per coordinate.

    The state a (``state_key``) starts at a0 = 1/B (s = B a = 1; 0 for ``s0_zero``) and decays by 1 - lr_cov
    per step, so after t steps it holds a0 (1 - lr_cov)^t of its start (``group["s0_weight"]`` tracks the
    factor) beside the data term a - a0 (1 - lr_cov)^t. ``warm_start_share`` is the fraction of coordinates
    where the start still exceeds the data term (the method acts as SGD with step lr / s there);
    ``warm_start_median_share`` the median of start / a. Before the first step the start is everything.
    """
    shares, started = [], False
    for group in optimizer.param_groups:
        if group["s0_zero"]:
            continue
        started = True
        B = group["batch_size"] if group["scale_by_batch"] else 1
        residual = group.get("s0_weight", 1.0) / B
        for p in group["params"]:
            a = optimizer.state.get(p, {}).get(state_key)
            if a is not None:
                shares.append(
                    (residual / a.float().clamp_min(torch.finfo(torch.float32).tiny)).flatten().clamp(max=1.0)
                )
    if not started:
        return {}
    if not shares:
        return {"warm_start_share": 1.0, "warm_start_median_share": 1.0}
    x = torch.cat(shares)
    return {"warm_start_share": float((x > 0.5).float().mean()), "warm_start_median_share": float(x.median())}


def track_warm_start(optimizer) -> None:
    """After a step: the start's weight in each group's EMA, (1 - lr_cov)^t (kept in the param group, so it
    survives ``state_dict`` round trips)."""
    for group in optimizer.param_groups:
        if any(p.grad is not None for p in group["params"]):
            group["s0_weight"] = group.get("s0_weight", 1.0) * (1.0 - group["lr_cov"])
