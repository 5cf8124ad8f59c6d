"""The results store: the only module that reads or writes files under ``runs/``.

Layout: ``runs/<task>/<optimizer>/<run_id>.parquet``, one tidy file per run (the leaderboard reads
``runs/*/*/*.parquet``); beside the runs, in folders the leaderboard skips (``NOT_RUNS``): sweep
manifests (``runs/sweeps/<task>/<optimizer>/<sweep_id>.json``), the regression gate's baselines
(``runs/baselines/<task>/<optimizer>/*.parquet``, runs of the same schema, and
``runs/baselines/probes/<optimizer>.json``) and optimizer micro-benchmarks (``runs/bench-optim/``).
The root may also be a pyarrow filesystem URI (``file:///shared/runs``, ``s3://bucket/runs``) so that
workers on other machines (``rootbench sweep --backend ray``) write to one store.

Every write is atomic (a temp file in the target folder, then a rename), so a killed writer leaves no
partial result. A run is read back as a ``Record``: its run-level columns once (``record.run``) and
its curve (``record.curve``: step, split, metric, value, clocks), with ``record.final(split, metric)``.

Schema 2 (``SCHEMA_VERSION``): every column has one type in every file; a value that is a list, tuple
or dict (a per-stage setting such as Swin's ``num_heads``) is stored as a JSON string. Schema-1 files
(lists stored as parquet lists) are still read, upgraded in memory; ``python -m
rootbench.harness.records --upgrade runs`` rewrites them in place as schema 2 (values unchanged,
``schema_upgraded_from`` = 1).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import posixpath
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from rootbench.harness.registry import UsageError, check_name

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
REQUIRED_COLUMNS = (
    "run_id",
    "task",
    "tier",
    "optimizer",
    "seed",
    "precision",
    "step",
    "epoch",
    "split",
    "metric",
    "value",
    "train_time_s",
    "status",
    "git_sha",
    "git_dirty",
    "rootbench_version",
    "torch_version",
    "cuda_version",
    "device",
    "cpu",
    "hostname",
    "started_at",
    "schema_version",
)
CURVE_COLUMNS = ("step", "epoch", "examples_seen", "split", "metric", "value", "train_time_s", "eval_time_s")
STATUSES = ("ok", "diverged", "oom", "timeout", "error")
FAILED = ("oom", "timeout", "error")  # environment failures; "diverged" is a legitimate outcome
# Where a run came from, in the order ``rootbench show`` and the run pages list it.
PROVENANCE_COLUMNS = (
    "git_sha",
    "git_dirty",
    "rootbench_version",
    "torch_version",
    "cuda_version",
    "device",
    "cpu",
    "num_threads",
    "hostname",
    "python_version",
    "started_at",
    "schema_version",
    "code_hash",
    "optimizer_source_hash",
    "task_source_hash",
)
SWEEPS_DIR = "sweeps"
BASELINES_DIR = "baselines"
BENCH_OPTIM_DIR = "bench-optim"
# folders under the results root that are not leaderboard runs
NOT_RUNS = (SWEEPS_DIR, BASELINES_DIR, BENCH_OPTIM_DIR)
# a remote store's write is retried after these pauses (a dropped connection, a throttled request): three
# attempts in all over about five seconds, then one clear error; local writes are not retried
REMOTE_RETRY_PAUSES_S = (1.0, 4.0)


class ResultsError(UsageError):
    """A results file that cannot be used (corrupt, truncated, unknown schema, missing columns); names the file."""


# ---------------------------------------------------------------------------------------------
# paths and storage


def run_path(root: str, task: str, optimizer: str, rid: str) -> str:
    """Where run ``rid`` lives; the names are checked, so no path can leave ``root``."""
    _check_names(task=task, optimizer=optimizer, run_id=rid)
    return os.path.join(root, task, optimizer, f"{rid}.parquet")


def _check_names(optional: bool = False, **named) -> None:
    """Each path component (``run_id=...``) is a safe single name, so no path can leave the root; with
    ``optional`` a None (a listing's "all") is skipped."""
    for kind, name in named.items():
        if not (optional and name is None):
            check_name(kind.replace("_", " "), name)


def manifest_path(root: str, task: str, optimizer: str, sweep_id: str) -> str:
    _check_names(task=task, optimizer=optimizer, sweep_id=sweep_id)
    return os.path.join(root, SWEEPS_DIR, task, optimizer, f"{sweep_id}.json")


def manifest_paths(root: str, task: str | None = None, optimizer: str | None = None) -> list[str]:
    """The sweep manifests under ``root`` (``sweeps/<task>/<optimizer>/<sweep_id>.json``), sorted; ``task`` and
    ``optimizer`` narrow the listing (None: all). ``root`` may be a pyarrow URI."""
    _check_names(optional=True, task=task, optimizer=optimizer)
    parts = [task or "*", optimizer or "*"]
    filesystem, inner = storage(root)
    if filesystem is None:
        return sorted(glob.glob(os.path.join(inner, SWEEPS_DIR, *parts, "*.json")))
    rel = _store_listing(filesystem, posixpath.join(inner, SWEEPS_DIR), ".json")
    keep = [r for r in rel if all(p in ("*", q) for p, q in zip(parts, r.split("/")))]
    return sorted(f"{root.rstrip('/')}/{SWEEPS_DIR}/{r}" for r in keep)


def _store_listing(filesystem, base: str, suffix: str) -> list[str]:
    """The ``<a>/<b>/<name><suffix>`` files under ``base`` on a pyarrow filesystem, relative to ``base``: the
    layout of both run files and sweep manifests (a missing ``base`` lists nothing)."""
    from pyarrow import fs

    base = base.rstrip("/")
    infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
    rel = [posixpath.relpath(i.path, base) for i in infos if i.path.endswith(suffix)]
    return [r for r in rel if len(r.split("/")) == 3]


def read_manifests(root: str, task: str, optimizer: str) -> list[dict]:
    """Every sweep manifest of ``task`` / ``optimizer`` under ``root`` (sorted by file name); none: []."""
    return [read_json(path) for path in manifest_paths(root, task, optimizer)]


def _first_line(error: BaseException) -> str:
    """An exception's first line (pyarrow's store errors carry pages of curl details after it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def storage(path: str):
    """(pyarrow filesystem, path inside it) for a URI; (None, local path) for a plain or ``file://`` path."""
    if "://" not in path:
        return None, path
    import pyarrow
    from pyarrow import fs

    try:
        filesystem, inner = fs.FileSystem.from_uri(path)
    except (OSError, pyarrow.ArrowException) as e:
        # an unknown scheme, a bucket that cannot be resolved (no network, no credentials): one line, before any work
        raise UsageError(f"cannot open the results store {path}: {_first_line(e)}") from None
    if isinstance(filesystem, fs.LocalFileSystem):
        return None, inner  # local files keep the temp-file + os.replace atomic write
    return filesystem, inner


def exists(path: str) -> bool:
    filesystem, inner = storage(path)
    if filesystem is None:
        return os.path.exists(inner)
    from pyarrow import fs

    return filesystem.get_file_info(inner).type != fs.FileType.NotFound


def check_writable(folder: str) -> None:
    """Raise ``UsageError`` unless files can be created under ``folder`` (it need not exist yet).

    Tried, not inferred from permission bits: a file is created and removed in ``folder`` or its nearest
    existing ancestor, so read-only mounts and root's privileges are judged right. A URI is not checked.
    """
    filesystem, inner = storage(folder)
    if filesystem is not None:
        return
    probe = os.path.abspath(inner)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UsageError(f"cannot write under {folder}: {probe} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".rootbench-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write under {folder}: {probe} is not writable ({e.strerror})") from None


def atomic_write(path: str, write) -> str:
    """The one writer: ``write(tmp_path, filesystem)`` fills a temp file beside ``path``, then it is renamed
    into place. A killed writer leaves at most a ``.partial`` temp file, never a bad result."""
    filesystem, inner = storage(path)
    if filesystem is not None:
        _remote_write(filesystem, inner, write, path)
        return path
    folder = os.path.dirname(inner) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".partial")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared, like any file written normally
    try:
        write(tmp, None)
        os.replace(tmp, inner)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _remote_write(filesystem, inner: str, write, path: str) -> None:
    """A remote store: write a temp object beside ``inner``, then move it into place; an I/O error is retried
    after each of ``REMOTE_RETRY_PAUSES_S`` (said on stderr), and the last one is a one-line ``ResultsError``."""
    folder = posixpath.dirname(inner)
    for attempt in range(len(REMOTE_RETRY_PAUSES_S) + 1):
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}.partial"
        try:
            filesystem.create_dir(folder, recursive=True)
            write(tmp, filesystem)
            filesystem.move(tmp, inner)
            return
        except BaseException as e:
            with contextlib.suppress(OSError):
                filesystem.delete_file(tmp)
            if not isinstance(e, OSError):
                raise
            reason = _first_line(e)
            if attempt == len(REMOTE_RETRY_PAUSES_S):
                raise ResultsError(f"cannot write {path} ({attempt + 1} attempts): {reason}") from None
            pause = REMOTE_RETRY_PAUSES_S[attempt]
            print(f"rootbench: writing {path} failed ({reason}); retrying in {pause:g} s", file=sys.stderr)
            time.sleep(pause)


