"""``rootbench bench-optim``: optimizer step time and memory against the hardware floor.

    rootbench bench-optim                                    # the default suite (below)
    rootbench bench-optim --opt rfadamw,rfrmsprop:momentum=0.9 --shape 1024x1024 --n-tensors 16 --dtype bf16
    rootbench bench-optim --opt ifshampoo,sirfshampoo,shampoo --shape 512x512 512 --n-tensors 2 --T 1,10
    rootbench bench-optim --task mnist1d-cnn cifar10-resnet cifar10-vit shakespeare-char-gpt --dtype fp32 bf16

A micro-benchmark of ``optimizer.step()`` alone. Every case builds
its parameters and gradients once per optimizer (same values), takes one untimed step (lazy state,
``torch.compile``: reported as ``first_step_s`` / ``compile_s``), then times all its optimizers
*interleaved* in ``--rounds`` rounds with ``torch.utils.benchmark.Timer.blocked_autorange``, next to
fused AdamW on the same parameters and a ``copy_``/``add_`` bandwidth probe, so machine noise hits all
alike. A round's time per step is the block median, or for periodic methods (those that declare a
``period_hparam``, timed at each ``--T``) the mean over whole periods of T steps; the reported step time
and every ratio is the median over rounds of the per-round value. For periodic methods the update and
regular steps are also timed one by one; which step of a period updates the preconditioner is measured
(the step that changes more of the optimizer's tensors than the others), not assumed.

Reported per optimizer: ms/step; the ratio to fused AdamW at the same dtype (``ratio_adamw``) and to
the case's named baseline (``ratio_baseline``); persistent state bytes per parameter
(``harness.measure.optimizer_state_bytes``, which also counts state kept outside ``opt.state``); the
transient peak per parameter (a fresh subprocess per optimizer with ``MALLOC_MMAP_THRESHOLD_=65536``:
RSS high-water mark above the RSS after the first step, over a period of further steps); for
diagonal methods (and SGD) the traffic floor (bytes read + written per parameter: p and every
param-sized state tensor twice, g once) and the achieved bandwidth against the ``add_``
probe; for periodic methods whose steps call ``torch.linalg.eigh`` (Shampoo) the share of their step spent
in it (NaN when no step called it).

The Kronecker floor (every Kronecker entry; ``--task`` runs every registered Kronecker method of a root / root-free
pair that is not a variant, plus ``--opt``, at its default period on the parameter shapes of a task's quick-tier
model): one whole period of steps is recorded below autograd (``harness/kron_floor.py``, ``GemmRecorder``: every
matrix multiply with its shape and dtype, every eigh input, the count of aten ops), giving the matrix-multiply FLOPs
per step amortised over T (``gemm_flops``, next to the optimizer's own analytic count ``matmul_flops()`` where it
declares one). In every timing round, right after the entry's timed block, those multiplies are replayed alone, one
``bmm`` per distinct shape and dtype batching all of that shape (the GEMM throughput at these shapes, here, now),
and the recorded matrices decomposed again by one batched eigh per size; ``achieved`` is the median over rounds of
(GEMM + eigh replay) / step time. ``gemm_calls`` and ``aten_ops`` times the cost of an empty call are the per-call
floors: where they approach the step time, tiny factors make call overhead, not FLOPs, the floor.

How a method is treated follows what it declares (``OptimizerSpec.preconditioner``, ``period_hparam``,
``needs_batch_size``), so an optimizer registered from outside the repository is benchmarked like the
built-in ones. ``--dtype`` is the optimizer's working precision: for diagonal methods parameters,
gradients and state (all bf16 for ``bf16``); for Kronecker methods the factor dtype
(``preconditioner_dtype``) with fp32 parameters, as in the paper. Kronecker methods run at SIRFShampoo's
defaults (``KRON_HP``, for the hyperparameters they have) with a strict period (``schedule="every_T"``
where a method has that knob).

``--device cuda`` puts parameters, gradients, state and the probes on a CUDA device: every wall-clock read
synchronises the device first, and the transient peak is the caching allocator's peak in this process
(``peak_kind`` "cuda_max_allocated").

Threads are fixed (``--threads``, default torch's) and recorded with the load average. On a busy
machine multi-threaded timings mostly measure waits at OpenMP barriers (a thread descheduled for a
scheduler tick stalls every parallel op); ``--threads 1`` then compares the work itself.

Results: ``<runs>/bench-optim/<time>-<hash>.parquet`` (written atomically by the results store, with
provenance columns) and a printed table. ``sirfshampoo`` (the authors' package, a test dependency) can be
named as an optimizer: an external reference entry (``EXTERNAL``) that declares the same capabilities and
takes rootbench's hyperparameter names (SIRFShampoo's own names mapped by ``SIRF_NAMES``), with an int T.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import hashlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from rootbench.harness import records
from rootbench.harness.kron_floor import FLOOR_COLUMNS, floor_columns, record_floor
from rootbench.harness.registry import UsageError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE_KNOBS = {"fp32": "float32", "bf16": "bfloat16"}
BATCH_SIZE = 128  # B for the root-free methods (the examples a loss is averaged over)
# Kronecker methods run at SIRFShampoo's defaults, so IF-Shampoo and the authors' package are timed in one
# configuration; each method gets those of these (conventional) hyperparameter names it has
KRON_HP = dict(lr=1e-3, lr_cov=1e-2, momentum=0.9, riemannian_momentum=0.5, damping=1e-3)
# a strict period of T steps (IF-Shampoo's default warm-up updates more often early on, so the blocks
# of T steps would not be whole periods)
PERIODIC_HP = dict(schedule="every_T")
FACTOR_DTYPE_HPARAM = "preconditioner_dtype"  # the conventional knob for the dtype of Kronecker factors


# ---------------------------------------------------------------------------------------------
# optimizers benchmarked for reference but not registered


@dataclass(frozen=True)
class ExternalOptimizer:
    """An optimizer from an installed package, benchmarked for reference but not registered. It declares the
    capabilities an ``OptimizerSpec`` declares, so every code path here treats it through them; ``factory``
    takes (name, parameter) pairs and hyperparameters in rootbench's names (``defaults``)."""

    name: str
    package: str  # must be importable to use this entry
    factory: Callable
    defaults: dict
    preconditioner: str
    period_hparam: str | None = None
    needs_batch_size: bool = False
    family: str = "other"

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None


