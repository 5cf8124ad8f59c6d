"""One schema for every run file: the committed runs read as one table in DuckDB and polars.

Schema 2 stores list, tuple and dict values (Swin's per-stage ``num_heads``) as JSON strings and gives
often-empty columns one type everywhere; schema-1 files (lists as parquet lists) are still read,
upgraded in memory, and ``records.upgrade_file`` rewrites them with values unchanged.
"""

import glob
import json
import os

import pandas as pd
import pytest

from rootbench.harness import records
from rootbench.harness.config import RunConfig
from tests.conftest import ROOT, rootbench

RUNS = os.path.join(ROOT, "runs")
RUN_GLOB = os.path.join(RUNS, "*", "*", "*.parquet")  # the leaderboard's runs; baselines one level deeper


def _committed_run_files() -> list[str]:
    return records.find_runs(RUNS) + records.find_runs(os.path.join(RUNS, records.BASELINES_DIR))


def test_the_run_glob_holds_exactly_the_leaderboard_runs():
    assert sorted(glob.glob(RUN_GLOB)) == records.find_runs(RUNS)
    assert not glob.glob(os.path.join(RUNS, records.BASELINES_DIR, "probes", "*.parquet"))  # probes are JSON


def test_duckdb_reads_every_committed_run_file_as_one_table():
    duckdb = pytest.importorskip("duckdb")
    files = _committed_run_files()
    n_rows = sum(records.read_record(f).curve_table.num_rows for f in files)
    got = duckdb.sql(
        f"SELECT count(*), count(DISTINCT run_id) FROM read_parquet({files!r}, union_by_name=true)"
    ).fetchall()[0]
    assert got == (n_rows, len(files))
    # the README's one-liner
    best = duckdb.sql(
        f"SELECT task, optimizer, max(value) FROM read_parquet('{RUN_GLOB}', union_by_name=true) "
        "WHERE split = 'test' AND metric = 'accuracy' GROUP BY ALL"
    ).df()
    assert len(best) > 10


def test_polars_reads_every_committed_run_file_as_one_table():
    pl = pytest.importorskip("polars")
    files = _committed_run_files()
    df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    assert df["run_id"].n_unique() == len(files)
    assert df.schema["task_num_heads"] in (pl.String, pl.Int64)


def _smoke_rows(**settings):
    from rootbench.harness import run

    return run("quadratic", "sgd", RunConfig(tier="smoke", ref_steps=0, task_settings=settings))


def test_list_values_are_json_strings_and_empty_columns_keep_their_type(tmp_path):
    import pyarrow.parquet as pq

    rows = _smoke_rows()
    rows = [{**r, "task_num_heads": [1, 2, 4]} for r in rows]  # a per-stage setting
    path = records.write_run(rows, str(tmp_path))
    schema = pq.read_schema(path)
    assert str(schema.field("task_num_heads").type) in ("string", "large_string")
    assert str(schema.field("steps_to_target").type) == "int64"  # empty here, int64 everywhere
    rec = records.read_record(path)
    assert json.loads(rec.run["task_num_heads"]) == [1, 2, 4] and rec.run["schema_version"] == records.SCHEMA_VERSION
    assert rec.final("val", "loss") == pytest.approx(
        rec.curve.query("split == 'val'").sort_values("step")["value"].iloc[-1]
    )


def test_schema_1_files_are_read_and_upgraded_without_changing_values(tmp_path):
    rows = _smoke_rows()
    df = pd.DataFrame([{**r, "task_num_heads": [3, 6], "schema_version": 1} for r in rows])
    path = records.run_path(str(tmp_path), rows[0]["task"], rows[0]["optimizer"], rows[0]["run_id"])
    os.makedirs(os.path.dirname(path))
    df.to_parquet(path, index=False)  # as rootbench 0.1 wrote it: a parquet list column
    old = records.read_record(path)
    assert old.run["task_num_heads"] == "[3, 6]" and old.run["schema_version"] == 1
    assert records.upgrade_file(path) and not records.upgrade_file(path)
    new = records.read_record(path)
    assert new.run["schema_version"] == 2 and new.run["schema_upgraded_from"] == 1
    assert {k: v for k, v in new.run.items() if k not in ("schema_version", "schema_upgraded_from")} == {
        k: v for k, v in old.run.items() if k != "schema_version"
    }
    pd.testing.assert_frame_equal(new.curve, old.curve)


