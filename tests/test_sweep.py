"""``rootbench sweep``: sampler, stage-2 narrowing, selection on val only, cache/resume, Ray backend.

The end-to-end tests run smoke-tier sweeps of the noisy quadratic (each run in its own process).
"""

import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from rootbench.harness import search, selection, sweep_space
from rootbench.harness import sweep as sw
from rootbench.harness.cli import main
from rootbench.harness.records import exists, find_runs, load_runs, read_run, write_run
from rootbench.harness.registry import RegistryError
from rootbench.optimizers import get_optimizer_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 + 2 trials, seed 0 only: six runs; one thread per run so every backend computes identical numbers
SWEEP = [
    "sweep",
    "--task",
    "quadratic",
    "--opt",
    "sgd",
    "--tier",
    "smoke",
    "--trials",
    "4",
    "--stage2-trials",
    "2",
    "--seeds",
    "1",
    "--seed",
    "7",
    "--threads",
    "1",
    "--ref-steps",
    "0",
    "--quiet",
]


def _manifest(runs: str) -> dict:
    paths = glob.glob(os.path.join(runs.removeprefix("file://"), "sweeps", "quadratic", "sgd", "*.json"))
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    runs = str(tmp_path_factory.mktemp("local") / "runs")
    t0 = time.perf_counter()
    assert main([*SWEEP, "--workers", "2", "--runs", runs]) == 0
    return runs, _manifest(runs), time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- sampler


def test_sampler_is_reproducible_and_within_the_declared_ranges():
    spec = get_optimizer_spec("adamw")
    space = sweep_space.search_space(spec, {}, steps=1000)  # horizon dimensions resolved for a 1000-step run
    a = search.sample_configs(space, 50, seed=3, defaults=spec.defaults)
    assert a == search.sample_configs(space, 50, seed=3, defaults=spec.defaults)
    assert a != search.sample_configs(space, 50, seed=4, defaults=spec.defaults)
    assert a != search.sample_configs(space, 50, seed=3, stage=2, defaults=spec.defaults)
    assert len({json.dumps(c, sort_keys=True) for c in a}) == 50
    for config in a:
        assert set(config) == set(spec.search_space)
        for key, (kind, lo, hi) in space.items():
            value = 1 - config[key] if kind == "log1m" else config[key]
            assert lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9), (key, config[key])


def test_sampler_is_log_uniform_for_log_ranges_and_handles_other_kinds():
    space = {
        "lr": ("log", 1e-5, 1e-1),
        "m": ("uniform", 0.0, 1.0),
        "impl": ("choice", ["a", "b"]),
        "T": ("log", 1, 100),
    }
    draws = search.sample_configs(space, 4000, seed=0, defaults={"T": 10})
    u = np.sort((np.log10([d["lr"] for d in draws]) + 5) / 4)  # uniform on [0, 1] if log-uniform
    ks = np.max(np.abs(u - (np.arange(1, len(u) + 1) - 0.5) / len(u)))
    assert ks < 0.035, ks  # KS critical value at n=4000, alpha=0.01 is 0.026 (+ rounding slack)
    assert abs(np.mean([d["lr"] < 1e-3 for d in draws]) - 0.5) < 0.04  # linear sampling would give ~0.01
    m = np.array([d["m"] for d in draws])
    assert abs(m.mean() - 0.5) < 0.03 and abs(np.mean(m < 0.25) - 0.25) < 0.03
    assert {d["impl"] for d in draws} == {"a", "b"}
    assert all(isinstance(d["T"], int) and 1 <= d["T"] <= 100 for d in draws)


def test_pinned_overrides_leave_the_search_and_apply_to_every_trial():
    s = sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="adamw", tier="smoke", overrides={"lr": 0.01, "steps": 10}))
    assert "lr" not in s.space and set(s.space) == set(get_optimizer_spec("adamw").search_space) - {"lr"}
    trials = s._trials(1, s.space, 5)
    assert all(t.spec.config.hparams["lr"] == 0.01 and t.spec.config.task_settings == {"steps": 10} for t in trials)
    assert all("lr" not in t.hparams for t in trials)
    assert len({t.run_id for t in trials}) == 5
    with pytest.raises(RegistryError, match="unknown setting"):
        sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="adamw", tier="smoke", overrides={"lrr": 0.01}))
    with pytest.raises(RegistryError, match="wrong type"):
        sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="adamw", tier="smoke", overrides={"lr": "fast"}))