SIRF_NAMES = {
    "lr_cov": "beta2",
    "momentum": "alpha1",
    "riemannian_momentum": "alpha2",
    "damping": "lam",
    "weight_decay": "kappa",
    "preconditioner_dtype": "preconditioner_dtypes",
}  # rootbench -> SIRFShampoo
TORCH_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


def _sirfshampoo(named: list, **hparams):
    """SIRFShampoo (the authors' package) on ``named`` parameters, held by a module as its API needs."""
    import sirfshampoo

    holder = torch.nn.Module()
    for i, (_, p) in enumerate(named):
        holder.register_parameter(f"p{i}", p)
    hp = {SIRF_NAMES.get(k, k): v for k, v in hparams.items()}
    dtype = hp.get("preconditioner_dtypes", "param")
    if dtype != "param" and dtype not in TORCH_DTYPES:
        raise UsageError(f"sirfshampoo: preconditioner_dtype={dtype!r}; valid: param, {', '.join(TORCH_DTYPES)}")
    hp["preconditioner_dtypes"] = None if dtype == "param" else TORCH_DTYPES[dtype]  # None: the parameters' dtype
    return sirfshampoo.SIRFShampoo(holder, **hp)


EXTERNAL = {
    "sirfshampoo": ExternalOptimizer(
        "sirfshampoo",
        "sirfshampoo",
        _sirfshampoo,
        preconditioner="kronecker",
        period_hparam="T",
        needs_batch_size=True,
        family="shampoo",
        defaults={**KRON_HP, "weight_decay": 0.0, "T": 1, "preconditioner_dtype": "param", "structures": "dense"},
    ),
}


def capabilities(name: str):
    """What ``name`` declares (preconditioner, period_hparam, needs_batch_size, defaults): its ``OptimizerSpec``,
    or the external reference entry of that name. Unknown names raise ``UsageError`` with close matches."""
    if name in EXTERNAL:
        return EXTERNAL[name]
    from rootbench.optimizers import get_optimizer_spec

    return get_optimizer_spec(name)


def kronecker(name: str) -> bool:
    return capabilities(name).preconditioner == "kronecker"


# ---------------------------------------------------------------------------------------------
# cases


@dataclass
class Entry:
    """One optimizer configuration in a case; ``T`` (the value of its ``period_hparam``) set for periodic methods."""

    name: str
    hparams: dict = field(default_factory=dict)
    T: int | None = None
    baseline: str | None = None  # the label of the entry it is compared with
    param_dtype: str | None = None  # overrides the case's choice (fused AdamW in Kronecker cases: fp32)

    @property
    def label(self) -> str:
        bits = [f"{k}={v}" for k, v in sorted(self.hparams.items())]
        return self.name + (f"[{','.join(bits)}]" if bits else "") + (f" T={self.T}" if self.T else "")


@dataclass
class Case:
    """Parameters (``shapes``, or the fixed ``mlp512`` model) at one dtype and the entries timed on them."""

    name: str
    dtype: str
    entries: list
    shapes: list = field(default_factory=list)
    model: str | None = None  # "mlp512": Linear(512, 512) -> tanh -> Linear(512, 512), gradients of a batch of 128
    names: list = field(default_factory=list)  # parameter names for ``shapes`` (a task's model); default p0, p1, ...
    task: str | None = None  # the task whose quick-tier model gave ``shapes`` (``--task``)
    device: str = "cpu"  # where parameters, gradients, state and the probes live (``--device``)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "entries": [asdict(e) for e in self.entries]})

    @staticmethod
    def from_json(blob: str) -> Case:
        d = json.loads(blob)
        d["entries"] = [Entry(**e) for e in d["entries"]]
        return Case(**d)


