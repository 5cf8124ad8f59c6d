"""``rootbench campaign``: every sweep the paper's claims need on one tier, as one command.

    rootbench campaign --tier quick --dry-run                       # the plan and its size; nothing runs
    rootbench campaign --tier long --device cuda --workers 8        # make gpu-campaign (one CUDA GPU)
    rootbench campaign --tier quick --task mnist1d-cnn --trials 16 --seeds 5
    rootbench campaign --tier long --around quick --trials 6            # a local search around the quick tier
    rootbench campaign --tier quick --task mnist1d-cnn cifar10-vit shakespeare-char-gpt --opt muon lion

The plan comes from what the registries declare, never from names: claim 1 (root-free closes the
generalisation gap to SGD on CNNs) on every task of the tier whose ``model_kind`` is a CNN, claim 2 on the
transformers (``leaderboard.verdicts.CLAIM_KINDS``); on each, the CNN reference (SGD, on CNNs) and every
root-free method that declares a root-based ``pair`` together with that partner. Each (task, optimizer) is
one sweep of the second protocol (``harness/sweep.py``: quasi-random horizon-aware trials plus the published
point, the selection rerun with ``--seeds`` seeds), with ``bf16-pure`` reruns for the paired methods (claim
3). Sweeps run one after another, each with ``--workers`` runs at a time (on a GPU the runs share it), and
every run lands in ``--runs`` like any other: the cache resumes an interrupted campaign.

After the sweeps the campaign checks what it claims to have measured and exits non-zero if a check fails:
every run finished; on CUDA every run recorded a CUDA device, its peak memory from the CUDA allocator
(``peak_mem_kind`` ``cuda_max_allocated``) and a step-time ratio (clocks read after a synchronise); the
``bf16-pure`` reruns exist for every pair. Then it prints the claims' verdicts for the tier
(``leaderboard.claims``).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass

from rootbench.harness.registry import UsageError, check_tier

CLAIM_PRECISION = "bf16-pure"  # claim 3: the paired methods rerun with parameters, gradients and state in bf16


@dataclass(frozen=True)
class PlannedSweep:
    task: str
    optimizer: str
    also_precisions: tuple  # () or (CLAIM_PRECISION,)

    def runs(self, trials: int, seeds: int, published: bool, carried: bool = False) -> int:
        """Distinct runs at most: the trials (plus the published point and, seeded with ``--around``, the other
        tier's selection), the other seeds, the other precisions."""
        return sum(self.runs_by_precision(trials, seeds, published, carried).values())

    def runs_by_precision(self, trials: int, seeds: int, published: bool, carried: bool = False) -> dict:
        """``runs`` split by precision: the search and the seeds in fp32, every seed again in each other one."""
        return {"fp32": trials + int(published) + int(carried) + (seeds - 1)} | {p: seeds for p in self.also_precisions}


MIN_RECORDED = 3  # runs behind a cost ratio: fewer and one slow outlier would set it


def _recorded(root: str, task: str) -> dict:
    """Wall-clock minutes of ``task``'s finished one-thread CPU runs recorded under ``root``, by (tier,
    optimizer, precision)."""
    from rootbench.harness import records

    seen: dict = {}
    for r in records.iter_records(os.path.join(root, task)):
        if (r.status, r.get("device"), r.get("num_threads")) == ("ok", "cpu", 1) and r.get("wall_time_s"):
            seen.setdefault((r.get("tier"), r.get("optimizer"), r.get("precision")), []).append(
                float(r.get("wall_time_s")) / 60
            )
    return seen


def recorded_minutes(root: str, task: str, tier: str, seen: dict | None = None) -> tuple[float, int] | None:
    """The median wall-clock minutes of ``task``'s finished fp32 runs on ``tier`` recorded under ``root`` at one
    CPU thread, and how many there are: the budget's figure for a task that declares none. ``seen``: those runs
    already read by ``_recorded``."""
    import statistics

    seen = _recorded(root, task) if seen is None else seen
    minutes = [m for (t, _, p), ms in seen.items() if (t, p) == (tier, "fp32") for m in ms]
    return (statistics.median(minutes), len(minutes)) if minutes else None


def cost_ratios(root: str, task: str, tier: str, seen: dict | None = None) -> tuple[str, dict] | None:
    """Each (optimizer, precision)'s median minutes per run over the median of all the task's fp32 runs, from
    its recorded one-thread CPU runs of ``tier``, else of the tier with the most of them: an optimizer's step
    and a precision's emulation cost scale the task's figure (Shampoo's root, bf16 on a CPU without bf16 units).
    Pairs with fewer than ``MIN_RECORDED`` runs are left out (ratio 1); None without a usable fp32 median.
    ``seen``: those runs already read by ``_recorded``."""
    import statistics

    seen = _recorded(root, task) if seen is None else seen
    tiers = {t for t, _, _ in seen}
    for t in [tier] + sorted(tiers - {tier}, key=lambda t: -sum(len(v) for k, v in seen.items() if k[0] == t)):
        fp32 = [m for (tt, _, p), ms in seen.items() if (tt, p) == (t, "fp32") for m in ms]
        if len(fp32) < MIN_RECORDED:
            continue
        base = statistics.median(fp32)
        ratios = {(o, p): statistics.median(ms) / base for (tt, o, p), ms in seen.items() if tt == t}
        return t, {k: r for k, r in ratios.items() if len(seen[(t, *k)]) >= MIN_RECORDED}
    return None


def budget(sweeps: list, tier: str, runs_per_sweep: dict, workers: int, root: str | None = None) -> str:
    """The campaign's cost from the tasks' measured minutes per run (``TaskSpec.minutes``; for a task without
    one, the median of its runs recorded under ``root``, ``recorded_minutes``), each optimizer and precision
    scaled by its recorded cost ratio on the task (``cost_ratios``): runs x minutes, and the wall time at
    ``workers`` runs at a time; tasks with neither are named. ``runs_per_sweep`` maps each sweep to its runs
    by precision (``PlannedSweep.runs_by_precision``)."""
    from rootbench.tasks import get_task_spec

    per_task: dict = {}
    ratios: dict = {}
    notes, unknown = [], set()
    for task in sorted({s.task for s in sweeps}):
        m = get_task_spec(task).minutes.get(tier)
        runs = _recorded(root, task) if root is not None else {}  # read once: the median and the ratios
        seen = None if m else recorded_minutes(root, task, tier, runs)
        if seen:
            m = seen[0]
            notes.append(f"{task} {m:.1f} min, the median of its {seen[1]} recorded runs")
        if not m:
            unknown.add(task)
            continue
        per_task[task] = m
        scaled = cost_ratios(root, task, tier, runs)
        if scaled and scaled[1]:
            ratios[task] = scaled[1]
            notes.append(
                f"{task} scaled per optimizer and precision by its recorded {scaled[0]} runs' ratios "
                f"({len(scaled[1])} figures, {min(scaled[1].values()):.2f}x to {max(scaled[1].values()):.2f}x)"
            )
    minutes = sum(
        per_task[s.task] * n * ratios.get(s.task, {}).get((s.optimizer, p), 1.0)
        for s in sweeps
        if s.task in per_task
        for p, n in runs_per_sweep[s].items()
    )
    if not minutes:
        return f"budget: unknown: no measured minutes per run on the {tier} tier of {', '.join(sorted(unknown))}"
    unscaled = any(
        (s.optimizer, p) not in ratios.get(s.task, {}) for s in sweeps if s.task in per_task for p in runs_per_sweep[s]
    )
    counted = ", at the task's figure where no ratio is recorded" if unscaled else ""
    out = (
        f"budget: about {minutes / 60:.1f} CPU-hours at the tasks' measured minutes per run (one thread each"
        f"{counted}{''.join('; ' + r for r in notes)}), "
        f"{minutes / 60 / workers:.1f} h wall at {workers} at a time"
    )
    out += over_limit(sweeps, tier, runs_per_sweep, per_task, ratios)
    return out + (f"; no measured minutes for {', '.join(sorted(unknown))}" if unknown else "")


def over_limit(sweeps: list, tier: str, runs_per_sweep: dict, per_task: dict, ratios: dict) -> str:
    """The planned (task, optimizer, precision) whose recorded cost ratio puts a run over the tier's design limit
    (``registry.TIER_MINUTES_LIMIT``): a task's minutes are measured with one optimizer, and a slow
    preconditioner or an emulated precision can exceed them. Empty where none does or the tier has no limit."""
    from rootbench.harness.registry import TIER_MINUTES_LIMIT

    limit = TIER_MINUTES_LIMIT.get(tier)
    if not limit:
        return ""
    projected = {  # only where a ratio is recorded (a task's ratios exist only where its minutes do)
        (s.task, s.optimizer, p): per_task[s.task] * ratios[s.task][(s.optimizer, p)]
        for s in sweeps
        for p in runs_per_sweep[s]
        if (s.optimizer, p) in ratios.get(s.task, {})
    }
    over = [f"{t} {o} {p} {m:.1f} min" for (t, o, p), m in projected.items() if m > limit]
    return f"; over the {tier} tier's {limit:g}-minute limit per run: {', '.join(over)}" if over else ""


def claim_tasks(tier: str, only: list | None = None) -> list:
    """Tasks that declare ``tier`` and a model kind some claim is about (``--task`` narrows them)."""
    from rootbench.leaderboard.verdicts import CLAIM_KINDS
    from rootbench.tasks import get_task_spec, list_tasks

    check_tier(tier)
    kinds = {k for ks in CLAIM_KINDS.values() for k in ks}
    names = only or list_tasks()
    out = []
    for name in names:
        spec = get_task_spec(name)  # an unknown name raises with close matches
        if tier in spec.tiers and spec.model_kind in kinds:
            out.append(name)
        elif only:
            why = f"has no {tier!r} tier" if tier not in spec.tiers else f"is a {spec.model_kind} task (no claim)"
            raise UsageError(f"task {name!r} {why}")
    if not out:
        raise UsageError(f"no task declares the {tier!r} tier and a model kind the claims are about")
    return out


def claim_optimizers(model_kind: str) -> list:
    """(optimizer, also bf16-pure) for a task of ``model_kind``: every root-free method with a declared pair and
    that partner (variants excluded), plus the CNN reference on CNNs."""
    from rootbench.leaderboard.aggregate import CNN_REFERENCE
    from rootbench.leaderboard.verdicts import CLAIM_KINDS
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    specs = [get_optimizer_spec(n) for n in list_optimizers()]
    paired = set()
    for s in specs:
        if s.root_free and s.pair and s.parent is None:
            paired.update({s.name, s.pair})
    out = [(n, True) for n in sorted(paired)]
    if model_kind in CLAIM_KINDS[1]:
        out.insert(0, (CNN_REFERENCE, False))
    return out


def plan(tier: str, tasks: list | None = None, optimizers: list | None = None) -> list:
    """The sweeps: the claims' optimizers on each claim task, or ``optimizers`` instead (``--opt``: methods in no
    claim, such as the zoo, under the same protocol), each of those rerun in bf16-pure as well."""
    from rootbench.optimizers import get_optimizer_spec
    from rootbench.tasks import get_task_spec

    if optimizers:
        for name in optimizers:
            get_optimizer_spec(name)  # an unknown name raises with close matches, before any work
        return [PlannedSweep(task, opt, (CLAIM_PRECISION,)) for task in claim_tasks(tier, tasks) for opt in optimizers]
    return [
        PlannedSweep(task, opt, (CLAIM_PRECISION,) if pair else ())
        for task in claim_tasks(tier, tasks)
        for opt, pair in claim_optimizers(get_task_spec(task).model_kind)
    ]


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here (the campaign runs on CPUs with --device cpu)")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")


