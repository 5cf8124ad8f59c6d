"""Fault injection: kill single runs and sweeps at random points, many times, and check the store.

    .venv/bin/python -m tests.faults [--kills 40] [--seed 0] [--out DIR]

Each round starts ``rootbench bench`` or ``rootbench sweep`` (two workers) on the smoke tier, waits a
random 0.3-30 s, and sends SIGKILL to the rootbench process alone (``kill -9 <pid>``), or SIGTERM or
SIGINT to its process group (``kill -TERM``, a terminal's Ctrl-C). The configurations repeat across
rounds, so later rounds meet finished runs, cache hits and interrupted work. After every round it checks:

- no partial files: nothing under the results folder but ``*.parquet`` runs and ``*.json`` manifests;
- every stored file reads (``records.read_record``) and no stored run was computed twice (a run id's
  ``started_at`` never changes once written);
- no orphans: 5 s after rootbench exited, no process it started (tagged through the environment) lives;
- SIGTERM and SIGINT end with exit code 143 / 130 (or death by that signal, which a shell reports as the
  same code, when it lands in the interpreter's last moments) and no traceback.

It prints one line per round and the totals; the README quotes them.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from rootbench.harness import records

OPTIMIZERS = ("sgd", "adamw", "rfrmsprop")


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (everything a round started, grandchildren too)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if tag.encode() not in f.read():
                    continue
            with open(f"/proc/{name}/stat") as f:
                if f.read().split()[2] != "Z":
                    out.append(int(name))
        except OSError:
            continue
    return out


def command(rng: random.Random, runs: str) -> list[str]:
    if rng.random() < 0.5:
        opt = rng.choice(OPTIMIZERS)
        return [
            "bench",
            "--task",
            "quadratic",
            "--opt",
            opt,
            "--tier",
            "smoke",
            "--ref-steps",
            "0",
            "--quiet",
            "--seed",
            str(rng.randrange(3)),
            "--runs",
            runs,
            f"steps={rng.choice((200, 400))}",
        ]
    return [
        "sweep",
        "--task",
        "quadratic",
        "--opt",
        rng.choice(OPTIMIZERS),
        "--tier",
        "smoke",
        "--trials",
        "3",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--threads",
        "1",
        "--ref-steps",
        "0",
        "--quiet",
        "--seed",
        str(rng.randrange(2)),
        "--runs",
        runs,
    ]


def check_store(runs: str, started: dict) -> dict:
    """Partial files, unreadable files and recomputed runs under ``runs``; updates ``started``."""
    bad = {"partial": [], "unreadable": [], "repeated": []}
    for d, _, files in os.walk(runs):
        for f in files:
            path = os.path.join(d, f)
            if not (f.endswith(".parquet") or f.endswith(".json")) or f.startswith("."):
                bad["partial"].append(path)
            elif f.endswith(".parquet"):
                try:
                    rec = records.read_record(path)
                except records.ResultsError as e:
                    bad["unreadable"].append(str(e))
                    continue
                stamp = (rec.run.get("started_at"), rec.run.get("wall_time_s"))
                if started.setdefault(rec.run_id, stamp) != stamp:
                    bad["repeated"].append(rec.run_id)
                    started[rec.run_id] = stamp
            else:
                try:
                    records.read_json(path)
                except records.ResultsError as e:
                    bad["unreadable"].append(str(e))
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results folder (default: a new temporary folder)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    runs = args.out or tempfile.mkdtemp(prefix="rootbench-faults-")
    started: dict = {}
    totals = {
        "kills": 0,
        "partial": 0,
        "unreadable": 0,
        "repeated": 0,
        "orphans": 0,
        "tracebacks": 0,
        "bad_exit_codes": 0,
        "finished_before_signal": 0,
    }
    by_signal: dict = {}
    t_start = time.monotonic()
    for i in range(args.kills):
        cmd = command(rng, runs)
        sig = rng.choice((signal.SIGKILL, signal.SIGTERM, signal.SIGINT))
        delay = rng.uniform(0.3, 30.0)
        tag = f"ROOTBENCH_FAULT_TAG={uuid.uuid4().hex}"
        env = {**os.environ, "ROOTBENCH_FAULT_TAG": tag.split("=", 1)[1]}
        proc = subprocess.Popen(
            [sys.executable, "-m", "rootbench.harness", *cmd],
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        time.sleep(delay)
        finished = proc.poll() is not None
        if finished:
            totals["finished_before_signal"] += 1
        elif sig == signal.SIGKILL:
            os.kill(proc.pid, signal.SIGKILL)  # rootbench alone: its workers must notice and die
        else:
            os.killpg(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        deadline = time.monotonic() + 5
        while tagged_pids(tag.split("=", 1)[1]) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = tagged_pids(tag.split("=", 1)[1])
        for pid in orphans:  # leave the machine clean for the next round
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        bad = check_store(runs, started)
        expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}[sig]
        # dying by the signal itself (-15 / -2, a shell's 143 / 130) is the same outcome: the signal landed in
        # the last moments of interpreter teardown, where Python has put the default handlers back
        bad_exit = not finished and proc.returncode not in (expected, -sig)
        traceback = "Traceback" in (err or "")
        if not finished:
            totals["kills"] += 1
            by_signal[sig.name] = by_signal.get(sig.name, 0) + 1
        totals["partial"] += len(bad["partial"])
        totals["unreadable"] += len(bad["unreadable"])
        totals["repeated"] += len(bad["repeated"])
        totals["orphans"] += len(orphans)
        totals["tracebacks"] += traceback
        totals["bad_exit_codes"] += bad_exit
        print(
            f"round {i:>3}: {cmd[0]:<5} {sig.name:<7} after {delay:4.1f} s -> exit {proc.returncode}"
            + (" (finished first)" if finished else "")
            + "".join(f"; {k} {v}" for k, v in bad.items() if v)
            + (f"; orphans {orphans}" if orphans else "")
            + ("; TRACEBACK" if traceback else "")
            + ("; unexpected exit code" if bad_exit else ""),
            flush=True,
        )
    n_runs = len(started)
    print(
        f"\n{args.kills} rounds in {time.monotonic() - t_start:.0f} s: {totals['kills']} kills "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_signal.items()))}), {totals['finished_before_signal']} "
        f"finished before the signal; {n_runs} runs stored; partial files {totals['partial']}, unreadable "
        f"{totals['unreadable']}, recomputed runs {totals['repeated']}, orphaned processes {totals['orphans']}, "
        f"tracebacks {totals['tracebacks']}, unexpected exit codes {totals['bad_exit_codes']}"
    )
    failed = sum(totals[k] for k in ("partial", "unreadable", "repeated", "orphans", "tracebacks", "bad_exit_codes"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