def default_suite() -> list:
    """The acceptance cases: diagonal methods at the traffic floor, IF-Shampoo vs the authors' package,
    IF-Shampoo (bf16) vs Shampoo (fp32, eigh) on one 1024x1024 weight."""
    cases = []
    for dt in ("fp32", "bf16"):  # 16 x 1024^2 = 16.8M parameters; rfrmsprop with momentum, like AdamW's two buffers
        cases.append(
            Case(
                f"diag-16x1024x1024-{dt}",
                dt,
                shapes=[[1024, 1024]] * 16,
                entries=[Entry("rfadamw"), Entry("rfrmsprop", {"momentum": 0.9}), Entry("sgd", {"impl": "fused"})],
            )
        )
    have_sirf = EXTERNAL["sirfshampoo"].available()
    for dt in ("fp32", "bf16"):
        entries = []
        for T in (1, 10):
            sirf = Entry("sirfshampoo", T=T)
            entries.append(Entry("ifshampoo", T=T, baseline=sirf.label if have_sirf else None))
            if have_sirf:
                entries.append(sirf)
        cases.append(Case(f"mlp512-b128-{dt}", dt, model="mlp512", entries=entries))
    shampoo = Entry("shampoo", {"preconditioner_dtype": "float32"}, T=1)
    cases.append(
        Case(
            "square1024-ifbf16-vs-shampoo-fp32",
            "bf16",
            shapes=[[1024, 1024]],
            entries=[Entry("ifshampoo", T=1, baseline=shampoo.label), shampoo],
        )
    )
    return cases


# ---------------------------------------------------------------------------------------------
# building parameters and optimizers (shared by the parent and the peak-memory subprocesses)


def param_dtype(case: Case, entry: Entry) -> torch.dtype:
    """fp32 parameters for Kronecker methods (``--dtype`` is their factor dtype), else the case's dtype."""
    if entry.param_dtype:
        return DTYPES[entry.param_dtype]
    return torch.float32 if kronecker(entry.name) else DTYPES[case.dtype]


def build_params(case: Case, dtype: torch.dtype, seed: int = 0) -> list:
    """(name, parameter with .grad) pairs; the same values for every call with the same arguments."""
    g = torch.Generator().manual_seed(seed)
    if case.model == "mlp512":
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Tanh(), torch.nn.Linear(512, 512))
        x = torch.randn(BATCH_SIZE, 512, generator=g)
        model(x).square().mean().backward()  # a mean over the batch, as the root-free methods assume
        named = [
            (f"mlp.{n}", torch.nn.Parameter(p.detach().to(device=case.device, dtype=dtype)))
            for n, p in model.named_parameters()
        ]
        for (_, q), p in zip(named, model.parameters()):
            q.grad = p.grad.to(device=case.device, dtype=dtype)
        return named
    named = []
    for i, shape in enumerate(case.shapes):
        p = torch.nn.Parameter((torch.randn(shape, generator=g) * 0.02).to(device=case.device, dtype=dtype))
        p.grad = (torch.randn(shape, generator=g) * 1e-3).to(device=case.device, dtype=dtype)
        named.append((case.names[i] if case.names else f"p{i}", p))
    return named


def benchmark_hparams(case: Case, entry: Entry) -> dict:
    """The hyperparameters ``entry`` runs with: for Kronecker methods ``KRON_HP`` and the factor dtype, for
    periodic ones the period (``period_hparam`` = T) and a strict schedule, then the entry's own; only those the
    method has, plus B where it declares it needs one."""
    caps = capabilities(entry.name)
    hp = {}
    if caps.preconditioner == "kronecker":
        hp = dict(KRON_HP, momentum_dtype="param")  # the momentum buffer follows the (fp32) parameters
        hp[FACTOR_DTYPE_HPARAM] = DTYPE_KNOBS[case.dtype]
    if entry.T is not None:
        if caps.period_hparam is None:
            raise UsageError(f"{entry.name} declares no preconditioner period; it cannot run at T={entry.T}")
        hp.update(PERIODIC_HP)
        hp[caps.period_hparam] = entry.T
    hp.update(entry.hparams)
    hp = {k: v for k, v in hp.items() if k in caps.defaults}
    if caps.needs_batch_size:
        hp["batch_size"] = BATCH_SIZE
    return hp


def build_optimizer(case: Case, entry: Entry, named: list):
    """The optimizer of ``entry`` on ``named`` parameters (--dtype mapped onto its dtype knobs)."""
    from rootbench.optimizers import create_optimizer

    hp = benchmark_hparams(case, entry)
    if entry.name in EXTERNAL:
        return EXTERNAL[entry.name].factory(named, **hp)
    return create_optimizer(entry.name, named, **hp)


def traffic_floor(opt, named: list, diagonal: bool) -> float:
    """Bytes read + written per parameter by one fused pass of a diagonal method: p (read, write),
    g (read) and every parameter-sized state tensor (read, write); NaN for Kronecker methods."""
    if not diagonal:
        return float("nan")
    total = 0
    n = 0
    for _, p in named:
        state = opt.state.get(p, {})
        tensors = [v for v in state.values() if torch.is_tensor(v) and v.numel() > 1]
        if any(v.numel() != p.numel() for v in tensors):
            return float("nan")
        total += p.numel() * (2 * p.element_size() + p.grad.element_size() + sum(2 * v.element_size() for v in tensors))
        n += p.numel()
    return total / n if n else float("nan")


# ---------------------------------------------------------------------------------------------
# timing


