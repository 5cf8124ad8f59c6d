"""``rootbench eval-weights``: its "recorded" numbers are the runner's own, its training-iterate numbers are
the weights the optimizer steps, and its round trip measures what eval() / train() fail to restore."""

import pytest
import torch

from rootbench.harness import run as harness_run
from rootbench.harness.config import RunConfig
from rootbench.harness.eval_weights import trace
from rootbench.harness.registry import OPTIMIZERS, UsageError
from rootbench.harness.resolve import resolve_run
from rootbench.optimizers import get_optimizer_spec, list_optimizers
from tests.conftest import rootbench

EVAL_MODE = [name for name in list_optimizers() if get_optimizer_spec(name).eval_mode]  # plugins included


def _smoke(task, opt, **fields):
    return resolve_run(task, opt, RunConfig(tier="smoke", ref_steps=0, threads=1, **fields))


@pytest.mark.parametrize("opt", EVAL_MODE or [pytest.param("none", marks=pytest.mark.skip("no eval_mode optimizer"))])
def test_recorded_column_is_the_runners_number_and_fp32_round_trip_is_exact(opt):
    spec = _smoke("mnist1d-mlp", opt)
    points = trace(spec)["points"]
    rows = harness_run("mnist1d-mlp", opt, RunConfig(tier="smoke", ref_steps=0, threads=1))
    metric = spec.task.metric
    for split in ("val", "test"):
        runner = {r["step"]: r["value"] for r in rows if r["split"] == split and r["metric"] == metric}
        assert {p["step"]: p[f"recorded_{split}"] for p in points} == runner
    assert len(points) >= 2
    assert max(p["round_trip_max_abs"] for p in points) < 1e-5  # fp32: lerp there and back, a few ulps


class _Planted(torch.optim.SGD):
    """eval() adds 0.25 to every parameter; train() takes back 0.125: the round trip leaves 0.125."""

    def __init__(self, params, lr: float = 0.05):
        super().__init__(params, lr=lr)

    @torch.no_grad()
    def eval(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.add_(0.25)

    @torch.no_grad()
    def train(self):
        for g in self.param_groups:
            for p in g["params"]:
                p.sub_(0.125)


def test_training_iterate_and_round_trip_are_measured_on_the_right_weights():
    from rootbench.optimizers import register_optimizer

    register_optimizer("test_planted_swap", _Planted, family="sgd", paper="https://example.org", eval_mode=True)
    try:
        points = trace(_smoke("quadratic", "test_planted_swap"))["points"]
    finally:
        del OPTIMIZERS["test_planted_swap"]
    assert [p["round_trip_max_abs"] for p in points] == pytest.approx([0.125] * len(points))
    # the quadratic's metric is its loss: weights shifted by +0.25 evaluate differently from the iterate
    assert all(p["train_iterate_val"] != p["recorded_val"] for p in points)


def test_an_optimizer_without_eval_mode_is_refused_in_one_line(capsys):
    with pytest.raises(UsageError, match="does not declare eval_mode"):
        trace(_smoke("quadratic", "adamw"))
    code = rootbench("eval-weights", "--task", "quadratic", "--opt", "adamw", "--tier", "smoke")
    err = capsys.readouterr().err
    assert code == 2 and "does not declare eval_mode" in err and err.count("\n") == 1


def test_from_run_needs_a_stored_run(tmp_path, capsys):
    code = rootbench("eval-weights", "--from-run", "0123456789ab", "--runs", str(tmp_path))
    assert code == 2 and "no run '0123456789ab'" in capsys.readouterr().err


@pytest.mark.parametrize("opt", EVAL_MODE or [pytest.param("none", marks=pytest.mark.skip("no eval_mode optimizer"))])
def test_from_run_retrains_the_stored_run(opt, tmp_path, capsys):
    """``--from-run``: the stored run's configuration under this code, the same run id, the same numbers."""
    from rootbench.harness import records

    root = str(tmp_path / "runs")
    rows = harness_run("mnist1d-mlp", opt, RunConfig(tier="smoke", ref_steps=0, threads=1, hparams={"lr": 0.01}))
    records.write_run(rows, root)
    rid = rows[0]["run_id"]
    final = max(r["step"] for r in rows)
    stored = next(r["value"] for r in rows if (r["step"], r["split"], r["metric"]) == (final, "test", "accuracy"))
    assert rootbench("eval-weights", "--from-run", rid, "--runs", root, "--threads", "1") == 0
    out = capsys.readouterr().out.splitlines()
    assert f"run id {rid};" in out[0]
    last = out[-1].split()
    assert int(last[0]) == final and float(last[4]) == pytest.approx(stored, abs=5e-5)  # printed to 4 places
