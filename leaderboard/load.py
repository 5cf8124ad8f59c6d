"""Reading ``runs/`` fast and defensively: one table of runs and one table of curve points.

A run file holds tidy rows whose run-level columns repeat on every row; the site keeps them apart:
``runs`` (one row per run: config, provenance, status, measurements, plus ``path`` and a file
fingerprint) and ``points`` (``run_id, step, epoch, examples_seen, split, metric, value, train_time_s,
eval_time_s``). Files are read with pyarrow (several times faster than pandas per small file), in
worker processes when there are many, and a previous build's tables are reused for files whose size
and mtime did not change, so a rebuild reads only new runs.

Files are read only through ``harness.records.read_record`` (the one reader of ``runs/``); a file it
rejects (unreadable, truncated, missing required columns, unknown schema version, no rows) is skipped
with one warning line naming it, in ``read_record``'s own words, so the CLI and the site say the same.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from rootbench.harness import records
from rootbench.leaderboard.aggregate import config_identity

POINT_COLUMNS = ("step", "epoch", "examples_seen", "split", "metric", "value", "train_time_s", "eval_time_s")
POINT_TYPES = {"step": pa.int64(), "epoch": pa.float64(), "examples_seen": pa.int64(), "split": pa.large_string(),
               "metric": pa.large_string(), "value": pa.float64(), "train_time_s": pa.float64(),
               "eval_time_s": pa.float64()}  # the types the runner writes (pandas strings -> large_string)
PARALLEL_MIN_FILES = 400  # below this, worker start-up costs more than it saves
CACHE_VERSION = 2  # bump when what a run row holds changes (e.g. how config ids are computed)


@dataclass
class Results:
    """All valid runs: ``runs`` (one row per run) and ``points`` (curve rows keyed by ``run_id``)."""

    runs: pd.DataFrame
    points: pd.DataFrame
    n_read: int = 0  # files parsed in this build (the rest came from the previous build's tables)
    n_reused: int = 0
    read_ids: set = field(default_factory=set)  # run ids parsed in this build (``each`` saw them)


def fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _read_one(path: str):
    """(run dict, points table) of one file, or a warning string (``records.read_record``'s own reason)."""
    try:
        rec = records.read_record(path)
    except records.ResultsError as e:
        return f"skipping {e}"
    run = dict(rec.run)
    run["path"] = path
    run["fingerprint"] = fingerprint(path)
    run["n_rows"] = rec.curve_table.num_rows
    run.update(config_identity(run))  # from the file's own values and types, so a cached run keeps its ids
    table = rec.curve_table
    cols = {c: table.column(c).cast(POINT_TYPES[c]) for c in POINT_COLUMNS}
    rid = str(run["run_id"])
    cols = {"run_id": pa.array([rid] * table.num_rows, pa.large_string()), **cols}
    return run, pa.table(cols)


def _read_many(paths: list[str], each=None):
    runs, tables, warnings = [], [], []
    for p in paths:
        out = _read_one(p)
        if isinstance(out, str):
            warnings.append(out)
            continue
        runs.append(out[0])
        tables.append(out[1])
        if each is not None:
            try:
                each(out[0], out[1])
            except Exception as e:  # noqa: BLE001 - a hook failure is reported, never fatal to the load
                warnings.append(f"{p}: {type(e).__name__} while processing it: {e}")
    points = pa.concat_tables(tables) if tables else None
    return runs, points, warnings


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series(dtype="str"),
                         **{c: pd.Series(dtype=POINT_TYPES[c].to_pandas_dtype()) for c in POINT_COLUMNS}})


def _cache(previous: str | None):
    """(runs, points) of a previous build, or (None, None) when absent or unreadable."""
    if not previous:
        return None, None
    runs_file, points_file = os.path.join(previous, "runs.parquet"), os.path.join(previous, "points.parquet")
    if not (os.path.exists(runs_file) and os.path.exists(points_file)):
        return None, None
    try:
        runs = pd.read_parquet(runs_file)
        points = pd.read_parquet(points_file)
    except Exception:  # noqa: BLE001 - a damaged cache is ignored, never fatal
        return None, None
    if not {"path", "fingerprint", "run_id"} <= set(runs.columns) or "run_id" not in points.columns:
        return None, None
    return runs, points