def _sync(device) -> None:
    """Wait for ``device``'s queued kernels, so a wall clock read after it times them (CUDA runs asynchronously;
    ``torch.utils.benchmark.Timer`` synchronises by itself)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _device_of(opt) -> torch.device:
    return opt.param_groups[0]["params"][0].device


def _stmt(T: int | None) -> str:
    return "opt.step()" if not T or T == 1 else f"for _ in range({T}): opt.step()"


def _time_block(opt, T: int | None, min_run_time: float) -> float:
    """Seconds per step: block median, or for periodic methods the mean over whole periods."""
    from torch.utils.benchmark import Timer

    # Timer runs single-threaded unless told otherwise: keep the threads the case fixed
    m = Timer(_stmt(T), globals={"opt": opt}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time
    )
    return (m.mean if T and T > 1 else m.median) / (T or 1)


def _held_tensors(opt) -> dict:
    """Every tensor the optimizer holds, by its path from the optimizer object: ``opt.state`` and state kept in
    other attributes (stacked buckets, SIRFShampoo's factor lists); parameters and gradients excluded."""
    skip = set()
    for group in opt.param_groups:
        for p in group["params"]:
            skip.add(p.untyped_storage().data_ptr())
            if p.grad is not None:
                skip.add(p.grad.untyped_storage().data_ptr())
    found, seen = {}, set()

    def walk(obj, path):
        if isinstance(obj, torch.Tensor):
            if obj.untyped_storage().data_ptr() not in skip:
                found[path] = obj
            return
        if id(obj) in seen or len(path) > 12:
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():  # opt.state is keyed by parameters: the same objects at every call
                walk(v, path + ((("id", id(k)) if isinstance(k, torch.Tensor) else k),))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, path + (i,))
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)) and not callable(obj):
            walk(vars(obj), path)

    walk({k: v for k, v in vars(opt).items() if k not in ("param_groups", "defaults")}, ())
    return found


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True))  # exact, NaN equal to NaN
    return torch.equal(a, b)


def update_phase(opt, T: int) -> int | None:
    """Which step of the next period of T steps updates the preconditioner, measured: T untimed steps, each
    counting the optimizer's tensors it changes; the update step changes the most (the factors or roots besides
    what every step changes: momentum, statistics). None when no single step stands out."""
    if T == 1:
        return 0
    changed = []
    for _ in range(T):
        before = {path: t.detach().clone() for path, t in _held_tensors(opt).items()}
        opt.step()
        after = _held_tensors(opt)
        changed.append(
            sum(
                1
                for path in before.keys() | after.keys()
                if path not in before or path not in after or not _same(before[path], after[path])
            )
        )
    most = max(changed)
    return changed.index(most) if changed.count(most) == 1 else None


@contextlib.contextmanager
def eigh_clock():
    """Count and time the calls of ``torch.linalg.eigh`` made while active (``{"calls", "seconds"}``)."""
    clock, real_eigh = {"calls": 0, "seconds": 0.0}, torch.linalg.eigh

    def timed_eigh(*args, **kwargs):
        device = args[0].device if args and torch.is_tensor(args[0]) else "cpu"
        _sync(device)
        t0 = time.perf_counter()
        try:
            return real_eigh(*args, **kwargs)
        finally:
            _sync(device)
            clock["calls"] += 1
            clock["seconds"] += time.perf_counter() - t0

    torch.linalg.eigh = timed_eigh
    try:
        yield clock
    finally:
        torch.linalg.eigh = real_eigh


def _split_steps(opt, T: int, periods: int = 3, phase: int | None = None) -> dict:
    """Time update and regular steps one by one over whole periods (``phase``: which step of a period updates,
    from ``update_phase``; probed now when not given), and the share of that time spent in ``torch.linalg.eigh``
    (NaN when no step called it)."""
    if phase is None:
        phase = update_phase(opt, T)  # the probe took T steps: the timed steps start at the same phase
    update, regular = [], []
    device = _device_of(opt)
    with eigh_clock() as eigh:
        _sync(device)
        t_all = time.perf_counter()
        for i in range(periods * T):
            t0 = time.perf_counter()
            opt.step()
            _sync(device)
            (update if i % T == phase else regular).append(time.perf_counter() - t0)
        t_all = time.perf_counter() - t_all
    med = lambda xs: statistics.median(xs) if xs and phase is not None else float("nan")  # noqa: E731
    return {
        "update_step_s": med(update),
        "regular_step_s": med(regular),
        "eigh_share": eigh["seconds"] / t_all if eigh["calls"] else float("nan"),
    }


def _probe(n: int, min_run_time: float, device="cpu") -> dict:
    """Bandwidth of ``add_`` (2 reads + 1 write) and ``copy_`` (1 read + 1 write) on n fp32 elements."""
    from torch.utils.benchmark import Timer

    n = max(n, 1 << 22)
    x, y, threads = torch.randn(n, device=device), torch.randn(n, device=device), torch.get_num_threads()
    t_add = (
        Timer("x.add_(y)", globals={"x": x, "y": y}, num_threads=threads)
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )
    t_copy = (
        Timer("x.copy_(y)", globals={"x": x, "y": y}, num_threads=threads)
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )
    return {"add": 12 * n / t_add, "copy": 8 * n / t_copy}