def test_stage2_narrows_the_ranges_around_the_best_trials():
    space = {"lr": ("log", 1e-3, 1.0), "wd": ("uniform", 0.0, 1.0), "impl": ("choice", ["a", "b", "c"])}
    best = [
        {"lr": 0.01, "wd": 0.4, "impl": "a"},
        {"lr": 0.03, "wd": 0.5, "impl": "c"},
        {"lr": 0.02, "wd": 0.45, "impl": "a"},
    ]
    narrow = sweep_space.narrow_space(space, best)
    margin = sweep_space.WIDEN * math.log(1.0 / 1e-3)
    assert narrow["lr"][1] == pytest.approx(0.01 * math.exp(-margin), rel=1e-3)
    assert narrow["lr"][2] == pytest.approx(0.03 * math.exp(margin), rel=1e-3)
    assert narrow["wd"][1:] == pytest.approx((0.4 - 0.1, 0.5 + 0.1))
    assert narrow["impl"] == ("choice", ["a", "c"])
    # clipped to the declared range, and stage-2 draws fall inside the narrowed one
    edge = sweep_space.narrow_space(space, [{"lr": 1.0, "wd": 0.0, "impl": "b"}, {"lr": 0.9, "wd": 0.05, "impl": "b"}])
    assert edge["lr"][2] == 1.0 and edge["wd"][1] == 0.0 and edge["impl"] == ("choice", ["b"])
    for c in search.sample_configs(narrow, 200, seed=1, stage=2):
        assert narrow["lr"][1] <= c["lr"] <= narrow["lr"][2] and c["impl"] in ("a", "c")
    assert sweep_space.narrow_space(space, best[:1]) == space  # fewer than two ok trials: no narrowing
    assert sweep_space.top_k(4) == 3 and sweep_space.top_k(100) == 20


# ---------------------------------------------------------------------------------------------- selection


def _runs_frame(runs: str) -> pd.DataFrame:
    df = load_runs(runs)
    assert len(df) and not any(os.sep + "sweeps" + os.sep in p for p in df["path"])
    return df


@pytest.mark.slow  # a smoke sweep: each run in its own process
def test_selection_reads_validation_never_test(local_sweep):
    runs, manifest, _ = local_sweep
    df = _runs_frame(runs)
    ids = [t["run_id"] for t in sorted(manifest["trials"], key=lambda t: t["rank"])]
    best, other = ids[0], ids[1]
    assert selection.select_best(df) == manifest["selected"]["run_id"] == best
    # make the test split disagree with val: the selected run is worst on test, another is best on test
    tampered = df.copy()
    is_test = tampered["split"] == "test"
    tampered.loc[is_test & (tampered["run_id"] == best), "value"] = 1e6
    tampered.loc[is_test & (tampered["run_id"] == other), "value"] = -1e6
    assert selection.select_best(tampered) == best
    swapped = tampered.copy()  # exchange the split labels: now "val" holds the test values
    swapped["split"] = tampered["split"].replace({"val": "test", "test": "val"})
    assert selection.select_best(swapped) == other
    # diverged and failed runs rank last, whatever their validation value
    failed = df.copy()
    failed.loc[failed["run_id"] == best, "status"] = "diverged"
    failed.loc[failed["run_id"] == other, "status"] = "timeout"
    ranked = selection.rank_trials(selection.trial_table(failed), higher_is_better=False)
    assert set(ranked["run_id"].iloc[-2:]) == {best, other} and selection.select_best(failed) == ids[2]
    failed["status"] = "error"
    assert selection.select_best(failed) is None


