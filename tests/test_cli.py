"""The spine's acceptance: bad input is rejected with a helpful message and nothing is written;
identical configs are cache hits; divergence is data; a killed run never leaves a broken file."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rootbench.harness.records import REQUIRED_COLUMNS, find_runs, read_run
from tests.conftest import ROOT, rootbench

SMOKE = ["--tier", "smoke", "--quiet", "--in-process", "--ref-steps", "0"]


def files_under(d):
    return sorted(os.path.join(p, f) for p, _, fs in os.walk(d) for f in fs)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--task", "nope", "--opt", "adamw"], "unknown task 'nope'"),
        (["--task", "mnist1d-mpl", "--opt", "adamw"], "mnist1d-mlp"),  # close match named
        (["--task", "quadratic", "--opt", "adamww"], "'adamw'"),
        (["--task", "quadratic", "--opt", "adamw", "lr=abc"], "lr='abc' has the wrong type"),
        (["--task", "quadratic", "--opt", "adamw", "bogus=1"], "unknown setting 'bogus'"),
        (["--task", "quadratic", "--opt", "adamw", "lr=[1,"], "not a Python literal"),
        (["--task", "quadratic", "--opt", "sgd", "momentum=True"], "wrong type"),
        (["--task", "quadratic", "--opt", "sgd", "steps=1.5"], "expected an integer"),
        (["--task", "quadratic", "--opt", "sgd", "--tier", "huge"], "unknown tier"),
        (["--task", "quadratic", "--opt", "sgd", "--threads", "0"], "threads must be a positive integer"),
    ],
)
def test_bad_input_is_rejected_and_nothing_written(argv, needle, runs_dir, capsys):
    code = rootbench("bench", *argv, "--quiet", "--in-process", runs=runs_dir)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1, "one line of error"
    assert files_under(runs_dir) == []


def test_unknown_name_message_says_how_to_list(capsys, runs_dir):
    rootbench("bench", "--task", "quadratic", "--opt", "adamww", runs=runs_dir)
    assert "rootbench list optimizers" in capsys.readouterr().err


def test_bench_writes_one_parquet_with_required_columns_then_hits_cache(runs_dir, capsys):
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 0
    files = find_runs(runs_dir)
    assert len(files) == 1
    df = read_run(files[0])
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert {"hp_lr", "hp_momentum", "hp_weight_decay"} <= set(df.columns)
    assert (df["status"] == "ok").all() and df["run_id"].nunique() == 1
    assert files[0].endswith(os.path.join("quadratic", "sgd", df["run_id"].iloc[0] + ".parquet"))
    mtime = os.path.getmtime(files[0])
    capsys.readouterr()
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 0
    assert "cache hit" in capsys.readouterr().out
    assert os.path.getmtime(files[0]) == mtime
    # a different hyperparameter is a different run; --force reruns the same one
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, "lr=0.01", runs=runs_dir) == 0
    assert len(find_runs(runs_dir)) == 2
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, "--force", runs=runs_dir) == 0
    assert len(find_runs(runs_dir)) == 2


def test_divergence_is_recorded_with_exit_zero_and_next_run_unaffected(runs_dir):
    assert rootbench("bench", "--task", "mnist1d-mlp", "--opt", "adamw", *SMOKE, "lr=1e6", runs=runs_dir) == 0
    (path,) = find_runs(runs_dir)
    df = read_run(path)
    assert (df["status"] == "diverged").all()
    step = int(df["diverged_step"].iloc[0])
    assert 1 <= step <= int(df["task_steps"].iloc[0])
    msg = df["status_message"].iloc[0]
    assert f"at step {step}" in msg and ("non-finite loss" in msg or "exceeds" in msg)
    nan_rows = df[(df["split"] == "train_batch") & df["value"].isna()]
    assert list(nan_rows["step"]) == [step]
    assert rootbench("bench", "--task", "mnist1d-mlp", "--opt", "adamw", *SMOKE, runs=runs_dir) == 0
    ok = [read_run(p) for p in find_runs(runs_dir) if p != path]
    assert len(ok) == 1 and (ok[0]["status"] == "ok").all()


def test_corrupt_cached_file_is_reported_not_overwritten(runs_dir, capsys):
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 0
    (path,) = find_runs(runs_dir)
    with open(path, "r+b") as f:
        f.truncate(100)
    capsys.readouterr()
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 2
    err = capsys.readouterr().err
    assert "not a readable parquet file" in err and "--force" in err
    assert os.path.getsize(path) == 100


def test_list_names_every_registered_entry(capsys):
    from rootbench.optimizers import list_optimizers
    from rootbench.tasks import list_tasks

    assert rootbench("list") == 0
    out = capsys.readouterr().out
    for name in list_optimizers() + list_tasks():
        assert f"  {name} " in out


def test_list_optimizers_keeps_its_columns_apart(capsys):
    """Every optimizer's description and paper start in one column, past its longest name and kind."""
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    assert rootbench("list", "optimizers") == 0
    lines = capsys.readouterr().out.splitlines()
    starts = set()
    for name in list_optimizers():
        spec = get_optimizer_spec(name)
        (i,) = [k for k, line in enumerate(lines) if line.startswith(f"  {name} ")]
        starts |= {lines[i].index(spec.description), lines[i + 1].index(spec.paper)}
        assert lines[i][lines[i].index(spec.description) - 1] == " "
    assert len(starts) == 1