def remove(path: str) -> None:
    """Delete one stored file (a superseded baseline run); local stores only."""
    filesystem, inner = storage(path)
    if filesystem is not None:
        filesystem.delete_file(inner)
    else:
        os.remove(inner)


def write_json(obj: Any, path: str) -> str:
    return write_bytes(json.dumps(obj, indent=1, sort_keys=True, default=str).encode(), path)


def write_bytes(data: bytes, path: str) -> str:
    """``data`` as the file ``path`` (local or in a store), atomically."""

    def write(tmp, filesystem):
        if filesystem is None:
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            with filesystem.open_output_stream(tmp) as f:
                f.write(data)

    return atomic_write(path, write)


def read_json(path: str) -> Any:
    """A JSON file of the store (manifest, probe); ``ResultsError`` naming it when unreadable."""
    filesystem, inner = storage(path)
    try:
        if filesystem is None:
            with open(inner, encoding="utf-8") as f:
                return json.load(f)
        with filesystem.open_input_stream(inner) as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a readable JSON file ({type(e).__name__}: {e})") from None


def write_table(df, path: str) -> str:
    """A plain parquet table that is not a run (optimizer micro-benchmarks)."""
    return atomic_write(path, lambda tmp, filesystem: df.to_parquet(tmp, index=False, filesystem=filesystem))