def test_a_warm_start_dominated_trial_is_never_selected():
    """A trial whose preconditioner is still mostly its initial value (heavy-ball SGD in disguise) ranks with
    the failed ones, however good its validation value."""
    table = pd.DataFrame(
        {
            "run_id": ["sgd-like", "method", "unknown"],
            "status": "ok",
            "metric_name": "accuracy",
            "val": [0.99, 0.90, 0.80],
            "test": 0.5,
            "warm_start_share": [0.93, 0.10, float("nan")],  # nan: the optimizer reports none
        }
    )
    ranked = selection.rank_trials(table, higher_is_better=True)
    assert list(ranked["run_id"]) == ["method", "unknown", "sgd-like"]
    assert list(ranked["valid"]) == [True, True, False] and bool(ranked["warm_started"].iloc[-1])


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow  # a smoke sweep: each run in its own process
def test_local_sweep_records_the_budget_and_reruns_nothing(local_sweep, capsys):
    runs, m, seconds = local_sweep
    files = find_runs(runs)
    assert len(files) == 6 and m["budget"]["trials"] == 6 and m["budget"]["trials_per_stage"] == [4, 2]
    assert m["budget"]["distinct_runs"] == 6 and m["budget"]["stages"] == 2
    assert {os.path.basename(f)[:-8] for f in files} == {t["run_id"] for t in m["trials"]}
    assert m["seeds"][0]["run_id"] == m["selected"]["run_id"]  # seed 0 is the trial itself
    s1, s2 = m["search_space"]["stage1"], m["search_space"]["stage2"]
    for key, (_, lo, hi) in s1.items():
        assert lo <= s2[key][1] < s2[key][2] <= hi
    assert any(s2[k][2] / s2[k][1] < hi / lo for k, (_, lo, hi) in s1.items())  # narrower somewhere
    for t in m["trials"]:
        if t["kind"] == "published":  # the paper's configuration need not lie in the box
            continue
        for key, value in t["hparams"].items():
            kind, lo, hi = (s1 if t["stage"] == 1 else s2)[key]
            value = 1 - value if kind == "log1m" else value
            assert lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9)
        df = read_run(os.path.join(runs, "quadratic", "sgd", f"{t['run_id']}.parquet"))
        assert int(df["seed"].iloc[0]) == 0 and df["hp_lr"].iloc[0] == t["hparams"]["lr"]
    # the same command again: every run is a cache hit, nothing is rewritten, same selection
    before = {f: os.stat(f).st_mtime_ns for f in files}
    capsys.readouterr()
    assert main([*SWEEP, "--workers", "2", "--runs", runs]) == 0
    out = capsys.readouterr().out
    assert "0 run(s) ran, 7 cache hit(s)" in out  # six trials and seed 0
    assert {f: os.stat(f).st_mtime_ns for f in find_runs(runs)} == before
    assert _manifest(runs)["selected"] == m["selected"]


# ---------------------------------------------------------------------------------------------- --around


def test_carry_keeps_each_horizon_rates_share_of_the_run():
    space = {"lr": ("log", 1e-4, 1.0), "lr_cov": ("horizon", 10, 0.5), "beta": ("horizon", 2, 0.5, "updates")}
    config = {"lr": 0.03, "lr_cov": 0.01, "beta": 0.2}
    out = search.carry(space, config, from_steps=800, to_steps=4000, from_period=1, to_period=4)
    assert out["lr"] == 0.03  # not a rate of the preconditioner: kept as it is
    assert out["lr_cov"] == pytest.approx(0.002)  # 100 of 800 steps -> 500 of 4,000
    assert out["beta"] == pytest.approx(0.2 * 800 / 1000)  # 5 of 800 updates -> of 1,000 updates (4,000 / T=4)
    assert search.carry(space, {"lr_cov": 0.5}, 4000, 100)["lr_cov"] == 1.0  # a rate never exceeds 1


