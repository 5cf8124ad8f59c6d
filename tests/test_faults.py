"""Bad input and hard failures: one line and exit 2 before any work, workers that die with their parent,
signals that end a command cleanly, an early check of where results go, a memory limit, one computation
per run id, and exit codes the regression gate can trust."""

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from rootbench.harness import records
from rootbench.harness.registry import hparam_bounds, parse_interval
from rootbench.optimizers import get_optimizer_spec, list_optimizers
from tests.conftest import ROOT, rootbench

SMOKE = ("--tier", "smoke", "--ref-steps", "0", "--quiet")
IN_REPO = [
    n
    for n in list_optimizers()
    if os.path.dirname(get_optimizer_spec(n).source_file) == os.path.join(ROOT, "optimizers")
]


def files_under(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs) if os.path.exists(root) else []


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rootbench: error:"), err
    return lines[0]


def cli(*args, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "rootbench.harness", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        **kw,
    )


# ---------------------------------------------------------------------------------------------- validation


def out_of_range(interval: str):
    """A value just outside ``interval`` (below it where it has a finite low end)."""
    lo, hi, lo_closed, hi_closed = parse_interval(interval)
    if math.isfinite(lo):
        return lo - 1 if lo_closed else lo
    return hi + 1 if hi_closed else hi


@pytest.mark.parametrize("opt", IN_REPO)
def test_out_of_range_hyperparameters_are_one_line_and_exit_2_with_nothing_written(opt, runs_dir, capsys):
    spec = get_optimizer_spec(opt)
    bounds = hparam_bounds(spec)
    assert bounds, f"{opt} declares no valid ranges"
    for key, interval in bounds.items():
        value = out_of_range(interval)
        if isinstance(spec.defaults.get(key), int) and not isinstance(spec.defaults.get(key), bool):
            value = int(value)
        code = rootbench("bench", "--task", "quadratic", "--opt", opt, *SMOKE, f"{key}={value!r}", runs=runs_dir)
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and key in line and interval in line, (key, value, line)
    assert files_under(runs_dir) == []


@pytest.mark.parametrize(
    "setting",
    ["steps=0", "steps=-5", "batch_size=0", "eval_every=0", "warmup_steps=-1", "lr_schedule=bogus", "eval_examples=0"],
)
def test_nonsense_tier_settings_are_refused_before_any_work(setting, runs_dir, capsys):
    assert rootbench("bench", "--task", "mnist1d-mlp", "--opt", "adamw", *SMOKE, setting, runs=runs_dir) == 2
    assert setting.split("=")[0] in one_error_line(capsys.readouterr().err)
    assert files_under(runs_dir) == []


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda" if not __import__("torch").cuda.is_available() else "tpu"])
def test_a_bad_device_is_one_line(device, runs_dir, capsys):
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, "--device", device, runs=runs_dir) == 2
    assert "device" in one_error_line(capsys.readouterr().err)
    assert files_under(runs_dir) == []


def test_rerunning_a_stored_failure_exits_1_and_says_how_to_retry(runs_dir, capsys):
    from rootbench.harness.config import RunConfig
    from rootbench.harness.resolve import resolve_run
    from rootbench.harness.runner import failure_rows

    spec = resolve_run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0))
    records.write_run(failure_rows(spec, "error", "RuntimeError: planted"), runs_dir)
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 1
    out = capsys.readouterr().out
    assert "stored failure" in out and "--retry-failed" in out


# ---------------------------------------------------------------------------------------------- divergence


def test_an_exploding_finite_loss_is_diverged(runs_dir):
    import torch

    from rootbench.harness.registry import OPTIMIZERS, register_optimizer

    class Exploder(torch.optim.SGD):
        """Multiplies every parameter by 3 each step: the loss grows without ever being non-finite."""

        @torch.no_grad()
        def step(self, closure=None):
            for g in self.param_groups:
                for p in g["params"]:
                    p.mul_(3.0)

    register_optimizer("test_exploder", Exploder, defaults={"lr": 0.1}, family="sgd", preconditioner="none")
    try:
        assert (
            rootbench("bench", "--task", "quadratic", "--opt", "test_exploder", *SMOKE, "--in-process", runs=runs_dir)
            == 0
        )
        rec = records.read_record(files_under(runs_dir)[0])
        assert rec.status == "diverged" and "exceeds" in rec["status_message"]
        assert all(math.isfinite(v) for v in rec.curve.query("split == 'train_batch'")["value"].dropna())
    finally:
        OPTIMIZERS.pop("test_exploder", None)


# ---------------------------------------------------------------------------------------------- processes


