"""The command line. Bad input is a one-line error and exit 2, before any work starts.

    rootbench list [tasks|optimizers]
    rootbench bench --task T --opt O [--tier quick] [--seed 0] [--precision fp32] [key=value ...]
    rootbench show RUN_ID
    rootbench sweep | regress | bench-optim | site | campaign | eval-weights | rounding ...   (each beside its code)

Exit codes: 0 done, 1 the run failed (its record is stored with its status), 2 bad input or missing
data, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys

from rootbench.harness.registry import UsageError

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
# Subcommands that live beside their code: site (leaderboard), sweep, regress, bench-optim.
COMMAND_MODULES = (
    "rootbench.leaderboard.build",
    "rootbench.harness.sweep",
    "rootbench.harness.regress",
    "rootbench.harness.bench_optim",
    "rootbench.harness.campaign",
    "rootbench.harness.eval_weights",
    "rootbench.harness.rounding",
)
# third-party modules that only an extra installs: a command needing one says which extra
EXTRAS = {
    "pandas": "tasks",
    "pyarrow": "tasks",
    "torchvision": "tasks",
    "timm": "tasks",
    "datasets": "tasks",
    "mnist1d": "tasks",
    "tqdm": "tasks",
    "scipy": "tasks",
    "numpy": "tasks",
    "jinja2": "site",
    "ray": "sweeps",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that workers are stopped and nothing partial is left."""