def load(root: str, warn=None, previous: str | None = None, jobs: int | None = None, each=None) -> Results:
    """All valid runs under ``root``; bad files are skipped with one ``warn`` line each.

    ``previous``: a folder holding ``runs.parquet`` and ``points.parquet`` of an earlier build; rows of
    files whose size and mtime are unchanged are taken from there instead of being parsed again.
    ``each(run, points_table)``: called for every file parsed in this call (not for reused rows), in the
    worker that read it; it must be picklable (a module-level function or a partial of one). The site
    renders run pages this way, spreading them over the workers that read the files.
    """
    warn = warn or (lambda msg: None)
    paths = records.find_runs(root) if os.path.isdir(root) else []
    old_runs, old_points = _cache(previous)
    reuse_ids: list[str] = []
    to_read = paths
    if old_runs is not None:
        known = dict(zip(old_runs["path"], old_runs["fingerprint"]))
        to_read, reused_paths = [], []
        for p in paths:
            try:
                same = known.get(p) == fingerprint(p)
            except OSError:
                same = False
            (reused_paths if same else to_read).append(p)
        keep = old_runs["path"].isin(reused_paths)
        old_runs = old_runs[keep]
        reuse_ids = list(old_runs["run_id"])
    jobs = jobs or min(os.cpu_count() or 1, 8)
    new_runs: list[dict] = []
    new_tables: list = []
    warnings: list[str] = []
    parallel = len(to_read) >= PARALLEL_MIN_FILES and jobs > 1
    if parallel:
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        chunks = [to_read[i::jobs] for i in range(jobs)]
        try:
            # spawn: workers must not inherit torch's (or anyone's) threads; they import only pyarrow/pandas
            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                for runs, points, warns in pool.map(_read_many, chunks, [each] * len(chunks)):
                    new_runs += runs
                    warnings += warns
                    if points is not None:
                        new_tables.append(points)
        except (BrokenProcessPool, OSError):  # no worker processes here (e.g. a __main__ read from stdin)
            new_runs, new_tables, warnings = [], [], []
            parallel = False
    if not parallel:
        runs, points, warns = _read_many(to_read, each)
        new_runs, warnings = runs, warns
        if points is not None:
            new_tables.append(points)
    for w in sorted(warnings):
        warn(w)

    frames = []
    if old_runs is not None and len(old_runs):
        frames.append(old_runs)
    if new_runs:
        frames.append(pd.DataFrame(new_runs))
    runs_df = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(
        columns=[c for c in records.REQUIRED_COLUMNS if c not in POINT_COLUMNS] + ["path", "fingerprint"])
    point_frames = []
    if old_points is not None and reuse_ids:
        point_frames.append(old_points[old_points["run_id"].isin(set(reuse_ids))])
    if new_tables:
        point_frames.append(pa.concat_tables(new_tables).combine_chunks().to_pandas())
    points_df = pd.concat(point_frames, ignore_index=True) if point_frames else _empty_points()
    for c in ("run_id", "split", "metric"):  # few distinct values, many rows: categoricals filter fast
        points_df[c] = points_df[c].astype("category")

    # two files with one run_id (a copy under another folder): keep the first, say so
    dup = runs_df["run_id"].duplicated(keep="first") if len(runs_df) else pd.Series([], dtype=bool)
    if dup.any():
        for p in runs_df.loc[dup, "path"]:
            warn(f"skipping {p}: its run_id is already loaded from another file")
        runs_df = runs_df[~dup].reset_index(drop=True)
        # the duplicate file's points share the run_id: keep the first n_rows of each run
        points_df = _dedupe_points(points_df, runs_df)
    runs_df = runs_df.sort_values(["tier", "task", "optimizer", "run_id"], kind="stable").reset_index(drop=True)
    return Results(runs_df, points_df, n_read=len(to_read), n_reused=len(reuse_ids),
                   read_ids={str(r["run_id"]) for r in new_runs})


def _dedupe_points(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Keep one copy of each run's points (the first ``n_rows`` rows of that run_id)."""
    n_rows = runs.set_index("run_id")["n_rows"]
    order = points.groupby("run_id", sort=False, observed=True).cumcount()
    limit = points["run_id"].map(n_rows)
    return points[order < limit].reset_index(drop=True)