def checks(manifests: list, sweeps: list, runs_root: str, device: str) -> list:
    """(check, passed, detail) rows over the campaign's sweeps (``manifests``, one per planned sweep) and runs."""
    from rootbench.harness import records

    wanted = set()
    for m in manifests:
        ids = [t["run_id"] for t in m["trials"] + m["seeds"] if t.get("run_id")]
        ids += [rid for rids in (m.get("other_precisions") or {}).values() for rid in rids]
        wanted.update((m["task"], m["optimizer"], rid) for rid in ids)
    paths = [records.run_path(runs_root, *key) for key in sorted(wanted)]
    found = [records.read_record(p) for p in paths if records.exists(p)]
    out = [("runs recorded", len(found) == len(wanted), f"{len(found)} of {len(wanted)}")]
    if not found:
        return out
    done = sum(r.status in ("ok", "diverged") for r in found)
    out.append(("runs finished (ok or diverged)", done == len(found), f"{done} of {len(found)}"))
    if device.startswith("cuda"):
        out += cuda_checks(found)
    missing = [f"{m['task']} / {m['optimizer']}" for m in manifests if not m.get("selected")]
    out.append(
        (
            "every sweep selected a configuration (trials warm-start dominated are not selectable)",
            not missing,
            f"{len(manifests) - len(missing)} of {len(manifests)}"
            + (f"; none for {', '.join(missing)}" if missing else ""),
        )
    )
    pairs = [m for m, s in zip(manifests, sweeps, strict=True) if s.also_precisions and m.get("selected")]
    complete = sum(bool((m.get("other_precisions") or {}).get(CLAIM_PRECISION)) for m in pairs)
    out.append(
        (
            f"{CLAIM_PRECISION} reruns of every selection planned with them",
            complete == len(pairs),
            f"{complete} of {len(pairs)}",
        )
    )
    return out


