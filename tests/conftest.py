"""Shared fixtures. Real-data tests skip (with the reason) when ROOTBENCH_DATA lacks the files."""

import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return str(d)


def rootbench(*argv, runs=None):
    """Run the CLI in this process; returns (exit code)."""
    from rootbench.harness.cli import main

    args = list(argv)
    if runs is not None and args and args[0] in ("bench",):
        args += ["--runs", runs]
    return main(args)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest and avoids OpenMP stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
