"""``torch.compile`` fast paths for the elementwise (diagonal) optimizers; not an optimizer itself.

Why: a diagonal step is memory-bound. One fused pass per tensor reads p, g and the state and writes
p and the state (28 B/param for RF-AdamW in fp32: the traffic floor), while eager PyTorch makes
one full pass over memory per elementwise op (an eager RF-AdamW step is about 4x that floor). A
per-tensor update function compiled by Inductor (C++/OpenMP on CPU, Triton on CUDA) is one such pass.

How recompiles are avoided: tensors are flattened to 1-D and marked dynamic, so every parameter
shape shares one compiled kernel per dtype combination; learning rate, step-dependent bias
corrections and every other scalar travel in one small tensor, so changing them never recompiles.

Inductor's CPU kernels fix their OpenMP thread count when compiled (set ``torch.set_num_threads``
before the first step). Tensors below ``MIN_KERNEL_NUMEL`` on CPU keep the reference step. The
1-D views of parameters and state are cached per parameter; the step's Python per tensor is one
gradient view and the compiled call.

Fallback: where compiling is impossible (no C++ compiler, no Triton, unsupported platform, an error
while compiling, or ``ROOTBENCH_NO_COMPILE=1``) the optimizer warns once and uses its reference
step; ``opt.impl_used`` and ``opt.impl_note`` say what ran and why.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import warnings

import torch

IMPLS = ("auto", "reference", "compiled")
ENV_DISABLE = "ROOTBENCH_NO_COMPILE"
# below this many parameter elements ``impl="auto"`` keeps the reference step: compiling costs
# seconds (tens cold), which a small model's step (milliseconds eager) does not pay back
AUTO_COMPILE_MIN_NUMEL = 1 << 20
# smaller tensors take the reference step: a dynamic-shape Inductor kernel always opens an OpenMP
# parallel region, whose thread wake-up costs more than a small tensor's eager ops (which PyTorch
# runs single-threaded below its 32768-element grain size) on a loaded machine
MIN_KERNEL_NUMEL = 1 << 15


class CompileFailed(RuntimeError):
    """Compiling a kernel failed; the caller falls back to its reference step."""


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot be used on ``device`` (None when it can)."""
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return f"{ENV_DISABLE} is set"
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return f"torch.compile does not support Python {sys.version.split()[0]} on {sys.platform}"
    except Exception as e:  # an exotic build: report it, do not crash the optimizer
        return f"torch.compile is unavailable ({type(e).__name__}: {e})"
    if device.type == "cpu":
        try:
            from torch._inductor import cpp_builder

            cxx = cpp_builder.get_cpp_compiler()
        except Exception as e:
            return f"no C++ compiler for Inductor ({type(e).__name__}: {e})"
        if not (os.path.isfile(cxx) or shutil.which(cxx)):
            return f"no C++ compiler for Inductor ({cxx!r} not found)"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (Inductor needs it on CUDA)"
    return f"no compiled path on device type {device.type!r}"


def resolve_impl(impl: str, params, optimizer: str) -> tuple[str, str]:
    """("compiled" | "reference", a note saying why) for the requested ``impl``.

    ``auto`` compiles when every parameter's device can compile and the optimizer holds at least
    ``AUTO_COMPILE_MIN_NUMEL`` elements; an explicit ``compiled`` that cannot compile warns.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    if impl == "reference":
        return "reference", "impl='reference' requested"
    params = list(params)
    numel = sum(p.numel() for p in params)
    if impl == "auto" and numel < AUTO_COMPILE_MIN_NUMEL:
        return "reference", f"impl='auto': {numel} parameter elements < {AUTO_COMPILE_MIN_NUMEL}, not worth compiling"
    for device in {p.device for p in params}:
        reason = compile_unavailable(device)
        if reason is not None:
            note = f"{optimizer}: cannot compile ({reason}); using the reference step"
            warnings.warn(note, RuntimeWarning, stacklevel=4)
            return "reference", note
    return "compiled", f"impl={impl!r}: torch.compile (Inductor), one fused pass per tensor"


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype eager PyTorch computes a ``dtype`` op in (and rounds Python scalars to)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def scalars_tensor(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The step's scalars as one tensor on ``device``; on an accelerator copied asynchronously from
    pinned memory, so building it never waits for the device (no host sync)."""
    if device.type == "cpu":
        return torch.tensor(values, dtype=dtype)
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