def run_case(case: Case, rounds: int, min_run_time: float, log=print) -> list:
    """Time every entry of ``case`` interleaved with fused AdamW; one row per entry."""
    from rootbench.harness import measure

    adamw = adamw_entry(case)
    entries = [adamw] + list(case.entries)
    built = []
    for e in entries:
        named = build_params(case, param_dtype(case, e))
        t0 = time.perf_counter()
        opt = build_optimizer(case, e, named)
        opt.step()  # untimed first step: lazy state, compilation
        _sync(case.device)
        first = time.perf_counter() - t0
        # Kronecker methods: one period recorded for the floor, its replays timed right after each timed block
        floor = record_floor(opt, e.T or 1) if capabilities(e.name).preconditioner == "kronecker" else None
        # which step of a period updates, probed now, while the state still moves: after the timed blocks (many
        # steps on one fixed gradient) low-precision factors can stop changing and no step would stand out;
        # every later block runs whole periods, so the phase holds
        phase = update_phase(opt, e.T) if e.T else None
        built.append(
            {
                "entry": e,
                "named": named,
                "opt": opt,
                "first": first,
                "phase": phase,
                "times": [],
                "floor": floor,
                "n": sum(p.numel() for _, p in named),
            }
        )
        log(f"  {case.name}: {e.label} built, first step {first:.2f} s")
    n_params = built[0]["n"]
    probes = []
    for r in range(rounds):  # interleaved; the order rotates so no entry always runs after the same one
        order = built[r % len(built) :] + built[: r % len(built)]
        for b in order:
            b["times"].append(_time_block(b["opt"], b["entry"].T, min_run_time))
            if b["floor"] is not None:
                b["floor"].time(min_run_time)
        probes.append(_probe(n_params, min_run_time / 2, case.device))
    bw_add = statistics.median(p["add"] for p in probes)
    bw_copy = statistics.median(p["copy"] for p in probes)
    ref_times = built[0]["times"]
    labels = {b["entry"].label: b for b in built}
    rows = []
    for b in built:
        e, opt, named = b["entry"], b["opt"], b["named"]
        split = _split_steps(opt, e.T, periods=2, phase=b["phase"]) if e.T else {}
        step_s = statistics.median(b["times"])
        base = labels.get(e.baseline) if e.baseline else None
        caps = capabilities(e.name)
        floor = traffic_floor(opt, named, diagonal=caps.preconditioner != "kronecker")
        finite = all(bool(torch.isfinite(p).all()) for _, p in named)
        row = {
            "case": case.name,
            "task": case.task or "",
            "device": str(named[0][1].device),
            "optimizer": e.name,
            "label": e.label,
            "hparams": json.dumps(e.hparams, sort_keys=True),
            "preconditioner": caps.preconditioner,
            "family": caps.family,
            "dtype": case.dtype,
            "param_dtype": str(named[0][1].dtype).replace("torch.", ""),
            "T": e.T if e.T else 1,
            "n_tensors": len(named),
            "n_params": b["n"],
            "shapes": json.dumps([list(p.shape) for _, p in named]) if not case.model else case.model,
            "impl": measure.optimizer_impl(opt),
            "step_time_s": step_s,
            "step_time_min_s": min(b["times"]),
            "step_time_max_s": max(b["times"]),
            "rounds": rounds,
            "ratio_adamw": statistics.median(t / a for t, a in zip(b["times"], ref_times)),
            "baseline": e.baseline or "",
            "ratio_baseline": (
                statistics.median(t / a for t, a in zip(b["times"], base["times"])) if base else float("nan")
            ),
            "update_step_s": split.get("update_step_s", float("nan")),
            "regular_step_s": split.get("regular_step_s", float("nan")),
            "eigh_share": split.get("eigh_share", float("nan")),
            "first_step_s": b["first"],
            "compile_s": float(getattr(opt, "compile_time_s", 0.0)),
            "state_bytes": measure.optimizer_state_bytes(opt),
            "traffic_floor_bytes_per_param": floor,
            "achieved_GBps": floor * b["n"] / step_s / 1e9 if not math.isnan(floor) else float("nan"),
            "probe_add_GBps": bw_add / 1e9,
            "probe_copy_GBps": bw_copy / 1e9,
            "ratio_floor": step_s / (floor * b["n"] / bw_add) if not math.isnan(floor) else float("nan"),
            "finite": finite,
        }
        row["state_bytes_per_param"] = row["state_bytes"] / b["n"]
        if b["floor"] is not None:
            row.update(floor_columns(b["floor"], b["times"], min_run_time))
        rows.append(row)
    del built
    gc.collect()
    return rows


def adamw_entry(case: Case) -> Entry:
    """Fused AdamW on the parameters the case's other entries use (fp32 in Kronecker cases)."""
    all_kronecker = all(kronecker(e.name) for e in case.entries)
    return Entry("adamw", {"impl": "fused"}, param_dtype="fp32" if all_kronecker else case.dtype)


# ---------------------------------------------------------------------------------------------
# transient peak: one fresh process per entry

PEAK_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # large temporaries are mmapped, so RSS falls when they are freed


def peak_on_cuda(case: Case, entry: Entry) -> dict:
    """Transient bytes per parameter on a CUDA device: the caching allocator's peak over 2 periods of steps above
    what is allocated after the first steps (in this process: the allocator counts what the optimizer holds,
    not what the process maps)."""
    named = build_params(case, param_dtype(case, entry))
    opt = build_optimizer(case, entry, named)
    opt.step()
    opt.step()
    device = named[0][1].device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    for _ in range(2 * (entry.T or 1) + 1):
        opt.step()
    torch.cuda.synchronize(device)
    transient = max(0, torch.cuda.max_memory_allocated(device) - before)
    n = sum(p.numel() for _, p in named)
    del opt, named
    torch.cuda.empty_cache()
    return {"peak_bytes_per_param": transient / n, "peak_bytes": transient, "peak_kind": "cuda_max_allocated"}