def cuda_checks(found: list) -> list:
    """(check, passed, detail) rows for runs that should have run on a CUDA GPU. A CUDA run's ``device`` column
    holds the GPU's name (``harness/provenance.py``), a CPU run's reads ``cpu``; its peak memory comes from the
    CUDA allocator; its step-time ratio was read after a synchronise."""
    n = len(found)
    on_cuda = sum(str(r.get("device", "cpu")) not in ("", "cpu") for r in found)
    peak = sum(r.get("peak_mem_kind") == "cuda_max_allocated" for r in found)
    timed = sum(_positive(r.get("step_time_ratio_adamw")) for r in found)
    return [
        ("ran on CUDA", on_cuda == n, f"{on_cuda} of {n}"),
        ("peak memory from the CUDA allocator", peak == n, f"{peak} of {n}"),
        ("step time against fused AdamW (synchronised clocks)", timed == n, f"{timed} of {n}"),
    ]


def seeding(sweeps: list, args) -> dict:
    """``--around TIER``: the other tier's sweep that seeds each planned sweep, found before anything runs (a
    missing one is a one-line error naming the sweep to run first). Returns {planned sweep: its sweep id}."""
    from rootbench.harness.sweep_space import seed_manifest

    return {
        s: seed_manifest(args.runs, s.task, s.optimizer, args.around, args.tier, "fp32")["sweep_id"] for s in sweeps
    }