# ---------------------------------------------------------------------------------------------
# values


def encode_value(v):
    """One stable column type per value kind: lists, tuples and dicts become JSON strings (schema 2)."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(_plain(v), sort_keys=True)
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy scalars and arrays
        return encode_value(v.tolist())
    return v


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    return v


def _python(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return encode_value(v)


# ---------------------------------------------------------------------------------------------
# records


class Record:
    """One stored run: ``run`` (its run-level columns, one value each) and its ``curve``.

    ``curve`` is a DataFrame with ``CURVE_COLUMNS`` (one row per step, split and metric); ``final(split,
    metric)`` is the value at the last step that has it (the task's metric by default).
    """

    __slots__ = ("path", "run", "_table", "_curve")

    def __init__(self, run: dict, curve_table, path: str | None = None):
        self.path, self.run, self._table, self._curve = path, run, curve_table, None

    def __getitem__(self, key):
        return self.run[key]

    def get(self, key, default=None):
        v = self.run.get(key, default)
        return default if v is None else v

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])

    @property
    def status(self) -> str:
        return str(self.run["status"])

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def curve_table(self):
        """The curve as a pyarrow table (cheap to concatenate across many runs)."""
        return self._table

    @property
    def curve(self):
        if self._curve is None:
            self._curve = self._table.to_pandas()
        return self._curve

    def final(self, split: str, metric: str | None = None) -> float:
        metric = metric or self.run.get("metric_name") or "loss"
        c = self.curve
        sel = c[(c["split"] == split) & (c["metric"] == metric)]
        if not len(sel):
            return float("nan")
        return float(sel.sort_values("step", kind="stable")["value"].iloc[-1])

    def frame(self):
        """The tidy table as stored: the run-level columns repeated on every curve row."""
        df = self.curve.copy()
        for k, v in self.run.items():
            if k not in df.columns:
                df[k] = [v] * len(df)
        return df


def _curve_from_table(table):
    import pyarrow as pa

    types = {
        "step": pa.int64(),
        "epoch": pa.float64(),
        "examples_seen": pa.int64(),
        "split": pa.string(),
        "metric": pa.string(),
        "value": pa.float64(),
        "train_time_s": pa.float64(),
        "eval_time_s": pa.float64(),
    }
    cols = {}
    names = set(table.column_names)
    for c in CURVE_COLUMNS:
        col = table.column(c) if c in names else pa.nulls(table.num_rows, types[c])
        if col.type != types[c]:
            try:
                col = col.cast(types[c])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                col = pa.nulls(table.num_rows, types[c])
        cols[c] = col
    return pa.table(cols)


def _from_arrow(table, path: str) -> Record:
    names = set(table.column_names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}; it was not written by rootbench")
    if table.num_rows == 0:
        raise ResultsError(f"{path}: no rows")
    versions = set(table.column("schema_version").unique().to_pylist())
    if not versions <= set(READABLE_SCHEMAS) or len(versions) != 1:
        raise ResultsError(
            f"{path}: schema version {sorted(versions, key=str)} is not one of "
            f"{list(READABLE_SCHEMAS)}; rerun it with this rootbench"
        )
    run = {c: _python(table.column(c)[0].as_py()) for c in table.column_names if c not in CURVE_COLUMNS}
    return Record(run, _curve_from_table(table), path)


def read_record(path: str) -> Record:
    """Read and validate one run file; raises ``ResultsError`` naming the file and the problem."""
    import pyarrow.parquet as pq

    try:
        filesystem, inner = storage(path)
        table = pq.read_table(inner, filesystem=filesystem, use_threads=False)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for truncated or foreign files
        raise ResultsError(
            f"{path}: not a readable parquet file ({type(e).__name__}: {e}); delete it or rerun with --force"
        ) from None
    try:
        return _from_arrow(table, path)
    except ResultsError:
        raise
    except Exception as e:  # noqa: BLE001 - a readable file whose values cannot be used
        raise ResultsError(f"{path}: unusable values ({type(e).__name__}: {e})") from None


def read_run(path: str):
    """One run file as its tidy DataFrame (``read_record(path).frame()``)."""
    return read_record(path).frame()


def record_from_rows(rows: list[dict], path: str | None = None) -> Record:
    """The record that ``rows`` will be (or were) stored as."""
    return _from_arrow(_table(_frame(rows)), path or "(in memory)")


def _frame(rows: list[dict]):
    """The rows as a DataFrame in schema 2: stamped with the schema version, values of stable types."""
    import pandas as pd

    if not rows:
        raise ResultsError("refusing to write a run with no rows")
    curve = set(CURVE_COLUMNS)
    out = []
    for r in rows:
        out.append({k: (v if k in curve else encode_value(v)) for k, v in r.items()})
    df = pd.DataFrame(out)
    df["schema_version"] = SCHEMA_VERSION
    return df


# Run-level columns that are often empty, with the one type they have in every file (an all-empty column
# would otherwise be stored with parquet's null type in one file and a real type in the next).
COLUMN_TYPES = {
    "diverged_step": "int64",
    "steps_to_target": "int64",
    "time_to_target_s": "float64",
    "target": "float64",
    "time_limit_s": "float64",
    "status_message": "string",
    "traceback": "string",
    "warmup_time_s": "float64",
    "setup_time_s": "float64",
    "peak_mem_bytes": "int64",
    "peak_mem_total_bytes": "int64",
    "baseline_mem_bytes": "int64",
    "peak_mem_kind": "string",
    "opt_state_bytes": "int64",
    "opt_state_bytes_per_param": "float64",
    "n_params": "int64",
    "param_bytes": "int64",
    "grad_bytes": "int64",
    "opt_step_time_s": "float64",
    "adamw_step_time_s": "float64",
    "step_time_ratio_adamw": "float64",
    "opt_first_step_time_s": "float64",
    "opt_compile_time_s": "float64",
    "opt_impl": "string",
    "data_wait_s": "float64",
    "data_wait_share": "float64",
    "data_source": "string",
    "world_size": "int64",
    "fp16_skipped_steps": "int64",
    "wall_time_s": "float64",
    "total_train_time_s": "float64",
    "total_eval_time_s": "float64",
    "steps_completed": "int64",
    "warm_start_share": "float64",
    "state_frozen": "bool_",
    "state_frozen_reason": "string",
}


def _table(df):
    """``df`` as a pyarrow table whose known columns have their one type (``COLUMN_TYPES``)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    for name, type_name in COLUMN_TYPES.items():
        i = table.schema.get_field_index(name)
        if i < 0:
            continue
        wanted = getattr(pa, type_name)()
        col = table.column(i)
        if col.type != wanted:
            try:
                col = col.cast(wanted)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                continue  # a value that does not fit the type is kept as it is, never lost
            table = table.set_column(i, name, col)
    return table


def _write_frame(df, path: str) -> str:
    import pyarrow.parquet as pq

    # without pandas' schema metadata (12 KB of JSON, stored twice): it halves a run file, and COLUMN_TYPES
    # already fix every column's type; the footer's statistics stay (the leaderboard reads run-level values there)
    table = _table(df).replace_schema_metadata(None)
    return atomic_write(path, lambda tmp, filesystem: pq.write_table(table, tmp, filesystem=filesystem))


def write_run(rows: list[dict], root: str = "runs") -> str:
    """Write one run's rows to its file atomically; returns the path."""
    first = rows[0] if rows else {}
    df = _frame(rows)
    path = run_path(root, str(first["task"]), str(first["optimizer"]), str(first["run_id"]))
    return _write_frame(df, path)


def lookup(root: str, task: str, optimizer: str, rid: str) -> Record | None:
    """The stored record of run ``rid``, or None if there is none; ``ResultsError`` if its file is unusable."""
    path = run_path(root, task, optimizer, rid)
    if not exists(path):
        return None
    return read_record(path)


def find_runs(root: str = "runs") -> list[str]:
    """Every leaderboard run file under ``root`` (``<task>/<optimizer>/<run_id>.parquet``), sorted; ``root`` may
    be a pyarrow URI (a store the runs were written to with ``--runs URI``)."""
    filesystem, inner = storage(root)
    if filesystem is not None:
        rel = _store_listing(filesystem, inner, ".parquet")
        return sorted(f"{root.rstrip('/')}/{r}" for r in rel if r.split("/")[0] not in NOT_RUNS)
    out = []
    for dirpath, dirnames, filenames in os.walk(inner):
        if os.path.normpath(dirpath) == os.path.normpath(inner):
            dirnames[:] = [d for d in dirnames if d not in NOT_RUNS]
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".parquet")]
    return out


