"""Getting a run's result: ``get_or_run(spec, runs)``, the one rule for "already stored?".

``bench``, ``sweep``, ``regress`` and the tests all go through it:

- a stored, readable result of the same run id is returned as is (a cache hit), unless ``force``; a
  stored failure (oom, timeout, error) is returned too, flagged, and rerun only with ``retry_failed``;
- otherwise the run executes in a fresh worker process (its memory high-water mark is its own), and its
  rows are written atomically by ``records.write_run``;
- one computation per run id: a second identical request on this machine waits for the first (a file
  lock) and then finds its result.

Worker hygiene (Linux): a worker (``harness/worker.py``) runs in its own process group and dies with
its parent on any signal, ``kill -9`` included (``PR_SET_PDEATHSIG``); an interrupt of the parent
(SIGINT, SIGTERM) stops the worker (SIGTERM, then SIGKILL after ``GRACE_S``) and raises
``KeyboardInterrupt`` here; a worker may be given a memory limit (``RLIMIT_DATA``, plus an RSS watchdog),
past which the run ends as ``oom``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from rootbench.harness import records
from rootbench.harness.registry import UsageError
from rootbench.harness.resolve import RunSpec

POLL_S = 0.2  # how often the parent checks the worker, its memory and the stop flag
GRACE_S = 5.0  # a stopped worker gets this long after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Outcome:
    """A run's record and how it was obtained."""

    record: records.Record
    cached: bool
    path: str | None

    @property
    def status(self) -> str:
        return self.record.status


class StoredFailure(UsageError):
    """Raised by callers that treat a cached failure as an error (the message says how to retry)."""


# ---------------------------------------------------------------------------------------------
# memory


def default_memory_limit() -> int | None:
    """A safe share of this machine for one run: 80 % of physical memory (None where unknown)."""
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def parse_memory(text: str | None) -> int | None:
    """``"8G"``, ``"512M"``, ``"0.5"`` (a share of physical memory), ``"none"`` -> bytes or None."""
    if text is None or str(text).lower() in ("", "default"):
        return default_memory_limit()
    s = str(text).strip().lower()
    if s in ("none", "off", "0"):
        return None
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    try:
        if s[-1] in units:
            value = float(s[:-1]) * units[s[-1]]
        else:
            value = float(s)
            if value <= 1:  # a share of the machine
                total = default_memory_limit()
                value = value * total / 0.8 if total else float("nan")
    except (ValueError, IndexError):
        raise UsageError(f"cannot read memory limit {text!r}: use e.g. 8G, 512M, 0.5 (a share) or none") from None
    if not value > 2**26:
        raise UsageError(f"memory limit {text!r} is below 64 MiB; a run cannot start in that")
    return int(value)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# the worker process


def progress_bar(spec: RunSpec):
    """A tqdm bar on stderr: steps, the last loss, the last validation values."""
    from tqdm import tqdm

    bar = {"bar": None}
    label = f"{spec.task_name}/{spec.optimizer_name}"

    def progress(step, total, info):
        if bar["bar"] is None and total:
            bar["bar"] = tqdm(
                total=total, desc=label, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr, mininterval=0.5
            )
        b = bar["bar"]
        if b is None:
            return
        if "loss" in info and step % 25 == 0:
            b.set_postfix_str(f"loss {float(info['loss'].detach()):.4g}", refresh=False)
        if info.get("eval"):
            b.set_postfix_str(" ".join(f"val_{k} {v:.4g}" for k, v in info["eval"].items()), refresh=False)
        if total:
            b.update(step - b.n)
            if step >= total:
                b.close()

    return progress


