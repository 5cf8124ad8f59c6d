"""``rootbench campaign``: the claims' sweeps of a tier from what the registries declare (CPU-side logic of
the GPU campaign)."""

from __future__ import annotations

import os

import pytest

from rootbench.harness import campaign
from rootbench.harness.cli import main
from rootbench.harness.registry import TIER_MINUTES_LIMIT
from rootbench.leaderboard.aggregate import CNN_REFERENCE
from rootbench.leaderboard.verdicts import CLAIM_KINDS
from rootbench.optimizers import get_optimizer_spec
from rootbench.tasks import get_task_spec


def test_the_plan_is_every_declared_pair_on_every_claim_task_of_the_tier():
    sweeps = campaign.plan("quick")
    kinds = {k for ks in CLAIM_KINDS.values() for k in ks}
    by_task: dict = {}
    for s in sweeps:
        by_task.setdefault(s.task, {})[s.optimizer] = s.also_precisions
    for task, opts in by_task.items():
        spec = get_task_spec(task)
        assert "quick" in spec.tiers and spec.model_kind in kinds
        assert (CNN_REFERENCE in opts) == (spec.model_kind in CLAIM_KINDS[1])
        for name, extra in opts.items():
            opt = get_optimizer_spec(name)
            assert opt.parent is None
            if name != CNN_REFERENCE:  # a pair's both sides, each rerun in bf16-pure (claim 3)
                assert opt.pair in opts and extra == (campaign.CLAIM_PRECISION,)
        assert {"rfrmsprop", "rmsprop", "rfadamw", "adamw", "ifshampoo", "shampoo"} <= set(opts)
    assert {"cifar10-resnet", "cifar10-vit", "shakespeare-char-gpt"} <= set(by_task)


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["campaign", "--tier", "quick", "--task", "mnist1d-cnn", "--dry-run", "--runs", str(runs)])
    out = capsys.readouterr().out
    assert code == 0 and "7 sweeps" in out and "rfrmsprop (+ bf16-pure)" in out and not runs.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tier", "quick", "--task", "quadratic"], "no claim"),
        (["--tier", "nonsense"], "unknown tier 'nonsense'; choose one of smoke, quick, long, full"),
        (["--tier", "quick", "--task", "mnist1d-cnn", "--trials", "0"], "must be positive"),
    ]
    + (
        [(["--tier", "quick", "--device", "cuda"], "CUDA is not available")]
        if not __import__("torch").cuda.is_available()
        else []
    ),
)
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, argv, message):
    runs = tmp_path / "runs"
    assert main(["campaign", *argv, "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not runs.exists()


@pytest.mark.slow
def test_a_small_campaign_runs_checks_and_prints_the_verdicts(tmp_path, capsys):
    """Smoke tier, one trial a sweep: 40 steps leave the root-free methods' s0 = 1 start in charge, so their
    single trials are not selectable, and the campaign says so and fails rather than reporting them."""
    runs = str(tmp_path / "runs")
    argv = ["campaign", "--tier", "smoke", "--task", "mnist1d-cnn", "--trials", "1", "--seeds", "1"]
    code = main(
        [
            *argv,
            "--no-published",
            "--workers",
            "1",
            "--parallel",
            "2",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--runs",
            runs,
        ]
    )
    out = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if line.startswith("  ok") or "FAIL" in line}
    assert lines["ok   runs recorded"].endswith("11 of 11") and "ok   runs finished (ok or diverged)" in lines
    selected = next(v for k, v in lines.items() if "every sweep selected" in k)
    assert "FAIL" in selected and "5 of 7" in selected and "rfadamw" in selected and "rfrmsprop" in selected
    assert lines["ok   bf16-pure reruns of every selection planned with them"].endswith("4 of 4")
    assert code == 1 and "Claim verdicts, smoke tier" in out
    manifests = [f for _, _, fs in os.walk(os.path.join(runs, "sweeps")) for f in fs if f.endswith(".json")]
    assert len(manifests) == 7


def test_a_dry_run_states_the_budget_from_the_tasks_measured_minutes(tmp_path, capsys):
    """runs x measured minutes per run, over the workers: the plan's cost before anything starts."""
    long_tasks = [t for t in campaign.claim_tasks("long") if get_task_spec(t).minutes.get("long")]
    if not long_tasks:
        pytest.skip("no task declares measured minutes for a long tier")
    task = long_tasks[0]
    argv = ["campaign", "--tier", "long", "--task", task, "--trials", "6", "--seeds", "5", "--workers", "2"]
    assert main([*argv, "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    sweeps = campaign.plan("long", [task])
    runs = sum(s.runs(6, 5, True) for s in sweeps)
    hours = runs * get_task_spec(task).minutes["long"] / 60
    assert f"at most {runs} runs" in out
    assert f"about {hours:.1f} CPU-hours" in out and f"{hours / 2:.1f} h wall at 2 at a time" in out


def test_a_task_without_measured_minutes_is_budgeted_from_its_recorded_runs(tmp_path, capsys):
    """No declared figure for the tier: the median wall-clock of the task's finished fp32 one-thread CPU runs of
    that tier already in --runs; other tiers, precisions, thread counts and failed runs do not count."""
    task = next(t for t in campaign.claim_tasks("quick") if not get_task_spec(t).minutes.get("quick"))
    runs = tmp_path / "runs"
    _plant(runs, task, [60.0, 180.0, 240.0])
    _plant(runs, task, [6000.0], tier="long")
    _plant(runs, task, [6000.0], precision="bf16-pure")
    _plant(runs, task, [6000.0], num_threads=2)
    _plant(runs, task, [6000.0], status="error")
    _plant(runs, task, [6000.0], device="NVIDIA H200")
    assert campaign.recorded_minutes(str(runs), task, "quick") == (3.0, 3)
    assert campaign.recorded_minutes(str(runs), task, "smoke") is None
    argv = ["campaign", "--tier", "quick", "--task", task, "--opt", "adamw", "--trials", "6", "--seeds", "5"]
    assert main([*argv, "--workers", "2", "--dry-run", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    hours = campaign.plan("quick", [task], ["adamw"])[0].runs(6, 5, True) * 3.0 / 60
    assert f"about {hours:.1f} CPU-hours" in out and f"{task} 3.0 min, the median of its 3 recorded runs" in out
    assert main([*argv, "--dry-run", "--runs", str(tmp_path / "empty")]) == 0
    assert "budget: unknown: no measured minutes" in capsys.readouterr().out


def _plant(runs, task: str, walls: list, **fields) -> None:
    """Finished one-thread CPU fp32 quick AdamW runs of ``task`` with these wall-clock seconds (``fields``
    override any column)."""
    from rootbench.harness import records

    row = {"task": task, "optimizer": "adamw", "seed": 0, "tier": "quick", "status": "ok", "precision": "fp32"}
    row |= {"device": "cpu", "num_threads": 1, "git_dirty": False, "cuda_version": ""}
    row |= {k: "synthetic" for k in ("git_sha", "rootbench_version", "torch_version", "cpu", "hostname")}
    row |= {"started_at": "2026-01-01T00:00:00+00:00", "schema_version": records.SCHEMA_VERSION}
    row |= {"step": 0, "epoch": 0.0, "split": "val", "metric": "loss", "value": 1.0, "train_time_s": 0.0}
    for wall in walls:
        run_id = f"r{len(records.find_runs(str(runs))) if os.path.isdir(runs) else 0}"
        records.write_run([{**row, **fields, "run_id": run_id, "wall_time_s": wall}], str(runs))


def test_the_budget_scales_each_optimizer_and_precision_by_its_recorded_cost_ratio(tmp_path, capsys):
    """A slow preconditioner or an emulated precision costs more than the task's figure: each (optimizer,
    precision) with enough recorded runs on the task is scaled by its median over the task's fp32 median;
    one with too few runs counts as the task's figure."""
    long_tasks = [t for t in campaign.claim_tasks("long") if get_task_spec(t).minutes.get("long")]
    if not long_tasks:
        pytest.skip("no task declares measured minutes for a long tier")
    task = long_tasks[0]
    runs = tmp_path / "runs"
    sweeps = campaign.plan("long", [task])
    paired = next(s for s in sweeps if s.also_precisions)
    others = [s.optimizer for s in sweeps if s.optimizer != paired.optimizer]
    _plant(runs, task, [120.0] * 3, optimizer=others[0])  # 2 min
    _plant(runs, task, [240.0] * 3, optimizer=paired.optimizer)  # 4 min: fp32 median of all is 3 min
    _plant(runs, task, [360.0] * 3, optimizer=paired.optimizer, precision=paired.also_precisions[0])  # 6 min
    _plant(runs, task, [180.0] * 2, optimizer=others[-1])  # too few runs for a ratio of its own
    _plant(runs, task, [6000.0] * 3, optimizer=others[-1], num_threads=2)  # not one thread: never counted
    tier, ratios = campaign.cost_ratios(str(runs), task, "long")
    assert tier == "quick" and set(ratios) == {
        (others[0], "fp32"),
        (paired.optimizer, "fp32"),
        (paired.optimizer, paired.also_precisions[0]),
    }
    assert ratios[(paired.optimizer, "fp32")] == pytest.approx(4 / 3)
    assert ratios[(paired.optimizer, paired.also_precisions[0])] == pytest.approx(2.0)
    split = {s: s.runs_by_precision(6, 5, True) for s in sweeps}
    assert all(sum(split[s].values()) == s.runs(6, 5, True) for s in sweeps)
    per_run = get_task_spec(task).minutes["long"]
    expected = sum(per_run * n * ratios.get((s.optimizer, p), 1.0) for s in sweeps for p, n in split[s].items())
    line = campaign.budget(sweeps, "long", split, 2, str(runs))
    assert f"about {expected / 60:.1f} CPU-hours" in line and f"{expected / 120:.1f} h wall at 2 at a time" in line
    assert "by its recorded quick runs' ratios (3 figures, 0.67x to 2.00x)" in line
    assert "at the task's figure where no ratio is recorded" in line  # the other optimizers have none
    # the slow pair at 2x the task's figure is named where that passes the tier's limit; the fast one never
    slow = f"{task} {paired.optimizer} {paired.also_precisions[0]} {per_run * 2:.1f} min"
    assert (slow in line) == (per_run * 2 > TIER_MINUTES_LIMIT["long"])
    assert f"{task} {others[0]} fp32" not in line
    unscaled = campaign.budget(sweeps, "long", split, 2, str(tmp_path / "empty"))
    hours = sum(s.runs(6, 5, True) for s in sweeps) * per_run / 60
    assert f"about {hours:.1f} CPU-hours" in unscaled and "at the task's figure where no ratio is recorded" in unscaled


def test_around_needs_the_other_tiers_sweep_of_every_planned_pair_before_any_work(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["campaign", "--tier", "quick", "--task", "mnist1d-cnn", "--around", "smoke", "--dry-run"]
    assert main([*argv, "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished smoke-tier sweep" in err[0] and "rootbench sweep" in err[0]
    assert not runs.exists()


def test_around_names_the_sweep_each_planned_sweep_is_seeded_from(tmp_path, capsys):
    """With a finished sweep of the other tier for every planned (task, optimizer), the plan counts one more
    trial per sweep (the carried selection) and names the seeding sweep."""
    import json

    from rootbench.harness import records

    runs = tmp_path / "runs"
    sweeps = campaign.plan("quick", ["mnist1d-cnn"])
    for i, s in enumerate(sweeps):
        path = records.manifest_path(str(runs), s.task, s.optimizer, f"seed{i:04d}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        manifest = {
            "sweep_id": f"seed{i:04d}",
            "tier": "smoke",
            "precision": "fp32",
            "selected": {"run_id": "x"},
            "manifest_version": 2,
            "budget": {"trials": 4},
            "last_invocation": {"finished_at": "2026-12-04T00:00:00Z"},
        }
        with open(path, "w") as f:
            json.dump(manifest, f)
    argv = ["campaign", "--tier", "quick", "--task", "mnist1d-cnn", "--around", "smoke", "--trials", "6"]
    assert main([*argv, "--dry-run", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"at most {sum(s.runs(6, 5, True, carried=True) for s in sweeps)} runs" in out
    for i, s in enumerate(sweeps):
        assert f"{s.optimizer}" in out and f"around smoke sweep seed{i:04d}" in out


def test_opt_plans_methods_in_no_claim_under_the_same_protocol(tmp_path, capsys):
    """``--opt``: the named optimizers instead of the claims' (the zoo's results), each with bf16-pure reruns; an
    unknown name is one line before any work."""
    sweeps = campaign.plan("quick", ["mnist1d-cnn"], ["sgd", "adamw"])
    assert [(s.optimizer, s.also_precisions) for s in sweeps] == [
        ("sgd", (campaign.CLAIM_PRECISION,)),
        ("adamw", (campaign.CLAIM_PRECISION,)),
    ]
    runs = tmp_path / "runs"
    assert main(["campaign", "--tier", "quick", "--task", "mnist1d-cnn", "--opt", "adamww", "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown optimizer 'adamww'" in err[0] and not runs.exists()


def test_cuda_checks_read_the_gpu_name_the_cuda_peak_and_the_synchronised_ratio():
    """A CUDA run's device column holds the GPU's name (provenance), a CPU run's reads 'cpu'; each check counts
    the runs that pass it, so one CPU run in a GPU campaign fails all three."""
    gpu = {"device": "NVIDIA H200", "peak_mem_kind": "cuda_max_allocated", "step_time_ratio_adamw": 1.7}
    cpu = {"device": "cpu", "peak_mem_kind": "rss_delta", "step_time_ratio_adamw": float("nan")}
    assert all(passed for _, passed, _ in campaign.cuda_checks([gpu, gpu]))
    rows = campaign.cuda_checks([gpu, cpu])
    assert [passed for _, passed, _ in rows] == [False, False, False]
    assert all(detail == "1 of 2" for _, _, detail in rows)


def test_sweeps_at_once_must_be_positive_and_show_in_the_plan(tmp_path, capsys):
    runs = tmp_path / "runs"
    task = next(t for t in campaign.claim_tasks("long") if get_task_spec(t).minutes.get("long"))
    argv = ["campaign", "--tier", "long", "--task", task, "--runs", str(runs)]
    assert main([*argv, "--parallel", "0"]) == 2 and "--parallel must be positive" in capsys.readouterr().err
    assert main([*argv, "--parallel", "3", "--workers", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 at a time in each of 3 sweeps at once" in out and "h wall at 6 at a time" in out and not runs.exists()


def test_a_tree_without_git_records_the_commit_it_was_sent_from(tmp_path, monkeypatch):
    from rootbench.harness import provenance

    monkeypatch.setattr(provenance, "HERE", str(tmp_path / "copy" / "harness"))
    provenance.git_state.cache_clear()
    try:
        monkeypatch.delenv("ROOTBENCH_GIT_SHA", raising=False)
        assert provenance.git_state() == ("unknown", False)
        provenance.git_state.cache_clear()
        monkeypatch.setenv("ROOTBENCH_GIT_SHA", "0123abcd")
        assert provenance.git_state() == ("0123abcd", False)
    finally:
        provenance.git_state.cache_clear()
