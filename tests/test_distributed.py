"""DDP: 2 CPU processes (gloo) reproduce the single-process run on the same global batch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rootbench.harness.records import find_runs, read_run
from tests.conftest import ROOT

TOLERANCE = 1e-5  # relative, on every recorded loss/metric: only the all-reduce's summation order differs


def bench(runs, opt, *launcher):
    cmd = [
        *launcher,
        "-m",
        "rootbench.harness",
        "bench",
        "--task",
        "quadratic",
        "--opt",
        opt,
        "--tier",
        "smoke",
        "--quiet",
        "--ref-steps",
        "0",
        "--in-process",
        "--runs",
        runs,
        "steps=40",
        "eval_every=10",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = find_runs(runs)
    return read_run(path).sort_values(["step", "split", "metric"]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("opt", ["sgd", "adamw", "rfrmsprop"])
def test_two_gloo_processes_match_one_process(opt, tmp_path):
    single = bench(str(tmp_path / "single"), opt, sys.executable)
    ddp = bench(
        str(tmp_path / "ddp"),
        opt,
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
    )
    assert (ddp["world_size"] == 2).all() and (single["world_size"] == 1).all()
    assert (ddp["status"] == "ok").all()
    assert list(ddp["step"]) == list(single["step"]) and list(ddp["split"]) == list(single["split"])
    assert list(ddp["examples_seen"]) == list(single["examples_seen"])
    np.testing.assert_allclose(ddp["value"], single["value"], rtol=TOLERANCE, atol=1e-7)