def test_a_file_of_another_schema_is_a_clear_error(tmp_path):
    path = str(tmp_path / "foreign.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(records.ResultsError, match="foreign.parquet: missing columns"):
        records.read_record(path)
    rows = _smoke_rows()
    path = records.write_run([{**r, "schema_version": 99} for r in rows], str(tmp_path))
    pd.DataFrame([{**r, "schema_version": 99} for r in rows]).to_parquet(path, index=False)
    with pytest.raises(records.ResultsError, match="schema version"):
        records.read_record(path)


def test_one_listing_of_sweep_manifests_serves_the_sweeps_and_the_leaderboard():
    """``records.manifest_paths`` lists every committed manifest, or one task/optimizer's (``--around`` reads
    those), and checks the names it is given."""
    every = records.manifest_paths(RUNS)
    assert every == sorted(glob.glob(os.path.join(RUNS, records.SWEEPS_DIR, "*", "*", "*.json"))) and every
    task, opt = every[0].split(os.sep)[-3:-1]
    narrowed = records.manifest_paths(RUNS, task, opt)
    assert narrowed == [p for p in every if p.split(os.sep)[-3:-1] == [task, opt]]
    assert [m["sweep_id"] for m in records.read_manifests(RUNS, task, opt)] == [
        os.path.basename(p)[: -len(".json")] for p in narrowed
    ]
    from rootbench.harness.registry import UsageError

    with pytest.raises(UsageError, match="invalid task name"):
        records.manifest_paths(RUNS, "../elsewhere", opt)


def test_a_run_file_carries_no_pandas_metadata_and_reads_back_what_was_written(tmp_path):
    """The pandas schema metadata (half of a small run file) is not written; the values and their types come
    back the same, and the leaderboard's footer-statistics reader sees the same run-level values."""
    import pyarrow.parquet as pq

    from rootbench.leaderboard import load as site_load

    rows = _smoke_rows()
    path = records.write_run(rows, str(tmp_path))
    assert b"pandas" not in (pq.read_schema(path).metadata or {})
    written, expected = records.read_run(path), records.record_from_rows(rows).frame()
    pd.testing.assert_frame_equal(written.reset_index(drop=True), expected.reset_index(drop=True))
    runs = site_load.load(str(tmp_path)).runs
    assert runs["run_id"].tolist() == [rows[0]["run_id"]] and runs["optimizer"].iloc[0] == rows[0]["optimizer"]


def test_runs_are_listed_and_read_from_a_uri_store(tmp_path, monkeypatch):
    """``--runs URI``: the runs and manifests written to a pyarrow store are listed back (the campaign's budget,
    ``--around`` and ``claims`` read them through ``find_runs``/``manifest_paths``), for ``file://`` and for a
    remote filesystem (a mock)."""
    from pyarrow import fs

    rows = records.read_run(records.find_runs(RUNS)[0]).to_dict("records")
    local = f"file://{tmp_path}/store"
    written = records.write_run(rows, local)
    assert records.find_runs(local) == [written.removeprefix("file://")]
    assert records.find_runs(f"file://{tmp_path}/nowhere") == []

    mock = fs._MockFileSystem()  # one in-memory store for every call (a URI would make a new, empty one)
    plain = records.storage
    monkeypatch.setattr(
        records, "storage", lambda p: (mock, p.split("://", 1)[1]) if p.startswith("mock://") else plain(p)
    )
    written = records.write_run(rows, "mock://store")
    records.write_json({"planted": True}, records.manifest_path("mock://store", "t", "o", "abc"))  # not a run
    assert records.find_runs("mock://store") == [written]
    assert [r.run_id for r in records.iter_records("mock://store")] == [rows[0]["run_id"]]
    assert records.find_runs("mock://elsewhere") == []
    planted = "mock://store/sweeps/t/o/abc.json"
    assert records.manifest_paths("mock://store") == [planted]  # the same listing serves manifests
    assert records.manifest_paths("mock://store", "t", "o") == [planted]
    assert records.manifest_paths("mock://store", "t", "other") == []


def test_a_store_is_pulled_into_a_local_folder_the_site_and_claims_read(tmp_path, monkeypatch, capsys):
    """``records --pull URI FOLDER`` copies a store's runs and manifests (not unfinished temp objects) into a
    folder, keeps files already there unless the store's differs, and the copy reads back as the same runs;
    the site and ``claims`` given a store URI say, in one line, to pull it (they read a local folder)."""
    from pyarrow import fs

    from rootbench.leaderboard import claims

    mock = fs._MockFileSystem()
    plain = records.storage
    monkeypatch.setattr(
        records, "storage", lambda p: (mock, p.split("://", 1)[1]) if p.startswith("mock://") else plain(p)
    )
    rows = records.read_run(records.find_runs(RUNS)[0]).to_dict("records")
    written = records.write_run(rows, "mock://store")
    records.write_json({"sweep_id": "abc"}, records.manifest_path("mock://store", "t", "o", "abc"))
    leftover = os.path.join(os.path.dirname(written.split("://", 1)[1]), ".tmp-dead.partial")
    with mock.open_output_stream(leftover) as f:  # a killed writer's temp object
        f.write(b"half")
    local = tmp_path / "runs"
    assert records.main(["--pull", "mock://store", str(local)]) == 0
    assert "2 files copied" in capsys.readouterr().out
    (copied,) = records.find_runs(str(local))
    assert copied == os.path.join(local, written.removeprefix("mock://store/"))
    assert records.read_record(copied).run_id == rows[0]["run_id"]
    assert records.read_manifests(str(local), "t", "o") == [{"sweep_id": "abc"}]
    assert not [p for p in local.rglob("*") if p.name.startswith(".")]

    assert records.pull("mock://store", str(local)) == (0, 0, 2)  # already there: kept
    os.remove(copied)
    records.write_json({"sweep_id": "abc", "resumed": True}, records.manifest_path("mock://store", "t", "o", "abc"))
    assert records.pull("mock://store", str(local)) == (1, 1, 0)  # the run again; the extended manifest replaced
    assert records.read_manifests(str(local), "t", "o") == [{"sweep_id": "abc", "resumed": True}]

    assert claims.main(["--runs", "mock://store"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records --pull mock://store" in err
    assert claims.main(["--runs", str(tmp_path / "nowhere")]) == 2
    assert "no such results folder" in capsys.readouterr().err
    assert rootbench("site", "--runs", "mock://store", "--out", str(tmp_path / "site")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the site reads a local folder" in err and not (tmp_path / "site").exists()
    records.check_local(f"file://{local}", "the site")  # a file:// URI is a local folder


def test_a_remote_write_is_retried_then_is_one_clear_error(monkeypatch, capsys):
    """A store that drops a write (a reset connection, a throttled request) is tried again after 1 s and 4 s, each
    retry said in one line; the third failure is one ``ResultsError`` line. No temp object is left behind."""
    import types

    from pyarrow import fs

    mock = fs._MockFileSystem()

    class Flaky:  # the mock store, failing its next ``failures`` writes
        failures = 2

        def open_output_stream(self, path):
            if self.failures:
                self.failures -= 1
                raise OSError("Connection reset by peer\ncurl details")
            return mock.open_output_stream(path)

        def __getattr__(self, name):
            return getattr(mock, name)

    flaky = Flaky()
    monkeypatch.setattr(records, "storage", lambda p: (flaky, p.split("://", 1)[1]))
    pauses = []
    monkeypatch.setattr(records, "time", types.SimpleNamespace(sleep=pauses.append))

    def stored():
        found = mock.get_file_info(fs.FileSelector("store", recursive=True, allow_not_found=True))
        return sorted(i.path for i in found if i.type == fs.FileType.File)

    records.write_json({"a": 1}, "mock://store/t/x.json")
    assert pauses == [1.0, 4.0] and stored() == ["store/t/x.json"]
    assert records.read_json("mock://store/t/x.json") == {"a": 1}
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.count("(Connection reset by peer); retrying in") == 2 and "curl" not in err
    flaky.failures = 3
    with pytest.raises(
        records.ResultsError, match=r"^cannot write mock://store/t/y.json \(3 attempts\): Connection reset by peer$"
    ):
        records.write_json({"b": 2}, "mock://store/t/y.json")
    assert stored() == ["store/t/x.json"]


def test_a_store_that_cannot_be_opened_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    """An unknown URI scheme, or a bucket pyarrow cannot reach (no network, no credentials; simulated here),
    is a usage error of one line from every command that takes ``--runs``: nothing trains, nothing is written."""
    from pyarrow import fs

    class Unreachable:  # pyarrow's FileSystem as seen offline (its Cython class cannot be patched in place)
        @staticmethod
        def from_uri(uri):
            raise OSError("When resolving region for bucket 'b': AWS Error NETWORK_CONNECTION\ncurl details")

    with pytest.raises(records.UsageError, match="cannot open the results store nosuch://x: Unrecognized"):
        records.storage("nosuch://x")
    monkeypatch.setattr(fs, "FileSystem", Unreachable)
    monkeypatch.chdir(tmp_path)
    for argv in (
        ("bench", "--task", "quadratic", "--opt", "sgd", "--tier", "smoke", "--runs", "s3://b/runs"),
        ("site", "--runs", "s3://b/runs", "--out", str(tmp_path / "site")),
    ):
        assert rootbench(*argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot open the results store s3://b/runs: When resolving region" in err
    assert os.listdir(tmp_path) == []