def iter_records(root: str = "runs", warn=None, paths: list[str] | None = None) -> Iterator[Record]:
    """Every valid run under ``root`` (or in ``paths``); bad files are skipped with one ``warn`` line each."""
    for path in paths if paths is not None else find_runs(root):
        try:
            yield read_record(path)
        except ResultsError as e:
            if warn:
                warn(f"skipping {e}")


def load_runs(root: str = "runs", warn=None):
    """All valid runs under ``root`` as one tidy pandas frame (with ``path``); bad files skipped with a warning."""
    import pandas as pd

    frames = []
    for rec in iter_records(root, warn):
        df = rec.frame()
        df["path"] = rec.path
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS) + ["path"])
    return pd.concat(frames, ignore_index=True, sort=False)


def find_run_file(root: str, rid: str) -> str | None:
    for path in find_runs(root):
        if os.path.basename(path) == f"{rid}.parquet":
            return path
    return None


def pull(root: str, folder: str) -> tuple[int, int, int]:
    """Copy the result files (run parquets, manifests) of the store ``root`` (a pyarrow URI) into the local
    ``folder``, which the site and ``claims`` read. A file already there with the store's size is kept; one
    whose size differs (a failed run since retried under the same run id, a manifest a resumed sweep extended)
    is replaced. Each copy is an atomic write. Returns (new, replaced, kept)."""
    filesystem, inner = storage(root)
    if filesystem is None:
        raise UsageError(f"--pull {root}: a local folder; the site and claims read it as it is")
    from pyarrow import fs

    base = inner.rstrip("/")
    infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
    wanted = [i for i in infos if i.type == fs.FileType.File and i.path.endswith((".parquet", ".json"))]
    new = replaced = kept = 0
    for info in sorted(wanted, key=lambda i: i.path):
        rel = posixpath.relpath(info.path, base)
        if rel.startswith("..") or any(part.startswith(".") for part in rel.split("/")):
            continue  # temp objects of unfinished writes (``.tmp-*.partial``) and hidden files
        dest = os.path.join(folder, *rel.split("/"))
        there = os.path.exists(dest)
        if there and os.path.getsize(dest) == info.size:
            kept += 1
            continue
        with filesystem.open_input_stream(info.path) as f:
            write_bytes(f.read(), dest)
        replaced += there
        new += not there
    return new, replaced, kept