def _err(msg: str) -> int:
    print(f"rootbench: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------------------------
# list


def cmd_list(args) -> int:
    from rootbench.optimizers import get_optimizer_spec, list_optimizers, missing_optimizers
    from rootbench.tasks import data_status, get_task_spec, list_tasks

    what = args.what or "all"
    if what in ("optimizers", "all"):
        print("optimizers:")
        specs = {name: get_optimizer_spec(name) for name in list_optimizers()}
        kinds = {
            n: f"{s.family}, {s.preconditioner}" + (", root-free" if s.root_free else "") for n, s in specs.items()
        }
        # columns as wide as their longest entry, so a plugin's long name or kind cannot run into the next column
        wn, wk = max(map(len, specs), default=0), max(map(len, kinds.values()), default=0)
        for name, s in specs.items():
            print(f"  {name:<{wn}} {kinds[name]:<{wk}} {s.description}")
            print(f"  {'':<{wn}} {'':<{wk}} {s.paper}")
        missing = missing_optimizers()
        if missing:
            print("optimizers declared by plugins but not installed:")
            for name, hint in missing.items():
                print(f"  {name:<16} {hint}")
    if what in ("tasks", "all"):
        print("tasks:")
        for name in list_tasks():
            s = get_task_spec(name)
            better = "higher" if s.higher_is_better else "lower"
            print(f"  {name:<24} {s.description}")
            print(f"  {'':<24} {s.model_kind}; metric {s.metric} ({better} is better)")
            for tier, c in s.tiers.items():
                minutes = s.minutes.get(tier) if s.minutes else None
                took = f"; ~{minutes:g} min per run on a 2-core CPU" if minutes else ""
                print(
                    f"  {'':<24}   {tier:<6} {c.steps} steps x batch {c.batch_size}, target {c.target}; "
                    f"data {data_status(name, tier)}{took}"
                )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# bench


def _fmt_bytes(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _isnan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def _num(x, fmt: str = ".2f", unit: str = "") -> str:
    return "n/a" if _isnan(x) else f"{float(x):{fmt}}{unit}"


def summary(rec, path: str | None = None, cached: bool = False) -> str:
    """A one-screen summary of one run's record; tolerant of missing or odd values."""
    r = rec.run
    metric = r.get("metric_name") or "loss"
    higher = bool(r.get("higher_is_better"))
    lines = [
        f"run {r.get('run_id')}  {r.get('task')} / {r.get('optimizer')}  tier={r.get('tier')} "
        f"seed={r.get('seed')} precision={r.get('precision')}" + ("  (cached)" if cached else "")
    ]
    lines.append(f"status      {r.get('status')}" + (f": {r['status_message']}" if r.get("status_message") else ""))
    curve = rec.curve
    val = curve[(curve["split"] == "val") & (curve["metric"] == metric)].dropna(subset=["value"])
    if len(val):
        last = val.sort_values("step").iloc[-1]
        best = val.loc[val["value"].idxmax() if higher else val["value"].idxmin()]
        lines.append(
            f"{'val ' + metric:<16}{last['value']:.4f} at step {int(last['step'])} "
            f"(best {best['value']:.4f} at step {int(best['step'])})"
        )
    test, train = rec.final("test", metric), rec.final("train", metric)
    if not _isnan(test):
        gap = f"; train-test gap {train - test:+.4f}" if not _isnan(train) else ""
        lines.append(f"{'test ' + metric:<16}{test:.4f}{gap}")
    tt, steps = r.get("time_to_target_s"), r.get("steps_to_target")
    target = (
        f"target {r.get('target')} reached at step {int(steps)} ({float(tt):.2f} s)"
        if not _isnan(tt) and not _isnan(steps)
        else f"target {r.get('target')} not reached"
    )
    lines.append(
        f"time        train {_num(r.get('total_train_time_s'), unit=' s')}, eval "
        f"{_num(r.get('total_eval_time_s'), unit=' s')}, setup {_num(r.get('setup_time_s'), unit=' s')}; "
        f"{target}"
    )
    n_params = r.get("n_params")
    lines.append(
        f"memory      peak {_fmt_bytes(r.get('peak_mem_bytes'))} above baseline "
        f"({r.get('peak_mem_kind') or 'n/a'}); optimizer state "
        f"{_num(r.get('opt_state_bytes_per_param'))} B/param ({_fmt_bytes(r.get('opt_state_bytes'))}), "
        f"{int(n_params) if not _isnan(n_params) else 0:,} params"
    )
    ratio = r.get("step_time_ratio_adamw")
    if not _isnan(ratio):
        lines.append(
            f"step time   {float(ratio):.2f}x fused AdamW ({_num(r.get('opt_step_time_s', 0) * 1e3, '.3f')} "
            f"ms vs {_num(r.get('adamw_step_time_s', 0) * 1e3, '.3f')} ms, same process; "
            f"{r.get('opt_impl') or '?'})"
        )
    if path:
        lines.append(f"{'results' if cached else 'written':<12}{path}")
    return "\n".join(lines)


def add_run_arguments(p, memory: bool = True) -> None:
    """Options every command that trains shares (bench, sweep)."""
    from rootbench.harness.config import PRECISIONS

    p.add_argument("--tier", default="quick")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--time-limit", type=float, default=None, help="seconds per run; the run ends with status timeout")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--ref-steps", type=int, default=20, help="steps timed against fused AdamW (0 skips)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the run (default: torch's own)")
    if memory:
        p.add_argument(
            "--memory-limit",
            default=None,
            help="per run: 8G, 512M, a share of the machine (0.5) or none; default 80%% of the memory; "
            "a run past it ends as oom",
        )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_fields(args) -> dict:
    return dict(
        tier=args.tier,
        precision=args.precision,
        time_limit=args.time_limit,
        device=args.device,
        ref_steps=args.ref_steps,
        threads=args.threads,
    )


def cmd_bench(args) -> int:
    from rootbench.harness import records
    from rootbench.harness.config import parse_overrides
    from rootbench.harness.execute import get_or_run, parse_memory
    from rootbench.harness.resolve import resolve_args
    from rootbench.harness.runner import pick_device
    from rootbench.tasks import check_data

    # everything that can be wrong with the request fails here, before a worker starts or a file is written
    spec = resolve_args(args.task, args.opt, parse_overrides(args.overrides), seed=args.seed, **config_fields(args))
    memory_limit = parse_memory(args.memory_limit)
    pick_device(spec.config.device)  # asked for CUDA where there is none: now, not in a worker
    check_data(args.task, args.tier, **spec.config.task_settings)
    from rootbench.harness import distributed

    distributed.init_from_env()  # under torchrun: one DDP run over all ranks, in these processes
    rank, world = distributed.rank_and_world()
    if rank == 0:
        records.check_writable(args.runs)
    try:
        out = get_or_run(
            spec,
            args.runs,
            force=args.force,
            retry_failed=args.retry_failed,
            in_process=args.in_process or world > 1,
            show_progress=not args.quiet and rank == 0,
            write=rank == 0,
            memory_limit=memory_limit,
            on_wait=lambda: print(f"waiting: another process is computing run {spec.run_id}", file=sys.stderr),
        )
    finally:
        distributed.finish()
    if rank != 0:
        return EXIT_OK
    print(summary(out.record, out.path, cached=out.cached))
    if out.cached:
        if out.record.failed:
            print(f"this is a stored failure ({out.status}); rerun it with --retry-failed (or --force)")
            return EXIT_RUN_FAILED
        print("cache hit: identical config and code; --force reruns it")
        return EXIT_OK
    return EXIT_RUN_FAILED if out.record.failed else EXIT_OK


def cmd_show(args) -> int:
    import json

    from rootbench.harness import records
    from rootbench.harness.records import find_run_file, read_record

    path = args.run if args.run.endswith(".parquet") else find_run_file(args.runs, args.run)
    if not path or not os.path.exists(path):
        raise UsageError(f"no run {args.run!r} under {args.runs}/; `ls {args.runs}/<task>/<optimizer>/` lists run ids")
    rec = read_record(path)
    r = rec.run
    print(summary(rec, path, cached=True))
    print("config:")
    try:
        print(
            "  " + json.dumps(json.loads(r.get("config_json") or "{}"), indent=2, sort_keys=True).replace("\n", "\n  ")
        )
    except (TypeError, ValueError):
        print(f"  (unreadable config_json: {str(r.get('config_json'))[:200]!r})")
    print("provenance:")
    for key in records.PROVENANCE_COLUMNS:
        if key in r:
            print(f"  {key:<18} {r[key]}")
    if r.get("traceback"):
        print("traceback:\n" + str(r["traceback"]))
    metric = r.get("metric_name") or "loss"
    print("curve (val):")
    c = rec.curve
    for row in c[(c["split"] == "val") & (c["metric"] == metric)].sort_values("step").to_dict("records"):
        print(
            f"  step {int(row['step']):>7}  {metric} {_num(row['value'], '.4f')}  "
            f"train_time {_num(row['train_time_s'], unit=' s')}"
        )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rootbench", description="Benchmark optimizers; root-free vs root-based.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered tasks and optimizers")
    p.add_argument("what", nargs="?", choices=["tasks", "optimizers"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="run (or fetch from cache) one task x optimizer config")
    p.add_argument("--task", default="mnist1d-mlp")
    p.add_argument("--opt", default="adamw")
    p.add_argument("--seed", type=int, default=0)
    add_run_arguments(p)
    p.add_argument("--runs", default="runs", help="results folder")
    p.add_argument("--force", action="store_true", help="rerun even when cached")
    p.add_argument("--retry-failed", action="store_true", help="rerun a cached run that failed")
    p.add_argument("--in-process", action="store_true", help="do not start a worker process")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="hyperparameters and task settings")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("show", help="print one run's config, provenance, curve and status")
    p.add_argument("run", help="run id (or a path to its parquet file)")
    p.add_argument("--runs", default="runs")
    p.set_defaults(func=cmd_show)

    for name in COMMAND_MODULES:  # each defines add_parser(subparsers) for its own subcommand
        importlib.import_module(name).add_parser(sub)
    return ap


RECEIVED: list[int] = []  # signals that reached main(), in case code between here and there swallowed the exception


def _on_sigterm(signum, frame):
    RECEIVED.append(signum)
    raise Terminated()


def _on_sigint(signum, frame):
    RECEIVED.append(signum)
    raise KeyboardInterrupt


def exit_on_signal(signum, frame):
    """After main() returned (results written, the interpreter tearing down): end now with 128 + signal."""
    os._exit(128 + signum)


def main(argv=None) -> int:
    # SIGTERM becomes an exception from the first instruction on (imports included), so a command
    # terminated at any point stops its workers and ends with one line and exit 143
    main_thread = _in_main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    previous_int = signal.signal(signal.SIGINT, _on_sigint) if main_thread else None
    RECEIVED.clear()
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        if RECEIVED:  # the interrupt was swallowed on its way up (e.g. raised inside a finalizer)
            raise Terminated() if RECEIVED[0] == signal.SIGTERM else KeyboardInterrupt
        return code
    except UsageError as e:
        return _err(str(e))
    except ModuleNotFoundError as e:
        extra = EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        return _err(f"this command needs {e.name}, which `pip install 'rootbench[{extra}]'` installs")
    except BrokenPipeError:
        # the reader of the output went away (`rootbench list | head`): stop quietly, as a pipe's writer does;
        # stdout points at /dev/null so the interpreter's final flush does not fail again
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Terminated:
        print("rootbench: terminated; nothing was written for unfinished runs", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("rootbench: interrupted; nothing was written for unfinished runs", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def console_main() -> int:
    """The ``rootbench`` command: ``main()``, then a signal during interpreter teardown still ends 130 / 143."""
    code = main()
    if _in_main_thread():
        signal.signal(signal.SIGTERM, exit_on_signal)
        signal.signal(signal.SIGINT, exit_on_signal)
    return code


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