def peak_in_subprocess(case: Case, entry: Entry, threads: int, timeout: float = 600) -> dict:
    """Transient bytes per parameter above the post-first-step RSS over 2 periods of steps. The child loads
    optimizers as any process does (ROOTBENCH_OPTIMIZERS, entry points); one registered only in this process
    is unknown there and gives ``peak_kind`` "error: ..."."""
    one = Case(case.name, case.dtype, [entry], shapes=case.shapes, model=case.model)
    path = os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **PEAK_ENV, "PYTHONPATH": path}
    code = (
        "import sys; from rootbench.harness.bench_optim import _peak_child; _peak_child(sys.argv[1], int(sys.argv[2]))"
    )
    cmd = [sys.executable, "-c", code, one.to_json(), str(threads)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=_root())
    except subprocess.TimeoutExpired:
        return {"peak_kind": "timeout"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"peak_kind": "error: " + (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_child(case_json: str, threads: int) -> None:
    from rootbench.harness import measure

    torch.set_num_threads(threads)
    case = Case.from_json(case_json)
    entry = case.entries[0]
    named = build_params(case, param_dtype(case, entry))
    opt = build_optimizer(case, entry, named)
    opt.step()  # state allocated (and written: lazily zeroed pages are resident) and kernels compiled
    opt.step()
    gc.collect()
    resettable = measure.reset_cpu_peak()
    before = measure.cpu_current_bytes()
    hwm_before = measure.cpu_peak_bytes()
    for _ in range(2 * (entry.T or 1) + 1):  # whole periods, so an update step is included
        opt.step()
    peak = measure.cpu_peak_bytes()
    n = sum(p.numel() for _, p in named)
    if resettable:
        transient, kind = max(0, peak - before), "rss_hwm_reset"
    elif peak > hwm_before:
        transient, kind = peak - before, "ru_maxrss"
    else:  # the high-water mark was set before stepping and cannot be reset here
        transient, kind = float("nan"), "ru_maxrss_unresolved"
    print(json.dumps({"peak_bytes_per_param": transient / n, "peak_bytes": transient, "peak_kind": kind}))


# ---------------------------------------------------------------------------------------------
# output


def write_results(rows: list, runs: str, tag: str) -> str:
    """Write ``<runs>/bench-optim/<UTC time>-<hash>.parquet`` through the results store (atomic); returns the path."""
    import pandas as pd

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(tag.encode()).hexdigest()[:8]
    path = os.path.join(runs, records.BENCH_OPTIM_DIR, f"{stamp}-{digest}.parquet")
    return records.write_table(pd.DataFrame(rows), path)


def _f(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_table(rows: list) -> str:
    head = (
        f"{'case':<34} {'optimizer':<40} {'impl':<9} {'ms/step':>8} {'xAdamW':>6} {'xBase':>6} {'upd ms':>7} "
        f"{'reg ms':>7} {'state B/p':>9} {'peak B/p':>8} {'floor B/p':>9} {'GB/s':>5} {'xfloor':>6} "
        f"{'compile s':>9} {'eigh':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['case'][:34]:<34} {r['label'][:40]:<40} {r['impl'][:9]:<9} {_f(r['step_time_s'] * 1e3, '8.2f')} "
            f"{_f(r['ratio_adamw'], '6.2f')} {_f(r['ratio_baseline'], '6.2f')} "
            f"{_f(r['update_step_s'] * 1e3, '7.2f')} {_f(r['regular_step_s'] * 1e3, '7.2f')} "
            f"{_f(r['state_bytes_per_param'], '9.2f')} {_f(r.get('peak_bytes_per_param'), '8.2f')} "
            f"{_f(r['traffic_floor_bytes_per_param'], '9.0f')} {_f(r['achieved_GBps'], '5.1f')} "
            f"{_f(r['ratio_floor'], '6.2f')} {_f(r['compile_s'], '9.1f')} {_f(r['eigh_share'], '5.2f')}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# command line


def format_floor_table(rows: list) -> str:
    """The Kronecker floor per row that has one: FLOPs, GEMM throughput at the shapes, achieved fraction."""
    head = (
        f"{'case':<28} {'optimizer':<24} {'ms/step':>8} {'xAdamW':>6} {'GFLOP/st':>8} {'analytic':>8} "
        f"{'gemm dtype':>15} {'GFLOP/s':>7} {'floor ms':>8} {'eigh ms':>7} {'achieved':>8} {'eigh shr':>8} "
        f"{'calls':>6} {'call ms':>7} {'ops':>6} {'op ms':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not math.isfinite(r.get("gemm_flops", float("nan"))):
            continue
        lines.append(
            f"{r['case'][:28]:<28} {r['label'][:24]:<24} {_f(r['step_time_s'] * 1e3, '8.2f')} "
            f"{_f(r['ratio_adamw'], '6.1f')} {_f(r['gemm_flops'] / 1e9, '8.4f')} "
            f"{_f(r['gemm_flops_analytic'] / 1e9, '8.4f')} {r['gemm_dtypes'][:15]:>15} {_f(r['gemm_GFLOPs'], '7.1f')} "
            f"{_f(r['gemm_floor_s'] * 1e3, '8.3f')} {_f(r['eigh_floor_s'] * 1e3, '7.2f')} "
            f"{_f(r['achieved'], '8.2f')} {_f(r['eigh_share'], '8.2f')} {_f(r['gemm_calls'], '6.0f')} "
            f"{_f(r['gemm_call_floor_s'] * 1e3, '7.3f')} {_f(r['aten_ops'], '6.0f')} "
            f"{_f(r['op_call_floor_s'] * 1e3, '6.2f')}"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def parse_opt(spec: str) -> tuple[str, dict]:
    """``name[:key=value[:key=value]]`` -> (name, hparams); values parsed as Python literals."""
    import ast

    name, *pairs = spec.split(":")
    hp = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--opt {spec!r}: expected name:key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            hp[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            hp[key] = value
    return name.strip(), hp


def parse_shape(text: str) -> list:
    try:
        shape = [int(x) for x in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--shape {text!r}: expected sizes joined by 'x', e.g. 1024x1024 or 512") from None
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"--shape {text!r}: sizes must be positive")
    return shape


def task_parameters(task: str) -> tuple[list, list]:
    """(names, shapes) of the trainable parameters of ``task``'s quick-tier model, built without reading data: a
    tier that names a data set is built on the synthetic stand-in (shapes then follow the tier config; a
    vocabulary-sized axis takes the stand-in's vocabulary, 65 = tinyshakespeare's alphabet)."""
    from rootbench.tasks import create_task, get_task_spec

    config = get_task_spec(task).tiers["quick"]
    overrides = {"dataset": "synthetic"} if hasattr(config, "dataset") else {}
    model = create_task(task, "quick", **overrides).build_model()
    named = [(n, list(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [s for _, s in named]


def default_period(name: str) -> int:
    caps = capabilities(name)
    T = caps.defaults.get(caps.period_hparam) if caps.period_hparam else None
    return T if isinstance(T, int) and not isinstance(T, bool) and T >= 1 else 1


def kronecker_names() -> list:
    """Every registered Kronecker optimizer of a root / root-free pair (the question this floor answers) that is
    not a variant of another (a variant's ``parent`` runs the same update; ``KRON_HP`` and the strict period
    override what a variant changes). Others, such as the zoo's, join with ``--opt``."""
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    specs = [get_optimizer_spec(n) for n in list_optimizers()]
    return [s.name for s in specs if s.preconditioner == "kronecker" and s.parent is None and s.pair is not None]


def task_cases(args, specs: list) -> list:
    """One case per --task and --dtype: the Kronecker optimizers (``kronecker_names``) and those named with --opt,
    each at --T or its own default period, on the shapes of the task's quick-tier model."""
    named = {(n, json.dumps(hp, sort_keys=True)): (n, hp) for n, hp in [(n, {}) for n in kronecker_names()] + specs}
    cases = []
    for task in args.task:
        names, shapes = task_parameters(task)
        for dt in args.dtype:
            entries = []
            for name, hp in named.values():
                periods = (_periods(args) or [default_period(name)]) if capabilities(name).period_hparam else [None]
                entries += [Entry(name, hp, T=T) for T in periods]
            cases.append(Case(f"{task}-{dt}", dt, entries, shapes=shapes, names=names, task=task))
    return cases


def _periods(args) -> list:
    Ts = sorted({int(t) for chunk in (args.T or []) for t in str(chunk).split(",") if t.strip()})
    if any(t < 1 for t in Ts):
        raise UsageError("--T values must be positive integers")
    return Ts


def _check_specs(specs: list, dtypes: list) -> None:
    for name, hp in specs:
        caps = capabilities(name)  # unknown names raise with close matches
        if name in EXTERNAL and not EXTERNAL[name].available():
            raise UsageError(f"{name} is not installed (pip install -e '.[test]')")
        unknown = sorted(set(hp) - set(caps.defaults))
        if unknown:
            raise UsageError(f"--opt {name}: unknown hyperparameter(s) {unknown}")
        if (
            caps.preconditioner == "kronecker"
            and set(dtypes) != {"fp32"}
            and FACTOR_DTYPE_HPARAM not in hp
            and FACTOR_DTYPE_HPARAM not in caps.defaults
        ):  # the row would claim a factor dtype that never ran
            raise UsageError(
                f"--dtype {' '.join(dtypes)}: {name} has no {FACTOR_DTYPE_HPARAM} hyperparameter "
                "to run its Kronecker factors in that dtype; use --dtype fp32"
            )


def cases_from_args(args) -> list:
    """The default suite, one case per --task and dtype, or one custom case per dtype from
    --opt/--shape/--n-tensors/--T."""
    if getattr(args, "task", None):
        if args.shape or args.case:
            raise UsageError("--task takes its shapes from the task's model; it cannot be combined with --shape/--case")
        specs = [parse_opt(s) for s in (args.opt or "").split(",") if s.strip()]
        _check_specs(specs, args.dtype)
        return task_cases(args, specs)
    if not args.opt and not args.shape:
        cases = [c for c in default_suite() if not args.case or any(k in c.name for k in args.case)]
        if not cases:
            raise UsageError(
                f"--case {' '.join(args.case)} matches none of the default cases: "
                f"{', '.join(c.name for c in default_suite())}"
            )
        return cases
    if args.case:
        raise UsageError("--case selects default cases; it cannot be combined with --opt/--shape")
    specs = [parse_opt(s) for s in (args.opt or "rfadamw,rfrmsprop:momentum=0.9").split(",") if s.strip()]
    _check_specs(specs, args.dtype)
    shapes = [parse_shape(s) for s in (args.shape or ["1024x1024"])]
    Ts = _periods(args) or [1]
    cases = []
    for dt in args.dtype:
        entries = []
        for name, hp in specs:
            for T in Ts if capabilities(name).period_hparam else [None]:
                entries.append(Entry(name, hp, T=T))
        tensor_shapes = [s for _ in range(args.n_tensors) for s in shapes]
        cases.append(
            Case(
                f"custom-{args.n_tensors}x{'+'.join('x'.join(map(str, s)) for s in shapes)}-{dt}",
                dt,
                entries,
                shapes=tensor_shapes,
            )
        )
    return cases


def check_device(name: str) -> torch.device:
    """``--device`` as a torch device that exists here (a usage error otherwise)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: bench-optim runs on cpu or cuda")
    return device


def cmd_bench_optim(args) -> int:
    from rootbench.harness.provenance import provenance

    if args.n_tensors < 1 or args.rounds < 1 or args.min_run_time <= 0:
        raise UsageError("--n-tensors and --rounds must be positive, --min-run-time > 0")
    device = check_device(args.device)
    cases = cases_from_args(args)
    for case in cases:
        case.device = str(device)
    records.check_writable(os.path.join(args.runs, records.BENCH_OPTIM_DIR))  # fail now, not after the timing
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    log(f"bench-optim: {len(cases)} case(s) on {device}, {threads} thread(s), load average {load_start:.2f}")
    prov = provenance(device)
    rows = []
    for case in cases:
        case_rows = run_case(case, args.rounds, args.min_run_time, log)
        if not args.no_peak:
            measured = {}  # the peak does not depend on T (a child steps through an update either way)
            for entry, row in zip([adamw_entry(case)] + list(case.entries), case_rows):
                key = (entry.name, json.dumps(entry.hparams, sort_keys=True), entry.param_dtype)
                if key not in measured:
                    log(f"  {case.name}: {entry.label} peak memory (fresh process)")
                    measured[key] = (
                        peak_on_cuda(case, entry)
                        if torch.device(case.device).type == "cuda"
                        else peak_in_subprocess(case, entry, threads)
                    )
                row.update(measured[key])
        rows += case_rows
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for r in rows:
        r.setdefault("peak_bytes_per_param", float("nan"))
        r.setdefault("peak_bytes", float("nan"))
        r.setdefault("peak_kind", "skipped")
        for col in FLOOR_COLUMNS:
            r.setdefault(col, float("nan"))
        r.setdefault("gemm_dtypes", "")
        r.update(prov, threads=threads, load_avg_start=load_start, load_avg_end=load_end)
    path = write_results(rows, args.runs, json.dumps(vars(args), sort_keys=True, default=str) + prov["started_at"])
    print(format_table(rows))
    floor = format_floor_table(rows)
    if floor:
        print(
            "\nKronecker floor (per step, amortised over T: the period's matrix multiplies replayed alone as one "
            "bmm per shape; achieved = (GEMM + eigh floor) / step)\n" + floor
        )
    print(
        f"\n{threads} thread(s); load average {load_start:.2f} -> {load_end:.2f}; "
        f"add_ bandwidth {statistics.median(r['probe_add_GBps'] for r in rows):.1f} GB/s; wrote {path}"
    )
    if threads > 1 and max(load_start, load_end) > (os.cpu_count() or threads) - threads + 0.5:
        print(
            f"note: the machine was busy (load average above {(os.cpu_count() or threads) - threads} besides "
            f"these {threads} threads); multi-threaded timings then mostly measure waits at OpenMP "
            "barriers: compare with --threads 1"
        )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench-optim",
        help="time optimizer.step() against fused AdamW and the memory-traffic floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--case", nargs="+", help="run only the default cases whose name contains one of these")
    p.add_argument(
        "--opt",
        help="comma-separated optimizers, each name[:key=value...] (also, if installed: "
        f"{', '.join(EXTERNAL)}); "
        "default with --shape: rfadamw,rfrmsprop:momentum=0.9",
    )
    p.add_argument(
        "--task",
        nargs="+",
        help="time the Kronecker optimizers (and --opt) on the parameter shapes of "
        "these tasks' quick-tier models, each at its default period (or --T), "
        "and report their floor, e.g. cifar10-vit shakespeare-char-gpt",
    )
    p.add_argument("--shape", nargs="+", help="parameter shapes, e.g. 1024x1024 512 (each repeated --n-tensors times)")
    p.add_argument("--n-tensors", type=int, default=16, help="copies of each --shape (default 16)")
    p.add_argument(
        "--dtype",
        nargs="+",
        default=["fp32"],
        choices=sorted(DTYPES),
        help="working precision (diagonal: params, grads, state; Kronecker: factors)",
    )
    p.add_argument(
        "--T",
        nargs="+",
        help="preconditioner periods for periodic methods (the value of each one's "
        "declared period hyperparameter), e.g. 1,10 (default 1)",
    )
    p.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda[:index]: where parameters, state and probes live"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, recorded)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (medians are reported)")
    p.add_argument("--min-run-time", type=float, default=0.25, help="seconds per timed block (at least one period)")
    p.add_argument("--no-peak", action="store_true", help="skip the per-optimizer peak-memory subprocesses")
    p.add_argument("--runs", default="runs", help="results folder (writes <runs>/bench-optim/*.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_bench_optim)