def _positive(x) -> bool:
    try:
        return float(x) > 0
    except (TypeError, ValueError):
        return False


def cmd_campaign(args) -> int:
    from rootbench.harness.sweep import Sweep, SweepConfig, _share_of_memory

    if args.trials < 1 or args.seeds < 1 or args.workers < 1 or args.parallel < 1:
        raise UsageError("--trials, --seeds, --workers and --parallel must be positive")
    sweeps = plan(args.tier, args.task, args.opt)
    check_device(args.device)
    on_cuda = args.device.startswith("cuda")
    published = not args.no_published
    seeds_from = seeding(sweeps, args) if args.around else {}
    runs = {s: s.runs_by_precision(args.trials, args.seeds, published, carried=bool(args.around)) for s in sweeps}
    print(
        f"campaign: tier {args.tier}, {len(sweeps)} sweeps ({args.trials} trials"
        f"{' + the published point where declared' if published else ''}"
        f"{f' + the {args.around} selection, seeded around it' if args.around else ''}, {args.seeds} seeds), "
        f"at most {sum(sum(r.values()) for r in runs.values())} runs, {args.workers} at a time"
        f"{f' in each of {args.parallel} sweeps at once' if args.parallel > 1 else ''}, device {args.device}"
    )
    for s in sweeps:
        extra = f" (+ {', '.join(s.also_precisions)})" if s.also_precisions else ""
        seeded = f"  around {args.around} sweep {seeds_from[s]}" if s in seeds_from else ""
        print(f"  {s.task:<24} {s.optimizer}{extra}{seeded}")
    if on_cuda:
        print("budget: the tasks' minutes per run are 2-core CPU figures; no GPU figure is declared")
    else:
        print(budget(sweeps, args.tier, runs, args.workers * args.parallel, args.runs))
    if args.dry_run:
        return 0
    t0 = time.perf_counter()

    def one(i: int, s: PlannedSweep) -> dict:
        print(f"[{i}/{len(sweeps)}] {s.task} / {s.optimizer}", flush=True)
        cfg = SweepConfig(
            task=s.task,
            optimizer=s.optimizer,
            trials=args.trials,
            seeds=args.seeds,
            tier=args.tier,
            device=args.device,
            runs=args.runs,
            workers=args.workers,
            threads=args.threads,
            quiet=True,
            also_precisions=s.also_precisions,
            published=published,
            around=args.around,
            memory_limit=_share_of_memory(args.workers * args.parallel) if not on_cuda else None,
        )
        manifest = Sweep(cfg, stop=stop).run()
        print(
            f"[{i}/{len(sweeps)}] {s.task} / {s.optimizer}: done at {(time.perf_counter() - t0) / 60:.1f} min",
            flush=True,
        )
        return manifest

    # sweeps at a time (--parallel): each runs its own --workers runs, so a GPU is kept busy between one sweep's
    # stages; the store's run locks keep concurrent writers apart
    stop = threading.Event()  # an interrupt of the campaign reaches every sweep it runs, and their workers
    pool = futures.ThreadPoolExecutor(max_workers=args.parallel)
    try:
        manifests = list(pool.map(one, range(1, len(sweeps) + 1), sweeps))
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    minutes = (time.perf_counter() - t0) / 60
    rows = checks(manifests, sweeps, args.runs, args.device)
    print(f"\ncampaign: {len(manifests)} sweeps in {minutes:.1f} min")
    for name, passed, detail in rows:
        print(f"  {'ok  ' if passed else 'FAIL'} {name}: {detail}")
    from rootbench.leaderboard import claims

    print()
    claims.main(["--runs", args.runs, "--tier", args.tier])
    return 0 if all(p for _, p, _ in rows) else 1