def _children(pid: int) -> list[int]:
    """``pid``'s children, whichever of its threads started them (a sweep starts workers from a thread pool)."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return found


def _workers(pid: int) -> list[int]:
    """The run workers among ``pid``'s children (it also starts short-lived ones, e.g. ``git`` for provenance)."""
    found = []
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"rootbench.harness.worker" in f.read():
                    found.append(child)
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _start_long_run(runs: str):
    """A bench command whose run takes long enough to be killed mid-way; returns (process, worker pid)."""
    proc = cli(
        "bench",
        "--task",
        "mnist1d-mlp",
        "--opt",
        "adamw",
        "--tier",
        "quick",
        "--quiet",
        "--runs",
        runs,
        "--ref-steps",
        "0",
        "steps=100000",
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (workers := _workers(proc.pid)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no worker started"
        time.sleep(0.05)
    time.sleep(3)  # the worker is importing or training
    assert proc.poll() is None and _alive(workers[0]), "the run ended before it could be interrupted"
    return proc, workers[0]


@pytest.mark.slow
def test_kill_9_of_the_parent_leaves_no_live_worker(tmp_path):
    runs = str(tmp_path / "runs")
    proc, worker = _start_long_run(runs)
    os.kill(proc.pid, signal.SIGKILL)  # the parent only, as `kill -9 <pid>` does
    proc.communicate()
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its parent"
    assert [f for f in files_under(runs) if f.endswith(".parquet")] == []


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_end_with_one_line_and_the_conventional_code(sig, code, tmp_path):
    runs = str(tmp_path / "runs")
    proc, worker = _start_long_run(runs)
    os.killpg(proc.pid, sig)  # the parent's process group, as a terminal's Ctrl-C or `kill -TERM` does
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.strip()][-1].startswith("rootbench:")
    assert len([ln for ln in err.splitlines() if ln.startswith("rootbench:")]) == 1, err
    assert not _alive(worker)
    assert [f for f in files_under(runs) if f.endswith(".parquet")] == []


@pytest.mark.slow
def test_sigterm_stops_a_campaign_of_parallel_sweeps_and_every_worker(tmp_path):
    """``campaign --parallel 2`` runs its sweeps in threads: a SIGTERM must reach all of them. It used to end
    the main thread only, which then waited for every sweep to finish its runs."""
    runs = str(tmp_path / "runs")
    proc = cli(
        *("campaign", "--tier", "quick", "--task", "mnist1d-cnn", "--opt", "sgd", "adamw"),
        *("--trials", "8", "--seeds", "1", "--workers", "1", "--parallel", "2", "--threads", "1", "--runs", runs),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(workers := _workers(proc.pid)) < 2:  # one run of each sweep under way
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the two sweeps' workers did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # not the minutes its 20 remaining runs take
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 143, err
    assert [ln for ln in err.splitlines() if ln.strip()][-1].startswith("rootbench:"), err
    assert not [w for w in workers if _alive(w)]
    assert files_under(os.path.join(runs, records.SWEEPS_DIR)) == [], "an interrupted sweep wrote its manifest"


# ---------------------------------------------------------------------------------------------- fail early


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in: chmod 555, or for root (who ignores modes) a path under /sys."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        yield str(ro)
        ro.chmod(0o755)
    elif os.path.isdir("/sys/fs") and not os.access("/sys/fs", os.W_OK) or not _can_create("/sys/fs"):
        yield "/sys/fs"
    else:
        pytest.skip("no read-only folder for root on this machine")


def _can_create(folder: str) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_whose_exception_is_swallowed_still_ends_with_its_code(sig, code, monkeypatch, capsys):
    """A signal can land where its exception is lost (a finalizer, a broad except in a library): the command
    still ends with 143 / 130, not 0."""
    import argparse

    from rootbench.harness import cli

    def swallowing(args):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(1)
        except BaseException:  # noqa: BLE001 - the planted fault: some code eats the interrupt
            pass
        return 0

    def parser():
        ap = argparse.ArgumentParser()
        ap.set_defaults(func=swallowing)
        return ap

    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli.main([]) == code
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["bench", "--task", "quadratic", "--opt", "sgd", *SMOKE],
        ["sweep", "--task", "quadratic", "--opt", "sgd", "--tier", "smoke", "--trials", "1", "--quiet"],
    ],
)
def test_a_read_only_results_folder_fails_before_any_training(command, read_only_folder, capsys):
    runs = os.path.join(read_only_folder, "rootbench-runs")
    t0 = time.monotonic()
    assert rootbench(*command, "--runs", runs) == 2
    assert "not writable" in one_error_line(capsys.readouterr().err)
    assert time.monotonic() - t0 < 30 and not os.path.exists(runs)


