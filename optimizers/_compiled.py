"""Multi-tensor fast paths for the elementwise (diagonal) optimizers; not an optimizer itself.

Why: a diagonal step is memory-bound, and fused AdamW reads p, g and the state and writes p and the
state in one pass per tensor (28 B/param in fp32: the traffic floor). The readable reference step
makes one pass per elementwise op and pays PyTorch's dispatch per op *and per tensor*, which on real
models (50-60 tensors, most of them small) costs 3-5x fused AdamW.

How: the parameters with gradients of a param group are grouped into *buckets* (same device,
parameter, gradient and state dtype); a bucket takes one of two paths.

- ``impl="compiled"``: one ``torch.compile`` call per bucket runs every member's whole step in place (reads p,
  g and the state, writes p and the state: AdamW's traffic, no copies), from the per-tensor step function of
  the optimizer looped over the bucket's lists. The state stays one tensor per parameter as the reference
  allocates it (state tensors that are views of one buffer made Inductor handle aliasing: 4x the compile
  time). One kernel is compiled per bucket signature (sizes and dtypes), from its own copy of the step
  function, so no signature ever recompiles another's graph and a second optimizer with the same
  parameters (the step-time probe's copy, then the run's own) reuses the first one's.
- ``impl="multi_tensor"``: the bucket's state lives in one flat buffer per state key (the tensors in
  ``opt.state`` are views into it, so state bytes, ``state_dict`` and the reference step are unchanged); a step
  concatenates the gradients (one copy), runs the reference's eager ops once on the flat buffers (a dozen
  dispatches for any number of tensors) and adds the direction with one ``_foreach_add_``. Nothing is
  compiled.

The learning rate, bias corrections and every other scalar travel in one small tensor, so changing them
never recompiles. Inductor's CPU kernels fix their OpenMP thread count when compiled (set
``torch.set_num_threads`` first).

``impl="auto"`` compiles where the optimizer holds at least ``AUTO_COMPILE_MIN_NUMEL`` elements and
compiling works, else it uses multi_tensor. Where compiling fails (no C++ compiler or Triton, an error
while compiling, ``ROOTBENCH_NO_COMPILE=1``) the optimizer warns once and uses multi_tensor;
``opt.impl_used`` and ``opt.impl_note`` say what ran and why. Sparse or non-contiguous gradients and
non-contiguous parameters take the reference step.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import types
import warnings
from dataclasses import dataclass, field

import torch
from torch._utils import _flatten_dense_tensors  # one C++ call: cat of the tensors' 1-D views

from rootbench.optimizers._common import resolve_dtype

IMPLS = ("auto", "reference", "multi_tensor", "compiled")
ENV_DISABLE = "ROOTBENCH_NO_COMPILE"
# below this many parameter elements ``impl="auto"`` stays eager: compiling costs seconds, which a
# small model (already within ~10-40% of fused AdamW on the eager flat path) does not pay back
AUTO_COMPILE_MIN_NUMEL = 1 << 17
# most elements per flat (multi_tensor) bucket: bounds the transient copies (gradient, direction) of a step
CHUNK_MAX_NUMEL = {"cpu": 1 << 20, "default": 1 << 24}
# up to this many elements ``flat_copy`` flattens with scratch in one C++ call (copying the scratch too) rather
# than a cat of Python-made views into an empty buffer: on a small model the calls, not the bytes, are the step
SMALL_FLAT_NUMEL = 1 << 16
# most tensors per compiled bucket: compile time grows with the tensors a kernel unrolls (measured on one
# CPU thread: 4 s for 8 tensors, 9 s for 52)
COMPILED_MAX_TENSORS = 64
# Inductor's per-call checks of every input's sizes and strides: Dynamo's guards already ensure them, and
# with four lists of a model's tensors they cost a tenth of a small step
COMPILE_OPTIONS = {"size_asserts": False}


class CompileFailed(RuntimeError):
    """Compiling a kernel failed; the caller falls back to multi_tensor."""


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
    """("compiled" | "multi_tensor" | "reference", a note saying why) for the requested ``impl``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    if impl == "reference":
        return "reference", "impl='reference' requested"
    if impl == "multi_tensor":
        return "multi_tensor", "impl='multi_tensor' requested: eager ops on flat state buffers"
    params = list(params)
    numel = sum(p.numel() for p in params)
    if impl == "auto" and numel < AUTO_COMPILE_MIN_NUMEL:
        return "multi_tensor", (
            f"impl='auto': {numel} parameter elements < {AUTO_COMPILE_MIN_NUMEL}, not worth "
            "compiling; eager ops on flat state buffers"
        )
    for device in {p.device for p in params}:
        reason = compile_unavailable(device)
        if reason is not None:
            note = f"{optimizer}: cannot compile ({reason}); using multi_tensor"
            if impl == "compiled":
                warnings.warn(note, RuntimeWarning, stacklevel=4)
            return "multi_tensor", note
    return "compiled", (
        f"impl={impl!r}: torch.compile (Inductor), one in-place kernel call per bucket of same-dtype tensors"
    )


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype eager PyTorch computes a ``dtype`` op in (and rounds Python scalars to)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def scalars_tensor(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The step's scalars as one tensor of the state ``dtype``'s op-math dtype (rounded as eager rounds
    Python scalars; float64 scalars measured 5-10% slower kernels) on ``device``; on an accelerator copied
    asynchronously from pinned memory, so building it never waits for the device (no host sync)."""
    dtype = opmath_dtype(dtype)
    if device.type == "cpu":
        return torch.tensor(values, dtype=dtype)
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


def _by_device(table: dict, device: torch.device) -> int:
    return table.get(device.type, table["default"])


def chunk_max_numel(device: torch.device) -> int:
    return _by_device(CHUNK_MAX_NUMEL, device)


def _own_copy(fn, tag: int):
    """``fn`` with a code object of its own: Dynamo keeps its compiled graphs per code object, so each
    signature's kernel has its own cache and never counts against (or replaces) another's."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class Kernel:
    """An in-place step of lists of tensors in their own shapes, compiled once per signature (``key``: the
    shapes, dtypes and device of the arguments), with its compile time.

    The first call with a new ``key`` traces, compiles and runs a kernel for it (static shapes). A failure
    while compiling raises ``CompileFailed`` before anything was written, and disables the kernel for the
    rest of the process.
    """

    def __init__(self, fn):
        self.fn = fn
        self.compiled: dict = {}  # key -> compiled callable
        self.failed: str | None = None

    def __call__(self, key, args: tuple, scalars: torch.Tensor) -> float:
        """Run the kernel on ``args`` (lists of tensors of the signature ``key``); returns the seconds spent
        compiling (0.0 once ``key`` is compiled)."""
        run = self.compiled.get(key)
        if run is not None:
            run(*args, scalars)
            return 0.0
        if self.failed is not None:
            raise CompileFailed(self.failed)
        run = torch.compile(_own_copy(self.fn, len(self.compiled)), fullgraph=True, dynamic=False)
        t0 = time.perf_counter()
        try:
            # the options apply while compiling (compile(options=...) would patch the config on every call)
            with torch._inductor.config.patch(COMPILE_OPTIONS):
                run(*args, scalars)
        except Exception as e:
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            self.failed = f"compiling {self.fn.__name__} failed: {type(e).__name__}: {first_line}"
            raise CompileFailed(self.failed) from e
        self.compiled[key] = run
        return time.perf_counter() - t0


@dataclass
class Bucket:
    """Parameters of one param group that step together: same device and dtypes.

    ``records`` are their state dicts; ``views[key]`` the members' state tensors ``key`` (multi_tensor: 1-D views
    of ``states[key]``, one flat buffer per key), ``p_views`` the parameters without autograd (multi_tensor: 1-D
    views), valid while ``ptrs`` match. ``compiled``: one compiled kernel (signature ``key``) steps the bucket.
    """

    params: list
    grad_dtype: torch.dtype
    dtype: torch.dtype  # the state dtype
    records: list
    compiled: bool
    states: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)
    p_views: list = field(default_factory=list)
    ptrs: list = field(default_factory=list)
    sizes: list = field(default_factory=list)  # multi_tensor: the members' numels (``numel`` their sum)
    numel: int = 0
    key: tuple = ()

    def grads(self) -> list | None:
        """The gradients, or None where they no longer fit the bucket (dtype, layout, moved parameters).
        One pass: this runs every step, and a bucket may hold a model's every tensor."""
        grads, want, strided, compiled = [], self.grad_dtype, torch.strided, self.compiled
        for p, ptr in zip(self.params, self.ptrs):
            g = p.grad
            if g.dtype is not want or g.layout is not strided or p.data_ptr() != ptr:
                return None
            if compiled and not g.is_contiguous():
                return None
            grads.append(g)
        return grads


