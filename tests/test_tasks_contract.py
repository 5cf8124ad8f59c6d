"""Contracts every registered task meets, parametrised over ``list_tasks()``: a new task is tested
without editing this file.

- the smoke tier trains through the runner in seconds on generated data and says so (data_source);
- every full tier builds from tiny stand-in files in the exact on-disk formats and takes one
  training step on CPU at batch 2 (or 1 for long sequences), with a finite mean-reduced loss;
- with an empty data root and no network, every real-data tier fails with one clear line
  (DataMissingError names the file and the command), before anything runs or is written.
"""

import dataclasses
import math

import pytest
import torch

from rootbench.harness import run
from rootbench.harness.config import RunConfig
from rootbench.tasks import check_data, create_task, get_task_spec, list_tasks
from rootbench.tasks.data import DataMissingError
from tests.task_fakes import one_thread, write_all  # noqa: F401 - autouse fixture

TASKS = list_tasks()
REAL = [n for n in TASKS if getattr(get_task_spec(n).tiers["quick"], "dataset", None) not in (None, "synthetic")]
HEAVY = {"imagewoof-swin_t", "imagewoof-gcvit_xxtiny", "imagewoof-focalnet_tiny_srf", "wikitext103-gpt"}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_all(str(tmp_path_factory.mktemp("fake_data")))


@pytest.mark.parametrize("name", TASKS)
def test_smoke_tier_runs_through_the_runner(name):
    rows = run(name, "sgd", RunConfig(tier="smoke", ref_steps=0, device="cpu"))
    spec = get_task_spec(name)
    assert rows and all(r["status"] == "ok" for r in rows), rows[0].get("status_message")
    assert all(math.isfinite(r["value"]) for r in rows)
    final = max(r["step"] for r in rows)
    assert final == spec.tiers["smoke"].steps
    for split in ("train", "val", "test"):
        assert any(r["split"] == split and r["metric"] == spec.metric and r["step"] == final for r in rows), split
    r = rows[0]
    assert r["metric_name"] == spec.metric and r["n_params"] > 0
    assert 0 <= r["data_wait_share"] < 1
    if hasattr(spec.tiers["smoke"], "dataset"):  # generated stand-ins are labelled as such
        assert r["data_source"] == "synthetic stand-in"


@pytest.mark.parametrize("name", TASKS)
def test_tiers_declare_a_budget_and_a_quick_target(name):
    spec = get_task_spec(name)
    assert spec.metric and isinstance(spec.higher_is_better, bool)
    for tier, c in spec.tiers.items():
        assert 0 < c.eval_every <= c.steps and c.batch_size > 0, tier
        assert c.lr_schedule in ("constant", "cosine", "multistep")
        assert c.warmup_steps < c.steps
    assert spec.tiers["quick"].target is not None, "quick tiers carry a measured time-to-target threshold"
    if hasattr(spec.tiers["smoke"], "dataset"):
        assert spec.tiers["smoke"].dataset == "synthetic"
        assert spec.tiers["quick"].dataset != "synthetic", "quick tiers use real data"


@pytest.mark.parametrize("name", [n for n in TASKS if "long" in get_task_spec(n).tiers])
def test_a_long_tier_is_where_a_claim_is_tested_within_ten_minutes_a_run(name):
    """The long tier (optional) exists for the claims: a model kind a claim is about, real data, more steps than
    the quick tier, and a measured time per run within the tier's 10 minutes on a 2-core CPU."""
    from rootbench.leaderboard.verdicts import CLAIM_KINDS

    spec = get_task_spec(name)
    long, quick = spec.tiers["long"], spec.tiers["quick"]
    assert spec.model_kind in {k for ks in CLAIM_KINDS.values() for k in ks}
    assert getattr(long, "dataset", "real") != "synthetic" and long.steps > quick.steps
    assert 0 < spec.minutes["long"] <= 10, "a long tier states its measured minutes per run"


def _one_step_overrides(config) -> dict:
    fields = {f.name for f in dataclasses.fields(config)}
    long_seq = getattr(config, "block_size", 0) >= 512
    out = {"batch_size": 1 if long_seq else 2, "eval_examples": 4, "eval_batch_size": 2}
    if "n_val" in fields:
        out["n_val"] = 4
    if "n_train" in fields:
        out["n_train"] = 0  # the stand-in files are smaller than a long tier's subset
    if "num_workers" in fields:
        out["num_workers"] = 0
    return out


BIG_TIERS = [(n, t) for n in REAL for t in ("long", "full") if t in get_task_spec(n).tiers]


@pytest.mark.parametrize(
    "name, tier", [pytest.param(n, t, marks=pytest.mark.slow) if n in HEAVY else (n, t) for n, t in BIG_TIERS]
)
def test_long_and_full_tiers_build_and_take_one_training_step(name, tier, fake_root, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", fake_root)
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    config = get_task_spec(name).tiers[tier]
    task = create_task(name, tier, **_one_step_overrides(config))
    assert task.data_source.startswith(("file:", "imagefolder:")), task.data_source
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    x, y = next(task.train_batches(torch.Generator().manual_seed(0), "cpu"))
    assert len(y) == task.batch_size
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = task.loss(model(x), y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        xe, ye = next(iter(task.eval_batches("val", "cpu")))
        values = task.metric(model(xe), ye)
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("name", REAL)
def test_missing_data_is_one_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    for tier in ("quick", "full"):
        with pytest.raises(DataMissingError) as info:
            check_data(name, tier)
        msg = str(info.value)
        assert "\n" not in msg and str(tmp_path) in msg and "produce it" in msg
    with pytest.raises(DataMissingError):
        create_task(name, "quick")
    create_task(name, "smoke")  # the smoke tier needs no data


def test_missing_data_in_the_runner_raises_instead_of_an_error_row(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    with pytest.raises(DataMissingError, match="cifar10.npz"):
        run("cifar10-resnet", "sgd", RunConfig(tier="quick", ref_steps=0, device="cpu"))


def test_cli_bench_with_missing_data_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from rootbench.harness.cli import main

    empty, runs = tmp_path / "data", tmp_path / "runs"
    empty.mkdir()
    runs.mkdir()
    monkeypatch.setenv("ROOTBENCH_DATA", str(empty))
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    code = main(["bench", "--task", "cifar10-resnet", "--opt", "sgd", "--tier", "quick", "--runs", str(runs)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cifar10.npz" in err and "torchvision" in err and "../shared" not in err
    assert list(runs.rglob("*")) == [] and list(empty.rglob("*")) == []


def test_list_tasks_shows_tiers_metric_and_data_source(capsys, tmp_path, monkeypatch):
    from rootbench.harness.cli import main

    monkeypatch.setenv("ROOTBENCH_DATA", str(tmp_path))
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert name in out
    assert "cifar10 <- not in the data root" in out and "synthetic stand-in" in out
    assert "metric loss (lower is better)" in out and "metric accuracy (higher is better)" in out
    for tier in ("smoke", "quick", "full"):
        assert f"   {tier} " in out
