"""Run ids, provenance and the results store: one tidy parquet file per run, written atomically.

Layout: ``runs/<task>/<optimizer>/<run_id>.parquet`` (sweep manifests: ``runs/sweeps/``, not runs).
The root may also be a pyarrow filesystem URI (``file:///shared/runs``, ``s3://bucket/runs``) so that
workers on other machines (``rootbench sweep --backend ray``) write to one store. ``run_id`` hashes
the fully resolved config (task, tier, task settings, optimizer, hyperparameters, seed, precision)
with the source hashes of the optimizer's and the task's files, so an identical rerun is a cache hit
and a code change is not.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import posixpath
import socket
import subprocess
import tempfile
import uuid

import pandas as pd

SCHEMA_VERSION = 1
REQUIRED_COLUMNS = ("run_id", "task", "tier", "optimizer", "seed", "precision", "step", "epoch", "split", "metric",
                    "value", "train_time_s", "status", "git_sha", "git_dirty", "rootbench_version", "torch_version",
                    "cuda_version", "device", "cpu", "hostname", "started_at", "schema_version")
STATUSES = ("ok", "diverged", "oom", "timeout", "error")
FAILED = ("oom", "timeout", "error")  # environment failures; "diverged" is a legitimate outcome
SWEEPS_DIR = "sweeps"  # runs/sweeps/<task>/<optimizer>/<sweep_id>.json: sweep manifests, skipped by find_runs
# folders under the results root that are not leaderboard runs: sweep manifests, regression-gate
# baselines (runs of the gate's own short configs) and optimizer micro-benchmarks
NOT_RUNS = (SWEEPS_DIR, "baselines", "bench-optim")
HERE = os.path.dirname(os.path.abspath(__file__))


class ResultsError(ValueError):
    """A results file that cannot be used (corrupt, truncated, unknown schema, missing columns)."""


def run_id(identity: dict) -> str:
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_path(root: str, task: str, optimizer: str, rid: str) -> str:
    return os.path.join(root, task, optimizer, f"{rid}.parquet")


def storage(path: str):
    """(pyarrow filesystem, path inside it) for a URI; (None, local path) for a plain or ``file://`` path."""
    if "://" not in path:
        return None, path
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    if isinstance(filesystem, fs.LocalFileSystem):
        return None, inner  # local files keep the temp-file + os.replace atomic write
    return filesystem, inner


def exists(path: str) -> bool:
    filesystem, inner = storage(path)
    if filesystem is None:
        return os.path.exists(inner)
    from pyarrow import fs

    return filesystem.get_file_info(inner).type != fs.FileType.NotFound


# ---------------------------------------------------------------------------------------------
# provenance

@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(sha, dirty) of the rootbench checkout, or ("unknown", False) outside a git tree."""
    top = os.path.dirname(HERE)
    try:
        head = subprocess.run(["git", "-C", top, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        sha = head.stdout.strip() if head.returncode == 0 else ""
        status = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown"), bool(status)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device) -> dict:
    import torch

    from rootbench.harness import __version__

    sha, dirty = git_state()
    dev = str(device)
    if getattr(device, "type", "cpu") == "cuda":
        dev = torch.cuda.get_device_name(device)
    return {
        "git_sha": sha, "git_dirty": dirty, "rootbench_version": __version__, "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "", "device": dev, "cpu": cpu_name(), "hostname": socket.gethostname(),
        "num_threads": torch.get_num_threads(), "python_version": platform.python_version(),
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
    }


# ---------------------------------------------------------------------------------------------
# store

def write_run(rows: list[dict], root: str = "runs") -> str:
    """Write one run's rows to its parquet file atomically (temp file in the same folder + rename)."""
    if not rows:
        raise ResultsError("refusing to write a run with no rows")
    first = rows[0]
    path = run_path(root, first["task"], first["optimizer"], first["run_id"])
    df = pd.DataFrame(rows)
    filesystem, inner = storage(path)
    if filesystem is not None:  # a remote store: write a temp object beside it, then move it into place
        folder = posixpath.dirname(inner)
        filesystem.create_dir(folder, recursive=True)
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}.partial"
        try:
            df.to_parquet(tmp, index=False, filesystem=filesystem)
            filesystem.move(tmp, inner)
        except BaseException:
            try:
                filesystem.delete_file(tmp)
            except OSError:
                pass
            raise
        return path
    os.makedirs(os.path.dirname(inner), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(inner), prefix=".tmp-", suffix=".partial")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared, like any file written normally
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, inner)  # a killed writer leaves only a .partial temp file, never a bad .parquet
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_run(path: str) -> pd.DataFrame:
    """Read and validate one run file; raises ``ResultsError`` naming the file and the problem."""
    try:
        filesystem, inner = storage(path)
        df = pd.read_parquet(inner, filesystem=filesystem)
    except Exception as e:  # pyarrow raises several types for truncated or foreign files
        raise ResultsError(f"{path}: not a readable parquet file ({type(e).__name__}: {e}); "
                           "delete it or rerun with --force") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}; it was not written by this rootbench")
    versions = set(df["schema_version"].unique())
    if versions != {SCHEMA_VERSION}:
        raise ResultsError(f"{path}: schema version {sorted(versions)} is not {SCHEMA_VERSION}; "
                           "rerun it with this rootbench")
    if df.empty:
        raise ResultsError(f"{path}: no rows")
    return df


def find_runs(root: str = "runs") -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.normpath(dirpath) == os.path.normpath(root):
            dirnames[:] = [d for d in dirnames if d not in NOT_RUNS]
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".parquet")]
    return out


def load_runs(root: str = "runs", warn=None) -> pd.DataFrame:
    """All valid runs under ``root`` concatenated; bad files are skipped with one warning each."""
    frames = []
    for path in find_runs(root):
        try:
            df = read_run(path)
        except ResultsError as e:
            if warn:
                warn(f"skipping {e}")
            continue
        df["path"] = path
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS) + ["path"])
    return pd.concat(frames, ignore_index=True, sort=False)


def find_run_file(root: str, rid: str) -> str | None:
    for path in find_runs(root):
        if os.path.basename(path) == f"{rid}.parquet":
            return path
    return None
