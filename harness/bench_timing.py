"""How ``rootbench bench-optim`` measures a case (module doc of ``harness/bench_optim.py``): interleaved timing
rounds next to fused AdamW and a bandwidth probe, the update step of a period, the eigh share, the Kronecker
floor's replay, and the transient peak (a fresh process per entry on the CPU, the allocator's peak on CUDA)."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

from rootbench.harness.bench_cases import (
    Case,
    Entry,
    build_optimizer,
    build_params,
    capabilities,
    kronecker,
    param_dtype,
    traffic_floor,
)
from rootbench.harness.kron_floor import floor_columns, record_floor

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
        "import sys; from rootbench.harness.bench_timing import _peak_child; _peak_child(sys.argv[1], int(sys.argv[2]))"
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