def check_local(root: str, reader: str) -> None:
    """``reader`` (the site, claims) reads a local results folder: a store URI gets one line saying how to copy it."""
    if storage(root)[0] is not None:
        raise UsageError(
            f"--runs {root}: {reader} reads a local folder; copy the store first with "
            f"`python -m rootbench.harness.records --pull {root} runs`"
        )


# ---------------------------------------------------------------------------------------------
# upgrading schema-1 files in place


def upgrade_file(path: str) -> bool:
    """Rewrite a schema-1 run file as schema 2 (values unchanged); False if it already is schema 2."""
    rec = read_record(path)
    if int(rec.run["schema_version"]) == SCHEMA_VERSION:
        return False
    curve = rec.curve
    run = {**rec.run, "schema_upgraded_from": int(rec.run["schema_version"])}
    rows = [{**run, **row} for row in curve.to_dict("records")]
    _write_frame(_frame(rows), path)
    return True


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m rootbench.harness.records",
        description="Upgrade stored run files to the current schema (values unchanged), or copy a store's results "
        "into a local folder.",
    )
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--upgrade", metavar="ROOT", help="results folder, e.g. runs")
    what.add_argument(
        "--pull",
        nargs=2,
        metavar=("URI", "FOLDER"),
        help="copy the runs and manifests of a store (s3://..., gs://...) into FOLDER (a file there of the store's "
        "size is kept)",
    )
    ap.add_argument(
        "--only-needed", action="store_true", help="rewrite only schema-1 files whose columns change type (list values)"
    )
    args = ap.parse_args(argv)
    if args.pull:
        try:
            new, replaced, kept = pull(*args.pull)
        except UsageError as e:
            print(f"rootbench: error: {e}", file=sys.stderr)
            return 2
        print(
            f"{new + replaced} files copied from {args.pull[0]} into {args.pull[1]} ({new} new, {replaced} replaced "
            f"by the store's version; {kept} already there)"
        )
        return 0
    import pyarrow.parquet as pq

    paths = find_runs(args.upgrade) + find_runs(os.path.join(args.upgrade, BASELINES_DIR))
    changed = 0
    for path in paths:
        if args.only_needed:
            schema = pq.read_schema(path)
            if not any(str(f.type).startswith(("list", "large_list", "struct", "map")) for f in schema):
                continue
        changed += upgrade_file(path)
    print(f"{changed} of {len(paths)} run files rewritten as schema {SCHEMA_VERSION}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
