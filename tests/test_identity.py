"""A run's id covers all code it executes: an edit to a shared helper is a cache miss.

The test copies the four packages into a temporary folder that shadows the installed namespace
(``PYTHONPATH``), runs the same config twice there (the second is a cache hit), edits one file of the
copy and runs the config again: a helper the optimizer imports, the runner, or a task helper changes
the run id; an unrelated optimizer's file does not.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from rootbench.harness import identity
from rootbench.harness.config import RunConfig
from rootbench.harness.resolve import resolve_run
from tests.conftest import ROOT

PACKAGES = ("harness", "optimizers", "tasks", "leaderboard")
SCRIPT = """
import json, sys
from rootbench.harness.config import RunConfig
from rootbench.harness.execute import get_or_run
from rootbench.harness.resolve import resolve_run

spec = resolve_run("quadratic", "rfadamw", RunConfig(tier="smoke", ref_steps=0))
out = get_or_run(spec, sys.argv[1], in_process=True)
import rootbench.optimizers._common as common
print(json.dumps({"run_id": spec.run_id, "cached": out.cached, "status": out.status, "common": common.__file__}))
"""


@pytest.fixture
def copy(tmp_path):
    base = tmp_path / "code" / "rootbench"
    for pkg in PACKAGES:
        shutil.copytree(os.path.join(ROOT, pkg), base / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _run(copy):
    env = {**os.environ, "PYTHONPATH": str(copy / "code"), "ROOTBENCH_NO_COMPILE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(copy / "runs")],
        env=env,
        cwd=str(copy),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _edit(copy, rel):
    path = copy / "code" / "rootbench" / rel
    path.write_text(path.read_text() + "\n# an edit\n")


@pytest.mark.slow
def test_editing_a_shared_helper_is_a_cache_miss(copy):
    first = _run(copy)
    assert str(copy) in first["common"], "the copy must shadow the installed package"
    again = _run(copy)
    assert again == {**first, "cached": True}  # same code, same config: a cache hit
    _edit(copy, "optimizers/sgd.py")  # code rfadamw never imports: still a hit
    assert _run(copy) == {**first, "cached": True}
    seen = {first["run_id"]}
    for rel in (
        "optimizers/_common.py",
        "optimizers/_compiled.py",
        "harness/runner.py",
        "harness/measure.py",
        "tasks/_base.py",
    ):
        _edit(copy, rel)
        out = _run(copy)
        assert out["run_id"] not in seen and not out["cached"], f"editing {rel} must change the run id"
        seen.add(out["run_id"])


def test_identity_lists_the_modules_a_run_executes():
    spec = resolve_run("cifar10-resnet", "rfadamw", RunConfig(tier="smoke"))
    names = identity.code_files([spec.optimizer.source_file, spec.task.source_file])
    assert {
        "rootbench.optimizers.rfadamw",
        "rootbench.optimizers._common",
        "rootbench.optimizers._compiled",
        "rootbench.tasks.cifar",
        "rootbench.tasks._images",
        "rootbench.harness.runner",
        "rootbench.harness.measure",
    } <= set(names)
    # other optimizers, the store, the CLI and the site are not part of what a run executes
    assert not {
        "rootbench.optimizers.sgd",
        "rootbench.harness.records",
        "rootbench.harness.cli",
        "rootbench.leaderboard.build",
    } & set(names)
    assert spec.identity["code"] == identity.code_hash([spec.optimizer.source_file, spec.task.source_file])
