"""Multi-tensor fast paths for the elementwise (diagonal) optimizers; not an optimizer itself.

Why: a diagonal step is memory-bound, and fused AdamW reads p, g and the state and writes p and the
state in one pass per tensor (28 B/param in fp32: the traffic floor). The readable reference step
makes one pass per elementwise op and pays PyTorch's dispatch per op *and per tensor*, which on real
models (50-60 tensors, most of them small) costs 3-5x fused AdamW.

How: the parameters with gradients of a param group are grouped into *buckets* (same device,
parameter, gradient and state dtype). A bucket's state lives in one flat buffer per state key (the
tensors in ``opt.state`` are views into it, so state bytes, ``state_dict`` and the reference step are
unchanged). A step concatenates the bucket's gradients (one copy), updates the flat state and computes
the direction, then adds it to the parameters with one ``_foreach_add_``:

- ``impl="multi_tensor"``: the reference's eager ops, each run once on the flat buffers (a dozen
  dispatches for any number of tensors); nothing is compiled.
- ``impl="compiled"``: one ``torch.compile`` pass over the flat buffers instead. Tensors of at least
  ``PER_TENSOR_MIN_NUMEL`` elements take a compiled pass of their own that reads and writes p and
  its state in place (AdamW's traffic: no gradient copy, no direction buffer), which pays back a
  compiled call's tens of microseconds of Python only for large tensors.

How recompiles are avoided: kernels take 1-D tensors marked dynamic, so every size shares one
compiled kernel per dtype combination; the learning rate, bias corrections and every other scalar
travel in one small tensor. Inductor's CPU kernels fix their OpenMP thread count when compiled (set
``torch.set_num_threads`` first).

``impl="auto"`` compiles where the optimizer holds at least ``AUTO_COMPILE_MIN_NUMEL`` elements and
compiling works, else it uses multi_tensor. Where compiling fails (no C++ compiler or Triton, an error
while compiling, ``ROOTBENCH_NO_COMPILE=1``) the optimizer warns once and uses multi_tensor;
``opt.impl_used`` and ``opt.impl_note`` say what ran and why. Sparse gradients and non-contiguous
parameters take the reference step.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch._utils import _flatten_dense_tensors  # one C++ call: cat of the tensors' 1-D views

from rootbench.optimizers._common import resolve_dtype

IMPLS = ("auto", "reference", "multi_tensor", "compiled")
ENV_DISABLE = "ROOTBENCH_NO_COMPILE"
# below this many parameter elements ``impl="auto"`` stays eager: compiling costs seconds, which a
# small model (already within ~10% of fused AdamW on the eager flat path) does not pay back
AUTO_COMPILE_MIN_NUMEL = 1 << 17
# tensors at least this large take a compiled pass of their own (per device type; others: "default").
# CPU, one thread: a compiled call costs 40-80 us of Python, the flat path's extra copies (gradient in,
# direction out: 11 instead of 7 passes over memory) cost about as much at 2**17-2**18 elements
# (measured: 2**18 beat 2**15-2**17 on the quick-tier models). On CUDA the call's host time stays the
# bottleneck up to far larger tensors (a guess: no GPU measured)
PER_TENSOR_MIN_NUMEL = {"cpu": 1 << 18, "default": 1 << 22}
# most elements per flat bucket: bounds the transient copies (gradient, direction) of a step
CHUNK_MAX_NUMEL = {"cpu": 1 << 20, "default": 1 << 24}


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
        f"impl={impl!r}: torch.compile (Inductor), one fused pass per flat bucket and per tensor "
        "of at least PER_TENSOR_MIN_NUMEL elements"
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


def per_tensor_min_numel(device: torch.device) -> int:
    return _by_device(PER_TENSOR_MIN_NUMEL, device)


def chunk_max_numel(device: torch.device) -> int:
    return _by_device(CHUNK_MAX_NUMEL, device)


class Kernel:
    """An in-place update of 1-D tensors of one size, compiled on first use, with its compile time.

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
        """Run the kernel on 1-D ``flats`` (all of one size, at least 2); returns the seconds spent
        compiling (0.0 once ``key`` is compiled). Only a first call marks the sizes dynamic: later calls
        of any size match the dynamic-shape graph's guards."""
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