@dataclass
class Plan:
    """How one param group's parameters (those with gradients) take a step."""

    params: list
    layout: tuple  # the group settings the state layout depends on (state dtype, state keys)
    reference: list
    buckets: list


class CompiledStepMixin:
    """The multi-tensor fast paths shared by the diagonal optimizers.

    Attributes: ``impl_used`` ("compiled", "multi_tensor" or "reference"), ``impl_note`` (why),
    ``compile_time_s`` (seconds this optimizer spent compiling, summed over first calls of each kernel
    signature). An optimizer provides ``_reference_update``, ``_state_keys(group)``,
    ``_init_state(p, group, dtype)`` (the reference's lazy state; returns the state dict),
    ``_bucket_tag(state)`` (what else members of a bucket must share), ``_flat_update(bucket, group,
    grads)`` (multi_tensor) and ``_compiled_update(bucket, group, grads)`` (one kernel call).
    """

    def _setup_impl(self, impl: str, optimizer: str) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        self.impl_used, self.impl_note = resolve_impl(impl, params, optimizer)
        self.compile_time_s = 0.0
        self._optimizer_name = optimizer
        self._plans: dict = {}  # param group index -> Plan

    def load_state_dict(self, state_dict: dict) -> None:
        self._plans = {}  # the loaded state is new tensors: plan again
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            todo = [p for p in group["params"] if p.grad is not None]
            if self.impl_used != "reference":
                todo = self._multi_tensor_step(index, group, todo)
            for p in todo:
                self._reference_update(p, group)
        return loss

    def _bucket_tag(self, state: dict):
        return None

    # -- planning ------------------------------------------------------------------------------

    def _layout(self, group: dict) -> tuple:
        return group["state_dtype"], self._state_keys(group)

    def _plan(self, group: dict, params: list, old: Plan | None) -> Plan:
        """Sort ``params`` into reference steps and buckets, creating their state as the reference would;
        multi_tensor buckets move their members' state into flat buffers (views stay in ``opt.state``)."""
        if old is not None:  # state leaves the old flat buffers first (they are freed once no view is left)
            for b in old.buckets:
                for record in b.records:
                    for k in b.states:
                        if k in record:
                            record[k] = record[k].clone()
        compiled = self.impl_used == "compiled"
        keys = self._state_keys(group)
        reference, members = [], {}
        for p in params:
            g = p.grad
            if (
                g.layout != torch.strided
                or p.layout != torch.strided
                or g.shape != p.shape
                or not p.is_contiguous()
                or (compiled and not g.is_contiguous())
            ):
                reference.append(p)  # sparse gradients and strided tensors: only the reference
                continue
            dtype = resolve_dtype(group["state_dtype"], p)
            state = self._init_state(p, group, dtype)
            members.setdefault((p.device, p.dtype, g.dtype, dtype, self._bucket_tag(state)), []).append(p)
        buckets = []
        for (device, p_dtype, grad_dtype, dtype, _), ps in members.items():
            chunks = _chunks(ps, chunk_max_numel(device)) if not compiled else _count_chunks(ps, COMPILED_MAX_TENSORS)
            for chunk in chunks:
                bucket = Bucket(chunk, grad_dtype, dtype, [self.state[p] for p in chunk], compiled)
                if compiled:  # the tensors in their own shapes: a step passes the gradients as they are
                    bucket.views = {k: [r[k] for r in bucket.records] for k in keys}
                    bucket.p_views = [p.detach() for p in chunk]
                    bucket.ptrs = [p.data_ptr() for p in chunk]
                    bucket.key = (device, p_dtype, grad_dtype, dtype, keys, tuple(tuple(p.shape) for p in chunk))
                else:
                    _make_flat(bucket, keys)
                buckets.append(bucket)
        return Plan(params, self._layout(group), reference, buckets)

    # -- stepping ------------------------------------------------------------------------------

    def _multi_tensor_step(self, index: int, group: dict, params: list) -> list:
        """Step ``params`` with the multi-tensor paths; returns those left to the reference step."""
        plan = self._plans.get(index)
        if plan is None or not _same(plan.params, params) or plan.layout != self._layout(group):
            plan = self._plans[index] = self._plan(group, params, plan)
        grads = [b.grads() for b in plan.buckets]
        if any(g is None for g in grads):  # gradient dtypes or parameter storage changed since planning
            plan = self._plans[index] = self._plan(group, params, plan)
            grads = [b.grads() for b in plan.buckets]
        done = 0
        try:
            for bucket, g in zip(plan.buckets, grads, strict=True):
                if bucket.compiled:
                    self._compiled_update(bucket, group, g)
                else:
                    self._flat_update(bucket, group, g)
                done += 1
        except CompileFailed as e:  # raised before the failing bucket wrote anything
            self.impl_used = "multi_tensor"
            self.impl_note = f"{self._optimizer_name}: {e}; using multi_tensor"
            warnings.warn(self.impl_note, RuntimeWarning, stacklevel=3)
            self._plans = {}  # the rest of this step, then every later one, plans without kernels
            left = self._multi_tensor_step(-1, group, [p for b in plan.buckets[done:] for p in b.params])
            self._plans = {}
            return left + plan.reference
        return plan.reference

    def _run_kernel(self, kernel: Kernel, bucket: Bucket, args: tuple, scalars: torch.Tensor) -> None:
        """Run ``kernel`` on a compiled bucket, adding any compile time; ``CompileFailed`` propagates (the
        step falls back)."""
        self.compile_time_s += kernel(bucket.key, args, scalars)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _count_chunks(params: list, limit: int) -> list:
    return [params[i : i + limit] for i in range(0, len(params), limit)]


