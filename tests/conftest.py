"""Shared fixtures. Real-data tests skip (with the reason) when ROOTBENCH_DATA lacks the files."""

import os

import pytest

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
