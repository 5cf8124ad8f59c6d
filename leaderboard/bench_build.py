"""How long does ``rootbench site`` take on 10,000 runs? A benchmark on SYNTHETIC results.

    .venv/bin/python -m rootbench.leaderboard.bench_build [--runs 10000] [--jobs N] [--keep DIR]

It writes made-up run files (same columns as the runner's; every task is named ``synthetic-*``, the host,
git sha and data source say ``synthetic``) into a temporary folder, never into ``runs/``, then times:
a cold build, a rebuild with nothing changed, and a rebuild after 1 % new runs, each with its CPU time, the
load average, the peak resident memory of the whole process tree and the site's size and largest file. The
numbers in the runs are curves from a formula, not measurements; they exist only to load the site builder.
The machine is often shared: read the wall times against the load average printed beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

OPTIMIZERS = {  # name: (family, root_free, state bytes/param, step-time ratio, best log10 lr)
    "adamw": ("adam", False, 8.0, 1.0, -3.0),
    "rfadamw": ("adam", True, 8.0, 1.05, -2.5),
    "rmsprop": ("rmsprop", False, 4.0, 0.9, -3.2),
    "rfrmsprop": ("rmsprop", True, 4.0, 0.95, -2.7),
    "shampoo": ("shampoo", False, 20.0, 3.0, -2.8),
    "ifshampoo": ("shampoo", True, 22.0, 2.2, -2.4),
    "sgd": ("sgd", None, 4.0, 0.6, -1.0),
    "synthetic-retired": ("other", None, 12.0, 1.4, -2.0),
}
LRS_PER_DECADE = 3
N_LRS = 10
PRECISION_EXTRA = ("bf16", "bf16-pure")
SEEDS = 3
EVALS = 11


def plan(n_runs: int) -> list[dict]:
    """The synthetic run specs, tasks x tiers x optimizers x configs x seeds, cut at ``n_runs``."""
    per_task_tier = len(OPTIMIZERS) * (N_LRS + 2 * len(PRECISION_EXTRA)) * SEEDS
    n_tasks = max(1, math.ceil(n_runs / (2 * per_task_tier)))
    specs = []
    kinds = ("mlp", "cnn", "resnet", "lm", "vit")
    for t in range(n_tasks):
        task = f"synthetic-{kinds[t % len(kinds)]}-{t:02d}"
        for tier in ("full", "quick"):
            for opt, (_, _, _, _, best) in OPTIMIZERS.items():
                lrs = [10 ** (best + (i - N_LRS // 2) / LRS_PER_DECADE) for i in range(N_LRS)]
                configs = [(lr, "fp32") for lr in lrs] + [
                    (lr, p) for lr in lrs[N_LRS // 2 - 1 : N_LRS // 2 + 1] for p in PRECISION_EXTRA
                ]
                for lr, precision in configs:
                    for seed in range(SEEDS):
                        specs.append(
                            {
                                "task": task,
                                "tier": tier,
                                "optimizer": opt,
                                "lr": lr,
                                "precision": precision,
                                "seed": seed,
                            }
                        )
    return specs[:n_runs]


def make_rows(spec: dict) -> dict:
    """Columns of one synthetic run (a dict of equal-length lists), shaped like the runner's rows."""
    from rootbench.harness.records import SCHEMA_VERSION

    family, root_free, state_bpp, ratio, best = OPTIMIZERS[spec["optimizer"]]
    key = json.dumps(spec, sort_keys=True)
    rid = hashlib.sha256(key.encode()).hexdigest()[:12]
    rng = np.random.default_rng(int(rid[:8], 16))
    full = spec["tier"] == "full"
    steps = 12000 if full else 1500
    eval_every = steps // (EVALS - 1)
    cnn = "cnn" in spec["task"] or "resnet" in spec["task"]
    distance = abs(math.log10(spec["lr"]) - best)
    quality = math.exp(-(distance**2)) * (0.97 if root_free else 1.0) * (0.99 if spec["precision"] != "fp32" else 1)
    diverge_at = None
    if math.log10(spec["lr"]) - best > 1.2 or (spec["precision"] == "bf16-pure" and rng.random() < 0.1):
        diverge_at = int(rng.integers(1, EVALS - 1)) * eval_every
    status = "diverged" if diverge_at else ("error" if rng.random() < 0.003 else "ok")
    step_time = (0.004 if full else 0.02) * ratio * (1 + 0.05 * rng.standard_normal())
    target = 0.7 if full else 0.6
    cols = {
        c: [] for c in ("step", "epoch", "examples_seen", "split", "metric", "value", "train_time_s", "eval_time_s")
    }
    reached = None
    last_step = 0
    for k in range(EVALS):
        step = k * eval_every
        if diverge_at is not None and step >= diverge_at:
            break
        last_step = step
        progress = 1 - math.exp(-3 * quality * step / steps)
        acc = {
            split: min(
                0.999, 0.1 + 0.8 * progress * quality + 0.01 * rng.standard_normal() - (0.03 if split == "test" else 0)
            )
            for split in ("train", "val", "test")
        }
        loss = {split: max(1e-3, 2.3 * (1 - progress * quality) + 0.02 * rng.standard_normal()) for split in acc}
        t = step * step_time
        if reached is None and acc["val"] >= target:
            reached = (step, t)
        rows = [] if k == 0 else [("train_batch", "loss", loss["train"] * 1.05)]
        rows += [(s, m, v[s]) for s in ("train", "val", "test") for m, v in (("loss", loss), ("accuracy", acc))]
        for split, metric, value in rows:
            cols["step"].append(step)
            cols["epoch"].append(step * 128 / 50000)
            cols["examples_seen"].append(step * 128)
            cols["split"].append(split)
            cols["metric"].append(metric)
            cols["value"].append(float(value))
            cols["train_time_s"].append(t)
            cols["eval_time_s"].append(0.2 * k)
    if diverge_at is not None:
        for c, v in (
            ("step", diverge_at),
            ("epoch", diverge_at * 128 / 50000),
            ("examples_seen", diverge_at * 128),
            ("split", "train_batch"),
            ("metric", "loss"),
            ("value", float("nan")),
            ("train_time_s", diverge_at * step_time),
            ("eval_time_s", 0.0),
        ):
            cols[c].append(v)
    n = len(cols["step"])
    n_params = 11_000_000 if cnn else 2_700_000
    hp = {"lr": spec["lr"], "momentum": 0.9, "weight_decay": 5e-4 if cnn else 1e-2}
    if family != "sgd":
        hp.update(lr_cov=1e-3, damping=1e-8)
    task_cfg = {
        "steps": steps,
        "batch_size": 128,
        "eval_every": eval_every,
        "target": target,
        "lr_schedule": "cosine" if full else "constant",
        "warmup_steps": 0,
    }
    run = {
        "run_id": rid,
        "task": spec["task"],
        "tier": spec["tier"],
        "optimizer": spec["optimizer"],
        "seed": spec["seed"],
        "precision": spec["precision"],
        **{f"hp_{k}": v for k, v in hp.items()},
        **{f"task_{k}": v for k, v in task_cfg.items()},
        "optimizer_source_hash": "synthetic",
        "task_source_hash": "synthetic",
        "time_limit_s": None,
        "config_json": json.dumps({"synthetic": True, **spec, "hparams": hp, "task_config": task_cfg}, sort_keys=True),
        "target": target,
        "metric_name": "accuracy",
        "higher_is_better": True,
        "batch_size": 128,
        "family": family,
        "wd_kind": "decoupled",
        "status": status,
        "status_message": {
            "ok": "",
            "diverged": f"non-finite loss at step {diverge_at}",
            "error": "SyntheticError: made-up failure for the site benchmark",
        }[status],
        "diverged_step": diverge_at,
        "n_params": n_params,
        "param_bytes": 4 * n_params,
        "grad_bytes": 4 * n_params,
        "opt_step_time_s": step_time * 0.2,
        "adamw_step_time_s": step_time * 0.2 / ratio,
        "step_time_ratio_adamw": ratio * (1 + 0.03 * rng.standard_normal()),
        "setup_time_s": 3.0,
        "peak_mem_total_bytes": int(n_params * (8 + state_bpp) * 1.5),
        "peak_mem_bytes": int(n_params * (4 + state_bpp)),
        "peak_mem_kind": "synthetic",
        "baseline_mem_bytes": 4 * n_params,
        "fp16_skipped_steps": 0,
        "opt_state_bytes": int(state_bpp * n_params),
        "opt_state_bytes_per_param": state_bpp,
        "data_wait_s": 0.1,
        "data_wait_share": 0.01,
        "data_source": "synthetic (leaderboard/bench_build.py)",
        "steps_completed": diverge_at or steps,
        "total_train_time_s": last_step * step_time,
        "total_eval_time_s": 0.2 * EVALS,
        "wall_time_s": last_step * step_time + 5,
        "steps_to_target": reached[0] if reached else None,
        "time_to_target_s": reached[1] if reached else None,
        "git_sha": "synthetic",
        "git_dirty": False,
        "rootbench_version": "synthetic",
        "torch_version": "synthetic",
        "cuda_version": "",
        "device": "synthetic GPU" if full else "synthetic CPU",
        "cpu": "synthetic",
        "hostname": "synthetic",
        "num_threads": 2,
        "python_version": "synthetic",
        "started_at": "2026-01-01T00:00:00+00:00",
        "schema_version": SCHEMA_VERSION,
    }
    return {**{k: [v] * n for k, v in run.items()}, **cols}


