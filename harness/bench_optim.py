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
defaults (``bench_cases.KRON_HP``, for the hyperparameters they have) with a strict period (``schedule="every_T"``
where a method has that knob).

``--device cuda`` puts parameters, gradients, state and the probes on a CUDA device: every wall-clock read
synchronises the device first, and the transient peak is the caching allocator's peak in this process
(``peak_kind`` "cuda_max_allocated").

Threads are fixed (``--threads``, default torch's) and recorded with the load average. On a busy
machine multi-threaded timings mostly measure waits at OpenMP barriers (a thread descheduled for a
scheduler tick stalls every parallel op); ``--threads 1`` then compares the work itself.

Results: ``<runs>/bench-optim/<time>-<hash>.parquet`` (written atomically by the results store, with
provenance columns) and a printed table. ``sirfshampoo`` (the authors' package, a test dependency) can be
named as an optimizer: an external reference entry (``bench_cases.EXTERNAL``) that declares the same capabilities and
takes rootbench's hyperparameter names (SIRFShampoo's own names mapped by ``bench_cases.SIRF_NAMES``), with an int T.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import statistics
import sys

import torch

from rootbench.harness import records
from rootbench.harness.bench_cases import (
    DTYPES,
    EXTERNAL,
    FACTOR_DTYPE_HPARAM,
    Case,
    Entry,
    capabilities,
    default_suite,
)
from rootbench.harness.bench_timing import adamw_entry, peak_in_subprocess, peak_on_cuda, run_case
from rootbench.harness.kron_floor import FLOOR_COLUMNS
from rootbench.harness.registry import UsageError

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