def _stop(proc) -> None:
    """SIGTERM the worker, SIGKILL it after ``GRACE_S``; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
    proc.wait()


def _start_worker(spec: RunSpec, show_progress: bool, memory_limit: int | None):
    """The worker process (``harness/worker.py``) and the read end of its result pipe."""
    read_fd, write_fd = os.pipe()
    try:
        # its own process group: a terminal's Ctrl-C reaches the parent only, which stops the worker itself
        proc = subprocess.Popen(
            [sys.executable, "-m", "rootbench.harness.worker", str(write_fd)],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            process_group=0,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    request = {
        "request": spec.request(),
        "parent_pid": os.getpid(),
        "show_progress": show_progress,
        "memory_limit": memory_limit,
    }
    try:
        proc.stdin.write(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the worker died at start; its exit code says so below
    return proc, read_fd


def run_in_worker(
    spec: RunSpec, show_progress: bool = False, memory_limit: int | None = None, stop: threading.Event | None = None
) -> list[dict]:
    """Run ``spec`` in a fresh process; a dead or over-limit worker becomes rows with status oom/error.

    Raises ``KeyboardInterrupt`` (after stopping the worker) when interrupted or when ``stop`` is set.
    """
    from rootbench.harness.runner import failure_rows

    proc, fd = _start_worker(spec, show_progress, memory_limit)
    chunks, over = [], None
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:  # EOF: the worker closed its end (finished or died)
                    break
                chunks.append(chunk)
                continue
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            # the watchdog backs up RLIMIT_DATA (which does not see every kind of mapping)
            if memory_limit and _rss_bytes(proc.pid) > memory_limit:
                over = _rss_bytes(proc.pid)
                break
    except BaseException:
        _stop(proc)
        raise
    finally:
        os.close(fd)
    if over:
        _stop(proc)
        return failure_rows(
            spec,
            "oom",
            f"worker exceeded the memory limit of {memory_limit / 2**30:.2f} GiB "
            f"(RSS {over / 2**30:.2f} GiB); --memory-limit raises it",
        )
    proc.wait()
    try:
        msg = pickle.loads(b"".join(chunks)) if chunks else None
    except (pickle.UnpicklingError, EOFError, ValueError):
        msg = None
    if msg is None:
        code = proc.returncode
        status = "oom" if code == -signal.SIGKILL else "error"  # SIGKILL in a run is almost always the OOM killer
        return failure_rows(spec, status, f"worker process died (exit code {code})")
    if msg[0] == "interrupted":
        raise KeyboardInterrupt
    if msg[0] == "usage":
        raise UsageError(msg[1])
    if msg[0] == "exception":
        return failure_rows(spec, "oom" if _is_oom_text(msg[1]) else "error", msg[1], traceback=msg[2][-4000:])
    return msg[1]


def _is_oom_text(text: str) -> bool:
    t = text.lower()
    return (
        "out of memory" in t
        or "can't allocate memory" in t
        or "cannot allocate memory" in t
        or t.startswith("memoryerror")
    )


# ---------------------------------------------------------------------------------------------
# one computation per run id


@contextlib.contextmanager
def run_lock(path: str, on_wait=None, stop: threading.Event | None = None):
    """An exclusive lock for computing the result at ``path`` (same machine); waits if another holds it, and
    while waiting raises ``KeyboardInterrupt`` once ``stop`` is set (an interrupted sweep does not wait out
    another process's run)."""
    if "://" in path and not path.startswith("file://"):
        yield
        return
    import fcntl

    folder = os.path.join(tempfile.gettempdir(), "rootbench-locks")
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha256(os.path.abspath(records.storage(path)[1]).encode()).hexdigest()[:24]
    with open(os.path.join(folder, f"{name}.lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            if stop is None:
                fcntl.flock(f, fcntl.LOCK_EX)
            else:
                while True:
                    if stop.is_set():
                        raise KeyboardInterrupt from None
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# the rule


def cached_record(
    spec: RunSpec, runs: str, *, force: bool = False, retry_failed: bool = False
) -> records.Record | None:
    """The one rule for cache hits: the stored record of ``spec`` if it may be reused, else None.

    Reused: any readable stored result, failures included (flagged ``record.failed``), unless ``force``,
    or ``retry_failed`` and it failed. An unreadable stored file raises ``ResultsError`` naming it.
    """
    if force:
        return None
    rec = records.lookup(runs, spec.task_name, spec.optimizer_name, spec.run_id)
    if rec is None or (rec.failed and retry_failed):
        return None
    return rec


def get_or_run(
    spec: RunSpec,
    runs: str = "runs",
    *,
    force: bool = False,
    retry_failed: bool = False,
    in_process: bool = False,
    show_progress: bool = False,
    write: bool = True,
    memory_limit: int | None = None,
    stop: threading.Event | None = None,
    rerun_unreadable: bool = False,
    on_wait=None,
) -> Outcome:
    """The stored result of ``spec`` if there is a usable one, else run it now and store it.

    An unreadable stored file raises ``ResultsError`` naming it (``rerun_unreadable`` reruns instead);
    ``write=False`` runs without storing (DDP ranks other than 0).
    """
    from rootbench.harness.runner import run

    path = records.run_path(runs, spec.task_name, spec.optimizer_name, spec.run_id)

    def stored():
        try:
            return cached_record(spec, runs, force=force, retry_failed=retry_failed)
        except records.ResultsError:
            if rerun_unreadable:
                return None
            raise

    rec = stored()
    if rec is not None:
        return Outcome(rec, True, path)
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt  # stopped before this run began: no worker is started
    with run_lock(path, on_wait, stop) if write else contextlib.nullcontext():
        rec = stored()  # another process may have finished it while we waited for the lock
        if rec is not None:
            return Outcome(rec, True, path)
        if in_process:
            rows = run(spec, progress=progress_bar(spec) if show_progress else None)
        else:
            rows = run_in_worker(spec, show_progress=show_progress, memory_limit=memory_limit, stop=stop)
        if stop is not None and stop.is_set() and rows[0]["status"] in records.FAILED:
            raise KeyboardInterrupt  # a failure caused by the interrupt is not a result
        if write:
            records.write_run(rows, runs)
    return Outcome(records.record_from_rows(rows, path if write else None), False, path if write else None)
