"""Provenance columns of every run row: code version, libraries, device and host."""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(sha, dirty) of the rootbench checkout, or ("unknown", False) outside a git tree (an installed wheel).

    A copy of the tree without ``.git`` (the working tree sent to a lent GPU machine) can name its commit in
    ``ROOTBENCH_GIT_SHA``; it is used only where git gives none, and such a copy is not reported dirty.
    """
    top = os.path.dirname(HERE)
    try:
        head = subprocess.run(
            ["git", "-C", top, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, timeout=10
        )
        sha = head.stdout.strip() if head.returncode == 0 else ""
        status = subprocess.run(
            ["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if sha:
            return sha, bool(status)
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("ROOTBENCH_GIT_SHA", "").strip() or "unknown", False


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
        "git_sha": sha,
        "git_dirty": dirty,
        "rootbench_version": __version__,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "device": dev,
        "cpu": cpu_name(),
        "hostname": socket.gethostname(),
        "num_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