def _chunks(params: list, limit: int) -> list:
    """Consecutive runs of ``params`` of at most ``limit`` elements each (a larger tensor alone)."""
    out, cur, n = [], [], 0
    for p in params:
        if cur and n + p.numel() > limit:
            out.append(cur)
            cur, n = [], 0
        cur.append(p)
        n += p.numel()
    return out + ([cur] if cur else [])


def _make_flat(bucket: Bucket, keys: tuple) -> None:
    """Move the bucket's state into one flat buffer per key; ``opt.state`` then holds views into it."""
    ps = bucket.params
    bucket.sizes = [p.numel() for p in ps]
    bucket.numel = sum(bucket.sizes)
    for k in keys:
        flat = torch.empty(sum(bucket.sizes), dtype=bucket.dtype, device=ps[0].device)
        views = flat.split(bucket.sizes)
        for p, record, view in zip(ps, bucket.records, views, strict=True):
            view.copy_(record[k].reshape(-1))
            record[k] = view.view(p.shape)
        bucket.states[k], bucket.views[k] = flat, list(views)
    bucket.p_views = [p.detach().view(-1) for p in ps]
    bucket.ptrs = [p.data_ptr() for p in ps]


def flat_copy(
    tensors: list, dtype: torch.dtype, extra: int = 0, numel: int | None = None, same_dtype: bool | None = None
) -> torch.Tensor:
    """``tensors`` (a bucket's gradients, maybe its parameters) as one new 1-D tensor of ``dtype``, followed
    by ``extra`` elements of scratch in the same allocation: a step's transients are one buffer, because
    several buffers of megabytes freed together at the top of the heap make glibc return them to the OS
    every step (and fault them in again: measured 3-5x slower steps on CPU). ``numel`` (the tensors' total) and
    ``same_dtype`` (all of them are ``dtype``) skip counting where the caller knows."""
    if extra == 0:  # a single tensor flattens to a view of itself: copy, the caller overwrites the result
        flat = _flatten_dense_tensors(tensors) if len(tensors) > 1 else tensors[0].reshape(-1).clone()
        return flat if flat.dtype == dtype else flat.to(dtype)
    n = sum(t.numel() for t in tensors) if numel is None else numel
    same = all(t.dtype == dtype for t in tensors) if same_dtype is None else same_dtype
    if same and n + extra <= SMALL_FLAT_NUMEL:  # one C++ call; its scratch copy is a few kB
        return _flatten_dense_tensors(tensors + [torch.empty(extra, dtype=dtype, device=tensors[0].device)])
    work = torch.empty(n + extra, dtype=dtype, device=tensors[0].device)
    if same:
        torch.cat([t.reshape(-1) for t in tensors], out=work[:n])
    else:
        work[:n].copy_(_flatten_dense_tensors(tensors))
    return work