@dataclass
class Bucket:
    """Parameters of one param group whose state lives in flat buffers: same device and dtypes.

    ``records`` are their state dicts, whose state tensors view ``states[key]``, the flat buffer of
    ``key``; ``views[key]`` are 1-D views of it per parameter, ``p_views`` 1-D views of the parameters
    (valid while ``ptrs`` match). ``compiled``: the flat update runs a compiled kernel.
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
    sizes: list = field(default_factory=list)

    def grads(self) -> list | None:
        """The gradients, or None where they no longer fit the bucket (dtype, layout, moved parameters)."""
        grads = [p.grad for p in self.params]
        if any(g.dtype is not self.grad_dtype or g.layout is not torch.strided for g in grads):
            return None
        if [p.data_ptr() for p in self.params] != self.ptrs:
            return None
        return grads


@dataclass
class Plan:
    """How one param group's parameters (those with gradients) take a step."""

    params: list
    layout: tuple  # the group settings the state layout depends on (state dtype, state keys)
    reference: list
    per_tensor: list
    buckets: list


class CompiledStepMixin:
    """The multi-tensor fast paths shared by the diagonal optimizers.

    Attributes: ``impl_used`` ("compiled", "multi_tensor" or "reference"), ``impl_note`` (why),
    ``compile_time_s`` (seconds this optimizer spent compiling, summed over first calls of each kernel
    signature). An optimizer provides ``_reference_update``, ``_state_keys(group)``,
    ``_init_state(p, group, dtype)`` (the reference's lazy state; returns the state dict),
    ``_bucket_tag(state)`` (what else members of a bucket must share), ``_flat_update(bucket, group,
    grads)`` and ``_tensor_update(p, group)`` (the compiled pass of one large tensor; False where it
    does not apply).
    """

    def _setup_impl(self, impl: str, optimizer: str) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        self.impl_used, self.impl_note = resolve_impl(impl, params, optimizer)
        self.compile_time_s = 0.0
        self._optimizer_name = optimizer
        self._flat_cache: dict = {}  # large parameter -> (its data_ptr, its state tensors, their 1-D views)
        self._plans: dict = {}  # param group index -> Plan

    def load_state_dict(self, state_dict: dict) -> None:
        self._flat_cache, self._plans = {}, {}  # the loaded state is new tensors: plan again
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
        """Sort ``params`` into reference / per-tensor / flat buckets, creating their state as the reference
        would; the buckets move their members' state into flat buffers (views stay in ``opt.state``)."""
        if old is not None:  # state leaves the old flat buffers first (they are freed once no view is left)
            for b in old.buckets:
                for record in b.records:
                    for k in b.states:
                        if k in record:
                            record[k] = record[k].clone()
        compiled = self.impl_used == "compiled"
        keys = self._state_keys(group)
        reference, per_tensor, members = [], [], {}
        for p in params:
            g = p.grad
            if g.layout != torch.strided or p.layout != torch.strided or g.shape != p.shape or not p.is_contiguous():
                reference.append(p)  # sparse gradients and strided parameters: only the reference
                continue
            dtype = resolve_dtype(group["state_dtype"], p)
            state = self._init_state(p, group, dtype)
            if compiled and p.numel() >= per_tensor_min_numel(p.device):
                per_tensor.append(p)
                continue
            members.setdefault((p.device, p.dtype, g.dtype, dtype, self._bucket_tag(state)), []).append(p)
        buckets = []
        for (device, _, grad_dtype, dtype, _), ps in members.items():
            for chunk in _chunks(ps, chunk_max_numel(device)):
                # a kernel needs at least 2 elements (sizes 0 and 1 would specialise its dynamic shape)
                use_kernel = compiled and sum(p.numel() for p in chunk) >= 2
                bucket = Bucket(chunk, grad_dtype, dtype, [self.state[p] for p in chunk], use_kernel)
                _make_flat(bucket, keys)
                buckets.append(bucket)
        return Plan(params, self._layout(group), reference, per_tensor, buckets)

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
        units = [[p] for p in plan.per_tensor] + [b.params for b in plan.buckets]
        done = 0
        try:
            for p in plan.per_tensor:
                if not self._tensor_update(p, group):  # e.g. a non-contiguous gradient
                    self._reference_update(p, group)
                done += 1
            for bucket, g in zip(plan.buckets, grads, strict=True):
                self._flat_update(bucket, group, g)
                done += 1
        except CompileFailed as e:  # raised before the failing unit wrote anything
            self.impl_used = "multi_tensor"
            self.impl_note = f"{self._optimizer_name}: {e}; using multi_tensor"
            warnings.warn(self.impl_note, RuntimeWarning, stacklevel=3)
            self._plans = {}  # the rest of this step, then every later one, plans without kernels
            left = self._multi_tensor_step(-1, group, [p for unit in units[done:] for p in unit])
            self._plans = {}
            return left + plan.reference
        return plan.reference

    def _flat_views(self, p: torch.Tensor, state_tensors: tuple) -> tuple | None:
        """1-D views of ``p`` and its state tensors, cached while they are the same tensors (the
        per-step Python work then is one gradient view); None where the kernel does not apply."""
        entry = self._flat_cache.get(p)
        if entry is not None and entry[0] == p.data_ptr() and _same(entry[1], state_tensors):
            return entry[2]
        n = p.numel()
        if not all(t.layout == torch.strided and t.is_contiguous() and t.numel() == n for t in (p,) + state_tensors):
            self._flat_cache.pop(p, None)
            return None
        flats = tuple(t.view(-1) for t in (p.detach(),) + state_tensors)
        self._flat_cache[p] = (p.data_ptr(), state_tensors, flats)
        return flats

    @staticmethod
    def _flat_grad(p: torch.Tensor) -> torch.Tensor | None:
        g = p.grad
        if g.layout != torch.strided or not g.is_contiguous() or g.shape != p.shape:
            return None
        return g.view(-1)

    def _run_kernel(self, kernel: Kernel, key, flats: tuple, scalars: torch.Tensor) -> None:
        """Run ``kernel``, adding any compile time; ``CompileFailed`` propagates (the step falls back)."""
        self.compile_time_s += kernel(key, flats, scalars)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


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
    for k in keys:
        flat = torch.empty(sum(bucket.sizes), dtype=bucket.dtype, device=ps[0].device)
        views = flat.split(bucket.sizes)
        for p, record, view in zip(ps, bucket.records, views, strict=True):
            view.copy_(record[k].reshape(-1))
            record[k] = view.view(p.shape)
        bucket.states[k], bucket.views[k] = flat, list(views)
    bucket.p_views = [p.detach().view(-1) for p in ps]
    bucket.ptrs = [p.data_ptr() for p in ps]


def flat_copy(tensors: list, dtype: torch.dtype, extra: int = 0) -> torch.Tensor:
    """``tensors`` (a bucket's gradients, maybe its parameters) as one new 1-D tensor of ``dtype``, followed
    by ``extra`` elements of scratch in the same allocation: a step's transients are one buffer, because
    several buffers of megabytes freed together at the top of the heap make glibc return them to the OS
    every step (and fault them in again: measured 3-5x slower steps on CPU)."""
    if extra == 0:  # a single tensor flattens to a view of itself: copy, the caller overwrites the result
        flat = _flatten_dense_tensors(tensors) if len(tensors) > 1 else tensors[0].reshape(-1).clone()
        return flat if flat.dtype == dtype else flat.to(dtype)
    n = sum(t.numel() for t in tensors)
    work = torch.empty(n + extra, dtype=dtype, device=tensors[0].device)
    if all(t.dtype == dtype for t in tensors):
        torch.cat([t.reshape(-1) for t in tensors], out=work[:n])
    else:
        work[:n].copy_(_flatten_dense_tensors(tensors))
    return work