def test_a_results_path_through_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=str(tmp_path / "afile" / "runs")) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------- exit codes


def _baselines_copy(tmp_path, opt="sgd") -> str:
    base = str(tmp_path / "baselines")
    src = os.path.join(ROOT, "runs", "baselines")
    for d, _, fs in os.walk(src):
        for f in fs:
            path = os.path.join(d, f)
            if f"{os.sep}{opt}{os.sep}" in path or f == f"{opt}.json":
                dst = os.path.join(base, os.path.relpath(path, src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(path, dst)
    return base


@pytest.mark.parametrize("what", ["probe", "run"])
def test_regress_on_a_corrupt_baseline_exits_2_naming_the_file(what, tmp_path, capsys):
    base = _baselines_copy(tmp_path)
    if what == "probe":
        bad = os.path.join(base, "probes", "sgd.json")
        with open(bad, "w") as f:
            f.write("{ not json")
    else:
        bad = sorted(f for f in files_under(base) if f.endswith(".parquet"))[0]
        with open(bad, "wb") as f:
            f.write(b"PAR1 truncated")
    code = rootbench("regress", "--opt", "sgd", "--baselines", base, "--runs", str(tmp_path / "cand"), "--quiet")
    assert code == 2 and os.path.basename(bad) in one_error_line(capsys.readouterr().err)


def test_show_never_tracebacks_on_a_readable_file(tmp_path, capsys):
    from rootbench.harness import run
    from rootbench.harness.config import RunConfig

    rows = run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0))
    odd = [
        {
            **r,
            "value": float("nan"),
            "config_json": "{broken",
            "steps_to_target": None,
            "n_params": None,
            "opt_state_bytes_per_param": float("nan"),
            "metric_name": "accuracy",
        }
        for r in rows
    ]
    odd = [{k: v for k, v in r.items() if k not in ("total_train_time_s", "peak_mem_bytes")} for r in odd]
    path = records.write_run(odd, str(tmp_path))
    assert rootbench("show", path) == 0
    out = capsys.readouterr().out
    assert "unreadable config_json" in out and "status" in out


# ---------------------------------------------------------------------------------------------- memory, locks


@pytest.mark.slow
def test_a_run_past_its_memory_limit_ends_as_oom(runs_dir, capsys):
    code = rootbench(
        "bench", "--task", "mnist1d-mlp", "--opt", "sgd", *SMOKE, "--memory-limit", "1G", "width=16000", runs=runs_dir
    )
    assert code == 1
    rec = records.read_record(files_under(runs_dir)[0])
    assert rec.status == "oom" and "allocate" in rec["status_message"]


def test_memory_limits_parse_and_refuse_nonsense():
    from rootbench.harness.execute import parse_memory
    from rootbench.harness.registry import UsageError

    assert parse_memory("512M") == 512 * 2**20 and parse_memory("none") is None and parse_memory("2g") == 2 * 2**30
    assert parse_memory(None) == parse_memory("0.8") or parse_memory(None) is None
    for bad in ("lots", "1K", "-3G"):
        with pytest.raises(UsageError):
            parse_memory(bad)


@pytest.mark.slow
def test_two_identical_commands_compute_the_run_once(tmp_path):
    runs = str(tmp_path / "runs")
    args = ("bench", "--task", "mnist1d-mlp", "--opt", "adamw", *SMOKE, "--runs", runs, "steps=400")
    first = cli(*args)
    time.sleep(0.3)
    second = cli(*args)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    text = "".join(o for o, _ in outs)
    assert text.count("written ") == 1 and text.count("(cached)") == 1, text
    assert len([f for f in files_under(runs) if f.endswith(".parquet")]) == 1


def test_a_stopped_run_does_not_wait_out_another_commands_lock(tmp_path):
    """A sweep stopped while another process computes the same run id gives up the wait (it used to block until
    that run finished)."""
    import threading

    from rootbench.harness.execute import run_lock

    path = records.run_path(str(tmp_path / "runs"), "quadratic", "sgd", "0123456789ab")
    stop, waited = threading.Event(), []
    with run_lock(path):  # the other command's run, under way
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(KeyboardInterrupt), run_lock(path, on_wait=lambda: waited.append(1), stop=stop):
            pytest.fail("the lock was taken while its holder still held it")
    assert waited == [1]
    with run_lock(path, stop=threading.Event()):  # free again: taken at once
        pass