def schema2_table(cols: dict):
    """The columns as a table typed the way ``harness.records`` writes schema 2: the often-empty run-level
    columns in their one type (``records.COLUMN_TYPES``; an all-empty column would otherwise be parquet's null
    type), strings as large_string (what pandas, the runner's writer, stores)."""
    import pyarrow as pa

    from rootbench.harness.records import COLUMN_TYPES

    table = pa.table(cols)
    fields = []
    for f in table.schema:
        if f.name in COLUMN_TYPES:
            f = pa.field(f.name, getattr(pa, COLUMN_TYPES[f.name])())
        fields.append(pa.field(f.name, pa.large_string()) if f.type == pa.string() else f)
    return table.cast(pa.schema(fields))


def _write_chunk(args) -> int:
    import pyarrow.parquet as pq

    root, specs = args
    for spec in specs:
        cols = make_rows(spec)
        rid, task, opt = cols["run_id"][0], cols["task"][0], cols["optimizer"][0]
        folder = os.path.join(root, task, opt)
        os.makedirs(folder, exist_ok=True)
        pq.write_table(schema2_table(cols), os.path.join(folder, f"{rid}.parquet"))
    return len(specs)


def generate(root: str, specs: list[dict], jobs: int) -> None:
    chunks = [(root, specs[i::jobs]) for i in range(jobs)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_write_chunk, chunks))
    else:
        _write_chunk(chunks[0])


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _memory(pid: str) -> tuple[int, int]:
    """(proportional set size, resident size) of one process in bytes. PSS counts a page shared by several
    processes (the libraries a forked reader shares with its server) once in all, split among them; RSS
    counts it in every process, so a sum of RSS over a tree of forked processes overstates its memory."""
    rss = pss = 0
    with open(f"/proc/{pid}/stat") as f:
        rss = int(f.read().rsplit(")", 1)[1].split()[21]) * os.sysconf("SC_PAGE_SIZE")
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except OSError:  # no smaps_rollup (an old kernel): the resident size stands in
        pss = rss
    return pss, rss


