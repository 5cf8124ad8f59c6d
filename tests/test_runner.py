"""The runner: determinism, the train clock, time limits, precision modes, memory and failures."""

import time

import pytest
import torch

from rootbench.harness import run as harness_run
from rootbench.harness import runner
from rootbench.harness.config import RunConfig
from rootbench.harness.registry import RegistryError


def curve(rows, split="train_batch", metric="loss"):
    return [(r["step"], r["value"]) for r in rows if r["split"] == split and r["metric"] == metric]


def test_identical_seeds_give_identical_curves_and_other_seeds_differ():
    cfg = RunConfig(tier="smoke", seed=3, ref_steps=0)
    a = harness_run("mnist1d-cnn", "adamw", cfg)
    b = harness_run("mnist1d-cnn", "adamw", cfg)
    assert curve(a) == curve(b) and curve(a, "val", "accuracy") == curve(b, "val", "accuracy")
    assert a[0]["run_id"] == b[0]["run_id"]
    c = harness_run("mnist1d-cnn", "adamw", cfg.replace(seed=4))
    assert curve(a) != curve(c) and c[0]["run_id"] != a[0]["run_id"]


def test_a_run_flushes_subnormals_and_gives_the_process_its_setting_back():
    """Subnormal floats (below 1.2e-38) are many times slower on x86 CPUs; a run computes with them flushed to
    zero, so wall time measures the optimizer rather than that arithmetic, and the caller's setting returns."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode (not x86 with SSE3)")
    torch.set_flush_denormal(False)
    assert not runner.flushing_denormals() and (torch.tensor([1e-39]) * 1.0).item() != 0.0
    seen = []
    harness_run(
        "quadratic",
        "sgd",
        RunConfig(tier="smoke", ref_steps=0),
        progress=lambda *a: seen.append(runner.flushing_denormals()),
    )
    assert seen and all(seen)
    assert not runner.flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        harness_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0))
        assert runner.flushing_denormals()  # restored as it was, on as well as off
    finally:
        torch.set_flush_denormal(False)


def test_rows_are_tidy_with_run_level_columns_on_every_row():
    rows = harness_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=2))
    keys = set(rows[0])
    assert all(set(r) == keys for r in rows)
    cfg = rows[0]
    steps = sorted({r["step"] for r in rows})
    assert steps[0] == 0 and steps[-1] == cfg["task_steps"]
    assert {r["split"] for r in rows} == {"train", "val", "test", "train_batch"}
    assert cfg["n_params"] == sum(p.numel() for p in torch.nn.Linear(32, 4).parameters())
    assert cfg["param_bytes"] == cfg["grad_bytes"] == 4 * cfg["n_params"]
    assert cfg["step_time_ratio_adamw"] > 0 and cfg["opt_step_time_s"] > 0
    # the train clock is monotone over eval points and eval time is kept apart
    times = [r["train_time_s"] for r in rows if r["split"] == "val"]
    assert times == sorted(times) and times[0] == 0.0


def test_time_to_target_is_the_first_val_point_meeting_the_target():
    rows = harness_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0))
    val = [(r["step"], r["value"], r["train_time_s"]) for r in rows if r["split"] == "val" and r["metric"] == "loss"]
    target = rows[0]["target"]
    hits = [v for v in val if v[1] <= target]
    assert hits, "the smoke quadratic should reach its target with SGD"
    assert rows[0]["steps_to_target"] == hits[0][0]
    assert rows[0]["time_to_target_s"] == hits[0][2]
    never = harness_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0, task_settings={"target": 1e-9}))
    assert never[0]["steps_to_target"] is None and never[0]["time_to_target_s"] is None


def test_time_limit_ends_with_timeout_and_keeps_the_partial_curve():
    cfg = RunConfig(tier="smoke", ref_steps=0, time_limit=1.5, task_settings={"steps": 10**7, "eval_every": 200})
    t0 = time.perf_counter()
    rows = harness_run("quadratic", "sgd", cfg)
    assert time.perf_counter() - t0 < 30
    assert rows[0]["status"] == "timeout" and "time limit" in rows[0]["status_message"]
    val_steps = [s for s, _ in curve(rows, "val", "loss")]
    assert len(val_steps) >= 2 and val_steps[-1] == rows[0]["steps_completed"] < 10**7


def test_train_clock_excludes_a_slow_evaluation(monkeypatch):
    """The clock is within 5% of the summed step times, measured independently with hooks."""
    slow = 0.25
    real_evaluate = runner.evaluate

    def slow_evaluate(*a, **k):
        time.sleep(slow)
        return real_evaluate(*a, **k)

    monkeypatch.setattr(runner, "evaluate", slow_evaluate)
    step_times, starts = [], []
    from rootbench.tasks import _base

    real_batches = _base.ArrayTask.train_batches

    def timed_batches(self, generator, device):  # a step starts when its batch is asked for
        it = real_batches(self, generator, device)
        while True:
            starts.append(time.perf_counter())
            yield next(it)

    monkeypatch.setattr(_base.ArrayTask, "train_batches", timed_batches)
    real_step = torch.optim.SGD.step

    def timed_step(self, *a, **k):
        out = real_step(self, *a, **k)
        step_times.append(time.perf_counter() - starts[-1])
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", timed_step)
    cfg = RunConfig(
        tier="smoke", ref_steps=0, task_settings={"steps": 300, "eval_every": 60, "width": 512, "batch_size": 256}
    )
    rows = harness_run("mnist1d-mlp", "sgd", cfg)
    r = rows[0]
    assert r["status"] == "ok" and len(step_times) == 300
    n_evals = len({x["step"] for x in rows if x["split"] == "val"})
    assert r["total_eval_time_s"] >= n_evals * 3 * slow  # three splits per eval point
    assert abs(r["total_train_time_s"] - sum(step_times)) <= 0.05 * sum(step_times)


@pytest.mark.parametrize("precision", ["bf16", "bf16-pure", "fp16"])
def test_precisions_run_and_are_part_of_the_run_id(precision):
    base = harness_run("mnist1d-mlp", "adamw", RunConfig(tier="smoke", ref_steps=0))
    rows = harness_run("mnist1d-mlp", "adamw", RunConfig(tier="smoke", ref_steps=0, precision=precision))
    r = rows[0]
    assert r["status"] == "ok" and r["precision"] == precision and r["run_id"] != base[0]["run_id"]
    if precision == "bf16-pure":  # state in bf16: half the fp32 bytes
        assert r["opt_state_bytes"] < base[0]["opt_state_bytes"]
    if precision == "fp16":
        assert r["fp16_skipped_steps"] >= 0


def test_unknown_precision_is_rejected():
    with pytest.raises(RegistryError, match="unknown precision"):
        RunConfig(precision="fp8")


def test_an_exception_inside_training_is_an_error_row(monkeypatch):
    from rootbench.tasks import _base

    def broken(self, generator, device):
        yield from ()
        raise RuntimeError("disk went away")

    monkeypatch.setattr(_base.ArrayTask, "train_batches", broken)
    rows = harness_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0))
    assert rows[0]["status"] == "error" and "disk went away" in rows[0]["status_message"]
    assert "Traceback" in rows[0]["traceback"]


def test_lr_schedules():
    assert runner.lr_factor("constant", 5, 10, 0) == 1.0
    assert runner.lr_factor("constant", 0, 10, 4) == 0.25
    assert runner.lr_factor("cosine", 0, 10, 0) == 1.0
    assert runner.lr_factor("cosine", 10, 10, 0) == pytest.approx(0.0)
    assert [runner.lr_factor("multistep", s, 9, 0) for s in (0, 2, 3, 5, 6, 8)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    with pytest.raises(RegistryError):
        runner.lr_factor("wavy", 0, 10, 0)


def test_the_overhead_script_times_the_runner_and_a_bare_loop_over_the_same_steps():
    from rootbench.harness import overhead

    r = overhead.measure("mnist1d-mlp", "sgd", steps=12, repeats=1)
    assert r["steps_timed"] == 11 and r["runner_s"] > 0 and r["bare_s"] > 0
    assert r["overhead"] == r["runner_s"] / r["bare_s"] - 1


def test_an_optimizer_that_declares_eval_mode_evaluates_in_it(monkeypatch):
    """``eval_mode`` (schedule-free's averaged weights): eval() before every evaluation, train() after, and
    every optimizer step taken in training mode. Declared on the spec; the runner reads no name."""
    from rootbench.harness.registry import OPTIMIZERS
    from rootbench.optimizers import register_optimizer

    calls = []

    class Swapping(torch.optim.SGD):
        def __init__(self, params, lr: float = 0.05):
            super().__init__(params, lr=lr)
            self.training = True

        def eval(self):
            calls.append("eval")
            self.training = False

        def train(self):
            calls.append("train")
            self.training = True

        def step(self, closure=None):
            assert self.training, "stepped in evaluation mode"
            calls.append("step")
            return super().step(closure)

    register_optimizer("test_eval_mode", Swapping, family="sgd", paper="https://example.org", eval_mode=True)
    try:
        rows = harness_run("quadratic", "test_eval_mode", RunConfig(tier="smoke", ref_steps=0))
    finally:
        del OPTIMIZERS["test_eval_mode"]
    assert rows[0]["status"] == "ok"
    n_evals = len({r["step"] for r in rows if r["split"] == "val"})
    assert calls.count("eval") == calls.count("train") == n_evals >= 2
    evals = [i for i, c in enumerate(calls) if c == "eval"]
    assert all(calls[i + 1] == "train" for i in evals)  # nothing between: only the evaluation ran