def add_parser(sub) -> None:
    p = sub.add_parser(
        "campaign",
        help="every sweep the paper's claims need on one tier (one GPU: make gpu-campaign)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tier", required=True, help="the tier to run the claims on (e.g. quick, long)")
    p.add_argument("--task", nargs="+", help="only these tasks (default: every task of the tier a claim is about)")
    p.add_argument(
        "--opt",
        nargs="+",
        help="these optimizers instead of the claims' (e.g. the zoo: muon adafactor psgd_kron soap lion sfadamw), "
        "each with bf16-pure reruns",
    )
    p.add_argument("--trials", type=int, default=16, help="quasi-random trials per sweep (default 16)")
    p.add_argument("--seeds", type=int, default=5, help="seeds of each selection (default 5, what verdicts need)")
    p.add_argument("--no-published", action="store_true", help="without the published configuration as a trial")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="runs at a time")
    p.add_argument(
        "--parallel", type=int, default=1, help="sweeps at a time, each with --workers runs (default 1; a GPU: 4)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores // workers)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--runs", default="runs", help="results folder")
    p.add_argument(
        "--around",
        metavar="TIER",
        help="seed each sweep from this tier's sweep of the same task and optimizer (a local search; see "
        "rootbench sweep --around), e.g. --tier long --around quick",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, its size and budget; run nothing")
    p.set_defaults(func=cmd_campaign)
