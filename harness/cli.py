"""The command line: the only place that reads and writes ``runs/``.

    rootbench list [tasks|optimizers]
    rootbench bench --task T --opt O [--tier quick] [--seed 0] [--precision fp32] [key=value ...]
    rootbench show RUN_ID
"""
from __future__ import annotations

import argparse
import importlib
import math
import multiprocessing as mp
import os
import sys
import traceback

from rootbench.harness.registry import RegistryError

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
# Subcommands that live beside their code: site (leaderboard), sweep, regress, bench-optim.
COMMAND_MODULES = ("rootbench.leaderboard.build", "rootbench.harness.sweep", "rootbench.harness.regress",
                   "rootbench.harness.bench_optim")


def _err(msg: str) -> int:
    print(f"rootbench: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------------------------
# list

def cmd_list(args) -> int:
    from rootbench.optimizers import get_optimizer_spec, list_optimizers
    from rootbench.tasks import data_status, get_task_spec, list_tasks

    what = args.what or "all"
    if what in ("optimizers", "all"):
        print("optimizers:")
        for name in list_optimizers():
            s = get_optimizer_spec(name)
            print(f"  {name:<16} {s.family:<9} {s.description}")
            print(f"  {'':<16} {'':<9} {s.paper}")
    if what in ("tasks", "all"):
        print("tasks:")
        for name in list_tasks():
            s = get_task_spec(name)
            better = "higher" if s.higher_is_better else "lower"
            print(f"  {name:<24} {s.description}")
            print(f"  {'':<24} metric {s.metric} ({better} is better)")
            for tier, c in s.tiers.items():
                print(f"  {'':<24}   {tier:<6} {c.steps} steps x batch {c.batch_size}, target {c.target}; "
                      f"data {data_status(name, tier)}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# bench

def _child(conn, task, opt, config, show_progress):
    """Worker process: one run, rows sent back through ``conn`` (its own process: its own peak)."""
    try:
        from rootbench.harness.runner import run

        rows = run(task, opt, config, progress=_progress_bar(task, opt) if show_progress else None)
        conn.send(("rows", rows))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: an interruption, not a result
        conn.send(("interrupted",))
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        conn.send(("exception", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


def _progress_bar(task, opt):
    from tqdm import tqdm

    bar = {"bar": None}

    def progress(step, total, info):
        if bar["bar"] is None and total:
            bar["bar"] = tqdm(total=total, desc=f"{task}/{opt}", unit="step", dynamic_ncols=True, leave=False,
                              file=sys.stderr, mininterval=0.5)
        b = bar["bar"]
        if b is None:
            return
        if "loss" in info and step % 25 == 0:
            b.set_postfix_str(f"loss {float(info['loss'].detach()):.4g}", refresh=False)
        if "eval" in info and info["eval"]:
            b.set_postfix_str(" ".join(f"val_{k} {v:.4g}" for k, v in info["eval"].items()), refresh=False)
        if total:
            b.update(step - b.n)
            if step >= total:
                b.close()

    return progress


def execute(task: str, opt: str, config, in_process: bool = False, show_progress: bool = False) -> list[dict]:
    """Run one config, in a fresh process unless ``in_process``; a dead worker becomes an error row."""
    from rootbench.harness.runner import failure_rows, run

    if in_process:
        return run(task, opt, config, progress=_progress_bar(task, opt) if show_progress else None)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, task, opt, config, show_progress))
    proc.start()
    child.close()
    try:
        msg = parent.recv()
    except EOFError:
        msg = None
    proc.join()
    if msg is None:
        code = proc.exitcode
        status = "oom" if code == -9 else "error"  # SIGKILL in a run is almost always the OOM killer
        return failure_rows(task, opt, config, status, f"worker process died (exit code {code})")
    if msg[0] == "interrupted":
        raise KeyboardInterrupt
    if msg[0] == "exception":
        if msg[1].startswith(("RegistryError", "DataMissingError")):
            raise RegistryError(msg[1].split(": ", 1)[1])
        return failure_rows(task, opt, config, "error", msg[1])
    return msg[1]


def _fmt_bytes(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def summary(df, path: str | None = None, cached: bool = False) -> str:
    """A one-screen summary of one run's rows (a DataFrame)."""
    r = df.iloc[0]
    metric, higher = r["metric_name"], bool(r["higher_is_better"])
    lines = [f"run {r['run_id']}  {r['task']} / {r['optimizer']}  tier={r['tier']} seed={r['seed']} "
             f"precision={r['precision']}" + ("  (cached)" if cached else "")]
    status = r["status"] + (f": {r['status_message']}" if r.get("status_message") else "")
    lines.append(f"status      {status}")
    last = {}
    for split in ("train", "val", "test"):
        sel = df[(df["split"] == split) & (df["metric"] == metric)]
        if len(sel):
            last[split] = sel.sort_values("step").iloc[-1]
    if "val" in last:
        sel = df[(df["split"] == "val") & (df["metric"] == metric)]
        best = sel.loc[sel["value"].idxmax() if higher else sel["value"].idxmin()]
        lines.append(f"{'val ' + metric:<16}{last['val']['value']:.4f} at step {int(last['val']['step'])} "
                     f"(best {best['value']:.4f} at step {int(best['step'])})")
    if "test" in last:
        gap = f"; train-test gap {last['train']['value'] - last['test']['value']:+.4f}" if "train" in last else ""
        lines.append(f"{'test ' + metric:<16}{last['test']['value']:.4f}{gap}")
    tt = r.get("time_to_target_s")
    target = (f"target {r['target']:g} reached at step {int(r['steps_to_target'])} ({tt:.2f} s)"
              if tt is not None and not _isnan(tt) else f"target {r['target']} not reached")
    lines.append(f"time        train {r.get('total_train_time_s', float('nan')):.2f} s, eval "
                 f"{r.get('total_eval_time_s', float('nan')):.2f} s, setup {r.get('setup_time_s', float('nan')):.2f} s; "
                 f"{target}")
    lines.append(f"memory      peak {_fmt_bytes(r.get('peak_mem_bytes'))} above baseline ({r.get('peak_mem_kind', 'n/a')}); "
                 f"optimizer state "
                 f"{r.get('opt_state_bytes_per_param', float('nan')):.2f} B/param ({_fmt_bytes(r.get('opt_state_bytes'))}), "
                 f"{int(r.get('n_params') or 0):,} params")
    ratio = r.get("step_time_ratio_adamw")
    if ratio is not None and not _isnan(ratio):
        lines.append(f"step time   {ratio:.2f}x fused AdamW ({r['opt_step_time_s'] * 1e3:.3f} ms vs "
                     f"{r['adamw_step_time_s'] * 1e3:.3f} ms, same process)")
    if path:
        lines.append(f"{'results' if cached else 'written':<12}{path}")
    return "\n".join(lines)


def _isnan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def _config_from_args(args):
    from rootbench.harness.config import RunConfig, parse_overrides
    from rootbench.harness.runner import split_overrides

    overrides = parse_overrides(args.overrides)
    hparams, settings = split_overrides(args.task, args.opt, args.tier, overrides)
    return RunConfig(tier=args.tier, seed=args.seed, precision=args.precision, hparams=hparams,
                     task_settings=settings, time_limit=args.time_limit, device=args.device,
                     ref_steps=args.ref_steps)


def cmd_bench(args) -> int:
    import pandas as pd

    from rootbench.harness.records import FAILED, ResultsError, read_run, run_path, write_run
    from rootbench.harness.runner import resolve
    from rootbench.tasks import check_data

    try:
        config = _config_from_args(args)
        resolved = resolve(args.task, args.opt, config)
    except RegistryError as e:
        return _err(str(e))
    path = run_path(args.runs, args.task, args.opt, resolved["run_id"])
    if os.path.exists(path) and not args.force:
        try:
            df = read_run(path)
        except ResultsError as e:
            return _err(f"{e}")
        status = df["status"].iloc[0]
        if not (status in FAILED and args.retry_failed):
            print(summary(df, path, cached=True))
            if status in FAILED:
                print(f"cached run failed ({status}); rerun it with --retry-failed or --force")
            else:
                print("cache hit: identical config and code; --force reruns it")
            return EXIT_OK
    try:
        check_data(args.task, args.tier, **config.task_settings)  # a missing data set: exit 2, nothing written
    except RegistryError as e:
        return _err(str(e))
    from rootbench.harness import distributed

    distributed.init_from_env()  # under torchrun: one DDP run over all ranks, in these processes
    rank, world = distributed.rank_and_world()
    try:
        rows = execute(args.task, args.opt, config, in_process=args.in_process or world > 1,
                       show_progress=not args.quiet and rank == 0)
    except RegistryError as e:
        return _err(str(e))
    finally:
        distributed.finish()
    if rank != 0:  # only rank 0 writes results
        return EXIT_OK
    written = write_run(rows, args.runs)
    df = pd.DataFrame(rows)
    print(summary(df, written))
    return EXIT_RUN_FAILED if df["status"].iloc[0] in ("error", "oom") else EXIT_OK


def cmd_show(args) -> int:
    import json

    from rootbench.harness.records import ResultsError, find_run_file, read_run

    path = args.run if args.run.endswith(".parquet") else find_run_file(args.runs, args.run)
    if not path or not os.path.exists(path):
        return _err(f"no run {args.run!r} under {args.runs}/; `ls {args.runs}/<task>/<optimizer>/` lists run ids")
    try:
        df = read_run(path)
    except ResultsError as e:
        return _err(str(e))
    r = df.iloc[0]
    print(summary(df, path, cached=True))
    print("config:")
    print("  " + json.dumps(json.loads(r["config_json"]), indent=2, sort_keys=True).replace("\n", "\n  "))
    print("provenance:")
    for key in ("git_sha", "git_dirty", "rootbench_version", "torch_version", "cuda_version", "device", "cpu",
                "num_threads", "hostname", "started_at", "schema_version"):
        if key in df.columns:
            print(f"  {key:<18} {r[key]}")
    if r.get("traceback"):
        print("traceback:\n" + str(r["traceback"]))
    print("curve (val):")
    metric = r["metric_name"]
    sel = df[(df["split"] == "val") & (df["metric"] == metric)].sort_values("step")
    for _, row in sel.iterrows():
        print(f"  step {int(row['step']):>7}  {metric} {row['value']:.4f}  train_time {row['train_time_s']:.2f} s")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from rootbench.harness.config import PRECISIONS

    ap = argparse.ArgumentParser(prog="rootbench", description="Benchmark optimizers; root-free vs root-based.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered tasks and optimizers")
    p.add_argument("what", nargs="?", choices=["tasks", "optimizers"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="run (or fetch from cache) one task x optimizer config")
    p.add_argument("--task", default="mnist1d-mlp")
    p.add_argument("--opt", default="adamw")
    p.add_argument("--tier", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--time-limit", type=float, default=None, help="seconds; the run ends with status timeout")
    p.add_argument("--device", default="auto")
    p.add_argument("--ref-steps", type=int, default=20, help="steps timed against fused AdamW (0 skips)")
    p.add_argument("--runs", default="runs", help="results folder")
    p.add_argument("--force", action="store_true", help="rerun even when cached")
    p.add_argument("--retry-failed", action="store_true", help="rerun a cached run that failed")
    p.add_argument("--in-process", action="store_true", help="do not start a worker process")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="hyperparameters and task settings")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("show", help="print one run's config, provenance, curve and status")
    p.add_argument("run", help="run id (or a path to its parquet file)")
    p.add_argument("--runs", default="runs")
    p.set_defaults(func=cmd_show)

    for name in COMMAND_MODULES:  # each defines add_parser(subparsers) for its own subcommand
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_parser(sub)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RegistryError as e:
        return _err(str(e))
    except KeyboardInterrupt:
        print("interrupted; nothing was written for the unfinished run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