def test_show_prints_config_provenance_and_curve(runs_dir, capsys):
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, runs=runs_dir) == 0
    (path,) = find_runs(runs_dir)
    rid = os.path.basename(path)[: -len(".parquet")]
    capsys.readouterr()
    assert rootbench("show", rid, "--runs", runs_dir) == 0
    out = capsys.readouterr().out
    assert rid in out and "torch_version" in out and '"optimizer": "sgd"' in out and "curve (val)" in out
    assert rootbench("show", "ffffffffffff", "--runs", runs_dir) == 2


def test_worker_process_run_matches_in_process_run(runs_dir):
    """The default path runs in a spawned worker (its own memory high-water mark)."""
    base = ["--task", "quadratic", "--opt", "sgd", "--tier", "smoke", "--quiet", "--ref-steps", "0"]
    assert rootbench("bench", *base, runs=runs_dir) == 0
    (path,) = find_runs(runs_dir)
    sub = read_run(path)
    os.remove(path)
    assert rootbench("bench", *base, "--in-process", runs=runs_dir) == 0
    inproc = read_run(path)
    key = ["step", "split", "metric"]
    a = sub.sort_values(key)["value"].to_numpy()
    b = inproc.sort_values(key)["value"].to_numpy()
    assert (a == b).all()


@pytest.mark.slow
def test_kill_9_never_leaves_a_broken_parquet(tmp_path):
    """SIGKILL at several moments of a run (including while writing): every .parquet loads."""
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    delays = [0.5, 1.5, 2.5, 3.0, 3.5]
    for i, delay in enumerate(delays):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rootbench.harness",
                "bench",
                "--task",
                "quadratic",
                "--opt",
                "sgd",
                "--tier",
                "smoke",
                "--in-process",
                "--quiet",
                "--ref-steps",
                "0",
                "--runs",
                str(runs),
                "lr=0.05",
                "--seed",
                str(i),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for path in find_runs(str(runs)):
        assert not read_run(path).empty  # raises on a truncated or partial file
    for path in files_under(str(runs)):
        assert path.endswith(".parquet") or os.path.basename(path).startswith(".tmp-")


def test_atomic_write_leaves_no_final_file_when_writing_fails(tmp_path, monkeypatch):
    from rootbench.harness import records

    rows = [{"run_id": "abc", "task": "t", "optimizer": "o", "value": 1.0}]

    def explode(table, path, **kw):
        with open(path, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError("disk full")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", explode)
    with pytest.raises(OSError):
        records.write_run(rows, str(tmp_path))
    assert files_under(str(tmp_path)) == []


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`rootbench list | head -1`: the closed pipe ends the command with SIGPIPE's code and no traceback."""
    proc = subprocess.Popen(
        [  # fifty listings: more than a pipe holds, so a write meets the closed end
            sys.executable,
            "-c",
            "import sys; from rootbench.harness.cli import main; "
            "codes = [main(['list']) for _ in range(50)]; sys.exit(max(codes))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away while the command still writes
    err = proc.stderr.read().decode()
    assert first.startswith(b"optimizers:") and proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_threads_set_the_runs_torch_threads_and_stay_out_of_its_identity(runs_dir, capsys):
    """``--threads N`` is recorded (``num_threads``) and is not part of the run id: the same config with other
    threads is a cache hit."""
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, "--threads", "1", runs=runs_dir) == 0
    (path,) = find_runs(runs_dir)
    assert (read_run(path)["num_threads"] == 1).all()
    capsys.readouterr()
    assert rootbench("bench", "--task", "quadratic", "--opt", "sgd", *SMOKE, "--threads", "2", runs=runs_dir) == 0
    assert "cached" in capsys.readouterr().out and find_runs(runs_dir) == [path]