def _seed_manifest(ranked: list) -> dict:
    """A finished sweep at 800 steps: ``ranked`` is [(lr, lr_cov, val, eligible)] in rank order."""
    trials = [
        {
            "run_id": f"r{i}",
            "stage": 1,
            "trial": i,
            "kind": "drawn",
            "hparams": {"lr": lr, "lr_cov": rate},
            "val": val,
            "status": "ok",
            "eligible": ok,
            "rank": i,
        }
        for i, (lr, rate, val, ok) in enumerate(ranked)
    ]
    best = next(t for t in trials if t["eligible"])
    return {
        "sweep_id": "seed0000",
        "tier": "quick",
        "precision": "fp32",
        "manifest_version": 2,
        "pinned": {},
        "search_space": {"resolved_for_steps": 800, "period": 1},
        "trials": trials,
        "selected": {"run_id": best["run_id"], "hparams": best["hparams"], "val": best["val"]},
        "budget": {"trials": len(trials)},
        "last_invocation": {"finished_at": "2026-12-04T00:00:00+00:00"},
    }


def test_seeded_space_narrows_around_the_best_eligible_trials_on_validation():
    declared = {"lr": ("log", 1e-4, 1.0), "lr_cov": ("horizon", 10, 0.5)}
    space = search.resolve(declared, 4000)
    # rank 0 is warm-start dominated (ineligible): its val never seeds anything, however good
    source = _seed_manifest(
        [
            (0.9, 0.0013, 0.99, False),
            (0.01, 0.02, 0.60, True),
            (0.02, 0.01, 0.58, True),
            (0.005, 0.04, 0.55, True),
            (1e-4, 0.1, 0.10, True),
            (0.5, 0.003, 0.05, True),
        ]
    )
    narrowed, record = sweep_space.seeded_space(space, declared, source, steps=4000, period=1, pinned={})
    assert record["run_ids"] == ["r1", "r2", "r3"] and record["selected_run_id"] == "r1"
    assert record["selected"] == {"lr": 0.01, "lr_cov": pytest.approx(0.004)}  # 0.02 at 800 steps -> 4,000
    for config in record["carried"]:
        for key, (_, lo, hi) in narrowed.items():
            assert lo <= config[key] <= hi
    assert narrowed["lr"][2] / narrowed["lr"][1] < space["lr"][2] / space["lr"][1]  # a local search
    assert narrowed["lr"][1] > 1e-4 * 1.5 and narrowed["lr"][2] < 0.5  # the low-val trials do not widen it
    # the seeding sweep's test values are never read: it has none in its trials, and a pinned key leaves
    _, pinned = sweep_space.seeded_space(space, declared, source, 4000, 1, pinned={"lr": 0.1})
    assert "lr" not in pinned["selected"] and all("lr" not in c for c in pinned["carried"])


def test_around_refuses_its_own_tier_and_a_missing_sweep(tmp_path):
    with pytest.raises(RegistryError, match="another tier"):
        sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="sgd", tier="quick", around="quick", runs=str(tmp_path)))
    with pytest.raises(RegistryError, match="no finished smoke-tier sweep of sgd on quadratic"):
        sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="sgd", tier="quick", around="smoke", runs=str(tmp_path)))
    with pytest.raises(RegistryError, match="has no 'long' tier"):
        sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="sgd", tier="quick", around="long", runs=str(tmp_path)))