def kernel_min_numel(device: torch.device) -> int:
    """Smallest tensor the kernel takes: ``MIN_KERNEL_NUMEL`` on CPU (OpenMP wake-ups); elsewhere 2
    (sizes 0 and 1 would specialise the dynamic-shape graph)."""
    return MIN_KERNEL_NUMEL if device.type == "cpu" else 2


def eligible(*tensors: torch.Tensor) -> bool:
    """Dense, contiguous, same-size tensors of at least ``kernel_min_numel`` elements."""
    n = tensors[0].numel()
    return n >= kernel_min_numel(tensors[0].device) and all(
        t.layout == torch.strided and t.is_contiguous() and t.numel() == n for t in tensors)


class Kernel:
    """A per-tensor update function compiled on first use, with its compile time measured.

    Calling it with a new ``key`` (the dtypes and device of the arguments) times that call: the first
    call per key traces, compiles and runs it. A failure while compiling raises ``CompileFailed``
    before anything was written, and disables the kernel for the rest of the process.
    """

    def __init__(self, fn):
        self.fn = fn
        self.compiled = None
        self.seen: set = set()
        self.failed: str | None = None

    def __call__(self, key, flats: tuple, scalars: torch.Tensor) -> float:
        """Run the kernel on 1-D ``flats``; returns the seconds spent compiling (0.0 once ``key`` is
        compiled). Only a first call marks the sizes dynamic: later calls of any size match the
        dynamic-shape graph's guards."""
        if key in self.seen:
            self.compiled(*flats, scalars)
            return 0.0
        if self.failed is not None:
            raise CompileFailed(self.failed)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, fullgraph=True)
        for t in flats:
            torch._dynamo.mark_dynamic(t, 0)
        t0 = time.perf_counter()
        try:
            self.compiled(*flats, scalars)
        except Exception as e:
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            self.failed = f"compiling {self.fn.__name__} failed: {type(e).__name__}: {first_line}"
            raise CompileFailed(self.failed) from e
        self.seen.add(key)
        return time.perf_counter() - t0


class CompiledStepMixin:
    """Bookkeeping shared by optimizers with a compiled fast path.

    Attributes: ``impl_used`` ("compiled" or "reference"), ``impl_note`` (why), ``compile_time_s``
    (seconds this optimizer spent compiling, summed over first calls of each kernel signature).
    """

    def _setup_impl(self, impl: str, optimizer: str) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        self.impl_used, self.impl_note = resolve_impl(impl, params, optimizer)
        self.compile_time_s = 0.0
        self._optimizer_name = optimizer
        self._flat_cache: dict = {}  # parameter -> (its data_ptr, its state tensors, their 1-D views)

    def load_state_dict(self, state_dict: dict) -> None:
        self._flat_cache = {}  # the loaded state is new tensors: drop the views of the old ones
        super().load_state_dict(state_dict)

    def _flat_views(self, p: torch.Tensor, state_tensors: tuple) -> tuple | None:
        """1-D views of ``p`` and its state tensors, cached while they are the same tensors (the
        per-step Python work then is one gradient view); None where the kernel does not apply."""
        entry = self._flat_cache.get(p)
        if entry is not None and entry[0] == p.data_ptr() and all(a is b for a, b in zip(entry[1], state_tensors)):
            return entry[2]
        if not eligible(p, *state_tensors):
            self._flat_cache.pop(p, None)
            return None
        flats = tuple(t.view(-1) for t in (p,) + state_tensors)
        self._flat_cache[p] = (p.data_ptr(), state_tensors, flats)
        return flats

    @staticmethod
    def _flat_grad(p: torch.Tensor) -> torch.Tensor | None:
        g = p.grad
        if g.layout != torch.strided or not g.is_contiguous() or g.shape != p.shape:
            return None
        return g.view(-1)

    def _run_kernel(self, kernel: Kernel, key, flats: tuple, scalars: torch.Tensor) -> bool:
        """Run ``kernel``; on a compile failure warn once, switch to the reference step, return False."""
        try:
            self.compile_time_s += kernel(key, flats, scalars)
            return True
        except CompileFailed as e:
            self.impl_used = "reference"
            self.impl_note = f"{self._optimizer_name}: {e}; using the reference step"
            warnings.warn(self.impl_note, RuntimeWarning, stacklevel=4)
            return False
