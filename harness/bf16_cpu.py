"""bf16 matrix products on CPUs without bf16 units: the same numbers at fp32 speed.

A bf16 matrix product (linear, convolution, matmul) on a GPU, and in PyTorch's own CPU kernels, takes bf16
inputs, accumulates their products in fp32 and rounds the result to bf16 once. On a CPU without bf16
instructions (AVX2 only, as the reference machine here) PyTorch's bf16 kernels compute exactly that, but
10-50 times slower than fp32 (measured, one thread: a 96-wide ViT step 10x, a VGG-11 step 21x), which puts
every ``bf16`` and ``bf16-pure`` run out of a CPU tier's budget.

``fp32_accumulation()`` computes those products the fast way with the same semantics: the bf16 inputs are
widened to fp32 (exactly: every bf16 value is an fp32 value, and the product of two is exact in fp32), the
product runs in fp32 and the result is rounded to bf16. The only difference from the bf16 kernels is the
order of the fp32 summation, which moves a result by at most a rounding step (``tests/test_bf16_cpu.py``
holds it to the native kernels). The widened copies are saved for backward as bf16 again (lossless), so
activation memory is what the bf16 kernels would keep. Under CPU autocast to bf16 (``bf16`` runs), the fp32
operands of a product are first rounded to bf16, which is autocast's own cast, so the result is again the
bf16 product. Only the model's forward and backward run under it; optimizers keep their own arithmetic.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

# products whose saved tensors are their inputs (so re-narrowing them to bf16 for backward is lossless)
PRODUCTS = frozenset(
    {
        F.linear,
        F.bilinear,
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        torch.matmul,
        torch.mm,
        torch.bmm,
        torch.addmm,
        torch.baddbmm,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
        torch.Tensor.mm,
        torch.Tensor.bmm,
    }
)


def _is_bf16(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16


def _narrow(x):
    return x.to(torch.bfloat16) if isinstance(x, torch.Tensor) and x.dtype == torch.float32 else x


def _unpack(packed):
    t, widened = packed
    return t.float() if widened else t


def _autocast_bf16() -> bool:
    """CPU autocast to bf16 is on: it would cast a product's fp32 operands to bf16 and run the bf16 kernel."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class Fp32Accumulation(TorchFunctionMode):
    """Within it, a product with bf16 operands on the CPU runs as fp32 on the widened operands, rounded to bf16;
    under CPU autocast to bf16, a product of fp32 operands is first cast to bf16, as autocast would."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in PRODUCTS:
            return func(*args, **kwargs)
        flat = [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor) and x.is_floating_point()]
        if not flat or any(x.device.type != "cpu" for x in flat):
            return func(*args, **kwargs)
        autocast = _autocast_bf16() and all(x.dtype in (torch.float32, torch.bfloat16) for x in flat)
        if autocast:  # autocast's own cast (differentiable: gradients come back to the fp32 tensors as fp32)
            args, kwargs = tree_map(_narrow, (args, kwargs))
        elif any(x.dtype != torch.bfloat16 for x in flat):
            return func(*args, **kwargs)  # fp32 or mixed operands: the kernel's own behaviour (errors too)
        widened: dict[int, torch.Tensor] = {}

        def widen(x):
            if not _is_bf16(x):
                return x
            w = x.float()
            widened[id(w)] = w
            return w

        def pack(t: torch.Tensor):
            # a widened bf16 input saved for backward goes back to bf16 (exact); anything else is kept as it is
            return (t.to(torch.bfloat16), True) if widened.get(id(t)) is t else (t, False)

        args, kwargs = tree_map(widen, (args, kwargs))
        # autocast off for the fp32 product itself, or it would cast the widened operands back to bf16
        off = torch.autocast("cpu", enabled=False) if autocast else contextlib.nullcontext()
        with off, torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            return tree_map(_narrow, func(*args, **kwargs))


def fp32_accumulation(precision: str, device: torch.device):
    """The mode for ``bf16-pure`` and ``bf16`` (autocast) runs on a CPU; nothing elsewhere (GPUs have bf16 units;
    fp32 needs none; fp16 autocast keeps PyTorch's kernels)."""
    if precision in ("bf16-pure", "bf16") and torch.device(device).type == "cpu":
        return Fp32Accumulation()
    return contextlib.nullcontext()
