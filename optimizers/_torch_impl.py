"""Choosing torch.optim's implementation (fused > foreach > for-loop) for the wrapped optimizers."""

from __future__ import annotations

IMPLS = ("auto", "fused", "foreach", "forloop")


def _tensors(params):
    for p in params:
        if isinstance(p, dict):
            yield from _tensors(p["params"])
        elif isinstance(p, tuple):
            yield p[1]
        else:
            yield p


def impl_kwargs(impl: str, params, fused_ok: bool = True) -> dict:
    """torch.optim keyword arguments for ``impl``; ``auto`` picks fused where it is supported."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "fused" and not fused_ok:
        raise ValueError("this torch optimizer has no fused implementation; use impl=foreach or impl=forloop")
    if impl == "auto":
        tensors = list(_tensors(params))
        fusable = (
            fused_ok and tensors and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
        )
        impl = "fused" if fusable else "foreach"
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "forloop": {"foreach": False}}[impl]


def materialize(params):
    """A list (params may be a one-shot generator and impl_kwargs must look at it)."""
    return list(params)