@pytest.mark.slow  # two smoke-sized sweeps: each run in its own process
def test_a_sweep_around_another_tier_selects_on_its_own_validation_runs(local_sweep, tmp_path):
    import shutil

    runs = str(tmp_path / "runs")
    shutil.copytree(local_sweep[0], runs)  # the module's store keeps one manifest per optimizer
    source = local_sweep[1]
    args = "sweep --task quadratic --opt sgd --tier quick --around smoke --trials 2 --seeds 1 --threads 1"
    args = [*args.split(), "--ref-steps", "0", "--quiet", "--runs", runs, "steps=40", "eval_every=20"]
    assert main(args) == 0
    paths = glob.glob(os.path.join(runs, "sweeps", "quadratic", "sgd", "*.json"))
    m = next(json.load(open(p)) for p in paths if json.load(open(p))["tier"] == "quick")
    assert m["seeded_from"]["sweep_id"] == source["sweep_id"] and "--around smoke" in m["protocol"]
    carried = [t for t in m["trials"] if t["kind"] == "carried"]
    assert len(carried) == 1 and carried[0]["hparams"] == m["seeded_from"]["selected"]
    assert m["seeded_from"]["selected"]["lr"] == source["selected"]["hparams"]["lr"]  # SGD has no horizon rate
    own = {t["run_id"] for t in m["trials"]}
    assert m["selected"]["run_id"] in own and not own & {t["run_id"] for t in source["trials"]}
    df = load_runs(runs)
    df = df[df["run_id"].isin(own)]
    best = selection.select_best(df)
    assert best == m["selected"]["run_id"]
    tampered = df.copy()  # the selected run made worst on test, the others best: the selection stays
    is_test = tampered["split"] == "test"
    tampered.loc[is_test & (tampered["run_id"] == best), "value"] = 1e6
    tampered.loc[is_test & (tampered["run_id"] != best), "value"] = -1e6
    assert selection.select_best(tampered) == best


@pytest.mark.slow  # a smoke sweep: each run in its own process
def test_results_store_accepts_file_uris(local_sweep, tmp_path):
    runs, m, _ = local_sweep
    rows = read_run(find_runs(runs)[0]).to_dict("records")
    uri = f"file://{tmp_path}/store"
    path = write_run(rows, uri)
    assert path.startswith("file://") and exists(path)
    assert read_run(path)["run_id"].iloc[0] == rows[0]["run_id"]
    assert len(find_runs(str(tmp_path / "store"))) == 1