def _process_name(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    for marker, name in (
        ("rootbench.leaderboard.declared", "registry child"),
        ("forkserver import main", "reader"),
        ("resource_tracker", "resource tracker"),
    ):
        if marker in text:
            return name
    return "main" if int(pid) == os.getpid() else text[:40]


def _tree_memory() -> dict[str, tuple[int, int, str]]:
    """{pid: (PSS, RSS, what it is)} of this process and all its descendants now (Linux /proc; empty elsewhere)."""
    kids: dict[str, list[str]] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                kids.setdefault(f.read().rsplit(")", 1)[1].split()[1], []).append(name)
        except (OSError, IndexError):
            continue
    out, todo = {}, [str(os.getpid())]
    while todo:
        pid = todo.pop()
        try:
            out[pid] = (*_memory(pid), _process_name(pid))
        except (OSError, ValueError, IndexError):
            pass
        todo += kids.get(pid, [])
    return out


class PeakMemory:
    """The largest proportional set size of this process tree, sampled every ``every`` seconds while running,
    with each process's share at that moment (``parts``) and the largest sum of resident sizes (``peak_rss``)."""

    def __init__(self, every: float = 0.05):
        import threading

        self.peak, self.peak_rss, self.parts, self.every = 0, 0, [], every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            now = _tree_memory()
            pss = sum(m[0] for m in now.values())
            self.peak_rss = max(self.peak_rss, sum(m[1] for m in now.values()))
            if pss > self.peak:
                self.peak = pss
                self.parts = sorted(((name, p) for p, _, name in now.values()), key=lambda x: -x[1])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def site_size(folder: str) -> tuple[int, int, str, int]:
    """(total bytes, files, largest file, its bytes) of a built site."""
    total, n, largest = 0, 0, ("", 0)
    for dirpath, _, files in os.walk(folder):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            total, n = total + size, n + 1
            if size > largest[1]:
                largest = (os.path.relpath(os.path.join(dirpath, f), folder), size)
    return total, n, largest[0], largest[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="number of synthetic runs")
    ap.add_argument("--jobs", type=int, default=None, help="processes for reading (default: CPUs)")
    ap.add_argument("--keep", default=None, help="keep the synthetic runs and site in this folder")
    args = ap.parse_args(argv)

    from rootbench.leaderboard.build import build

    base = args.keep or tempfile.mkdtemp(prefix="rootbench-synthetic-")
    runs, site = os.path.join(base, "synthetic-runs"), os.path.join(base, "site")
    specs = plan(args.runs)
    extra = plan(int(args.runs * 1.01) + 1)[len(specs) :] or [dict(specs[0], seed=99)]
    mib = 2**20
    try:
        t0 = time.perf_counter()
        if not (args.keep and os.path.isdir(runs)):
            generate(runs, specs, os.cpu_count() or 1)
        print(f"generated {len(specs)} synthetic runs in {time.perf_counter() - t0:.1f} s under {runs}")
        quiet = [0]

        def warn(m):
            quiet[0] += 1

        if os.path.exists(site):
            shutil.rmtree(site)
        for label, prepare in (
            ("cold build", None),
            ("rebuild, nothing changed", None),
            (f"rebuild after {len(extra)} new runs", lambda: generate(runs, extra, 1)),
        ):
            if prepare:
                prepare()
            cpu0, load0 = _cpu_seconds(), os.getloadavg()
            with PeakMemory() as peak:
                info = build(runs, site, warn=warn, jobs=args.jobs)
            cpu, load1 = _cpu_seconds() - cpu0, os.getloadavg()
            t = info["timings"]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k != "total")
            readers = info.get("worker_cpu") or {}
            if readers:
                parts += (
                    f"; readers' CPU: reading {readers.get('read', 0):.1f} s, run pages {readers.get('each', 0):.1f} s"
                )
            print(
                f"{label}: {t['total']:.1f} s wall, {cpu:.1f} s CPU (this process and the children it waited for), "
                f"load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} before, "
                f"{load1[0]:.2f} after; {info['n_runs']} runs ({info['n_read']} files read, "
                f"{info['pages_rendered']} run pages rendered"
                f"{', site kept as it was' if info.get('unchanged') else ''})"
                f" [{parts}]"
            )
            parts = ", ".join(f"{name} {b / mib:.0f}" for name, b in peak.parts if b >= mib)
            print(
                f"  peak memory of the whole process tree: {peak.peak / mib:.0f} MiB ({peak.peak / 1e9:.2f} GB) "
                f"proportional set size, sampled every 0.05 s [{parts}]; sum of resident sizes, which counts "
                f"shared library pages once per process: {peak.peak_rss / mib:.0f} MiB"
            )
            total, n, big, big_size = site_size(site)
            print(f"  site: {total / mib:.1f} MiB in {n} files; largest {big} ({big_size / mib:.1f} MiB)")
            sys.stdout.flush()
        print(f"{quiet[0]} warnings; cpus: {os.cpu_count()}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