@pytest.mark.slow  # a smoke sweep: each run in its own process
def test_interrupted_sweep_resumes_without_repeating_finished_runs(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    cmd = [
        "sweep",
        "--task",
        "quadratic",
        "--opt",
        "adamw",
        "--tier",
        "smoke",
        "--trials",
        "2",
        "--seeds",
        "2",
        "--threads",
        "1",
        "--ref-steps",
        "0",
        "--workers",
        "2",
        "--runs",
        runs,
        "--quiet",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rootbench.harness", *cmd],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(find_runs(runs)) < 2:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its run workers (one process group)
        proc.wait()
    finished = {f: (os.stat(f).st_mtime_ns, read_run(f)["started_at"].iloc[0]) for f in find_runs(runs)}
    assert len(finished) == 2  # the two trials; the seed-1 run was killed or not started
    capsys.readouterr()
    assert main(cmd) == 0
    out = capsys.readouterr().out
    for f, (mtime, started) in finished.items():
        assert os.stat(f).st_mtime_ns == mtime and read_run(f)["started_at"].iloc[0] == started
    files = find_runs(runs)
    assert len(files) == 3  # 2 trials + seed 1 of the selected one (seed 0 is its trial)
    assert "1 run(s) ran, 3 cache hit(s)" in out  # the two trials and seed 0 were not repeated
    seed_line = next(line for line in out.splitlines() if line.startswith("seed 1 "))
    took = read_run(next(f for f in files if f not in finished))["wall_time_s"].iloc[0]
    assert f"  ran {took / 60:.1f} min  " in seed_line  # the run that ran says how long it took


@pytest.mark.slow  # a smoke sweep: each run in its own process
def test_ray_cluster_sweep_selects_what_the_local_backend_selects(local_sweep, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'rootbench[ray]')")
    from ray.cluster_utils import Cluster

    _, local, _ = local_sweep
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)  # a second node process: runs are scheduled on both
        runs = f"file://{tmp_path}/runs"
        assert main([*SWEEP, "--backend", "ray", "--address", cluster.address, "--workers", "2", "--runs", runs]) == 0
        assert not ray.is_initialized()
    finally:
        cluster.shutdown()
    m = _manifest(runs)
    assert m["sweep_id"] == local["sweep_id"] and m["backend"] == "ray"
    assert m["selected"] == local["selected"]
    assert [(t["run_id"], t["val"]) for t in m["trials"]] == [(t["run_id"], t["val"]) for t in local["trials"]]
    assert len(find_runs(str(tmp_path / "runs"))) == 6


@pytest.mark.parametrize("optimizer", __import__("rootbench.optimizers", fromlist=["x"]).list_optimizers())
def test_every_declared_search_space_samples_valid_hyperparameters(optimizer):
    """Contract over the registry: each optimizer's space is well formed and its draws pass resolve()."""
    s = sw.Sweep(sw.SweepConfig(task="quadratic", optimizer=optimizer, tier="smoke"))
    assert s.space, f"{optimizer} declares no search_space"
    for t in s._trials(1, s.space, 3):  # resolve() rejects unknown names and wrong types
        for key, value in t.hparams.items():
            dim = s.space[key]
            if dim[0] == "choice":
                assert value in dim[1]
            else:  # log1m boxes bound 1 - value (momenta: 1 - m log-uniform); draws are printed to 4 digits
                x = 1.0 - value if dim[0] == "log1m" else value
                assert dim[1] * (1 - 1e-3) <= x <= dim[2] * (1 + 1e-3), (key, value, dim)


def test_cached_failures_rerun_only_with_retry_failed_and_unreadable_files_rerun(tmp_path):
    from rootbench.harness.execute import cached_record
    from rootbench.harness.records import ResultsError, run_path
    from rootbench.harness.runner import failure_rows

    def sweep(**kw):
        return sw.Sweep(
            sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", runs=str(tmp_path), **kw),
            out=lambda msg: None,
        )

    s = sweep()
    failed, broken, fresh = s._trials(1, s.space, 3)
    write_run(failure_rows(failed.spec, "oom", "worker process died"), str(tmp_path))
    path = run_path(str(tmp_path), "quadratic", "sgd", broken.run_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"PAR1 truncated")
    root = str(tmp_path)
    assert cached_record(failed.spec, root).failed and cached_record(fresh.spec, root) is None
    assert cached_record(failed.spec, root, retry_failed=True) is None
    with pytest.raises(ResultsError, match=broken.run_id):  # the one rule names an unreadable file ...
        cached_record(broken.spec, root)
    logs = []
    s = sw.Sweep(sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", runs=root), out=logs.append)
    s._run_local = lambda todo: iter(())  # ... and the sweep reruns it (the backend is not under test here)
    s.execute([("broken", broken.spec), ("failed", failed.spec)])
    assert any(f"rerunning {broken.run_id}" in m for m in logs) and s.cached == 1


def test_a_ray_sweep_stops_when_its_caller_says_and_cancels_its_tasks(tmp_path):
    """The ``stop`` event reaches the Ray backend too: a sweep waiting on its tasks raises ``KeyboardInterrupt``
    within a poll and cancels every task in flight (a fake ``ray``: the real one is an optional extra)."""
    import threading

    stop = threading.Event()
    calls = {"waits": 0, "cancelled": []}
    refs = iter(range(100))

    class Task:  # ray.remote(...)(fn).options(...): .remote(...) submits and returns an object ref
        def options(self, **_):
            return self

        def remote(self, *_):
            return next(refs)

    class FakeRay:
        class exceptions:
            RayError = RuntimeError

        def remote(self, **_):
            return lambda fn: Task()

        def wait(self, pending, num_returns, timeout):
            assert timeout is not None and timeout > 0, "a wait without a timeout never sees the stop"
            calls["waits"] += 1
            if calls["waits"] == 2:
                stop.set()  # the caller stops the sweep while its tasks run
            return [], pending

        def cancel(self, ref, force):
            calls["cancelled"].append(ref)

    fake = FakeRay()
    cfg = sw.SweepConfig(task="quadratic", optimizer="sgd", tier="smoke", runs=str(tmp_path), backend="ray")
    s = sw.Sweep(cfg, out=lambda msg: None, stop=stop)
    s._ray_init = lambda: fake
    todo = [(f"t{t.run_id}", t.spec) for t in s._trials(1, s.space, 3)]
    with pytest.raises(KeyboardInterrupt):
        list(s._run_ray(todo))
    assert calls["waits"] == 2 and sorted(calls["cancelled"]) == [0, 1, 2]
