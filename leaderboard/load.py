"""Reading ``runs/`` fast and defensively: one table of runs and one table of curve points.

A run file holds tidy rows whose run-level columns repeat on every row; the site keeps them apart:
``runs`` (one row per run: config, provenance, status, measurements, final values, plus ``path``, ``folder``
and fingerprints) and ``points`` (``run_id, step, epoch, examples_seen, split, metric, value, train_time_s,
eval_time_s``).

The unit of work is a folder (``<task>/<optimizer>/``): the seeds of a configuration and the sweep manifests
that list them live there, so a worker that reads a folder can also write its run pages with their sibling
seeds and manifests (``each``), and a rebuild reuses a folder whose files (and manifests) are unchanged from
the previous build's tables. Folders are spread over worker processes when there are many files.

Every file passes ``harness.records.read_record``'s checks: the fast path here reads the file once with
pyarrow and applies the same ones (the required columns, at least one row, one readable schema version, the
same value encoding); a file it does not accept is handed to ``read_record`` itself, whose verdict and words
stand, so a file that it rejects is skipped with one warning line naming it, as the CLI would say it
(``tests/test_leaderboard.py`` holds the two paths to the same records).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from rootbench.harness import records
from rootbench.leaderboard.aggregate import config_identity

POINT_COLUMNS = ("step", "epoch", "examples_seen", "split", "metric", "value", "train_time_s", "eval_time_s")
POINT_TYPES = {
    "step": pa.int64(),
    "epoch": pa.float64(),
    "examples_seen": pa.int64(),
    "split": pa.large_string(),
    "metric": pa.large_string(),
    "value": pa.float64(),
    "train_time_s": pa.float64(),
    "eval_time_s": pa.float64(),
}  # the types the runner writes (pandas strings -> large_string)
FINALS = (
    ("final_train", "train", None),
    ("final_val", "val", None),
    ("final_test", "test", None),
    ("final_train_loss", "train", "loss"),
    ("final_val_loss", "val", "loss"),
    ("final_test_loss", "test", "loss"),
)
PARALLEL_MIN_FILES = 1000  # below this, worker start-up costs more than it saves (on two cores)
CACHE_VERSION = 3  # bump when what a run row holds changes (e.g. how config ids or final values are computed)


@dataclass
class Results:
    """All valid runs: ``runs`` (one row per run) and ``points`` (curve rows keyed by ``run_id``)."""

    runs: pd.DataFrame
    points: pd.DataFrame
    n_read: int = 0  # files parsed in this build (the rest came from the previous build's tables)
    n_reused: int = 0
    read_ids: set = field(default_factory=set)  # run ids parsed in this build (``each`` saw them)
    folders: dict = field(default_factory=dict)  # folder (relative to the root) -> fingerprint
    read_folders: set = field(default_factory=set)  # the folders parsed in this build
    cpu: dict = field(default_factory=dict)  # CPU seconds the readers spent reading and in ``each``
    pending: object = None  # the readers still running ``each`` (``finish()`` waits for them)

    def finish(self) -> list[str]:
        """Wait for the workers still writing pages (``each``); returns their warnings and adds their CPU time."""
        if self.pending is None:
            return []
        warnings, used = self.pending.finish()
        self.cpu = {k: self.cpu.get(k, 0.0) + used.get(k, 0.0) for k in set(self.cpu) | set(used)}
        self.pending = None
        return warnings


def fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def manifest_folder(root: str, folder: str) -> str:
    """Where the sweep manifests of the runs in ``folder`` (``<task>/<optimizer>``) are written."""
    return os.path.join(root, records.SWEEPS_DIR, folder)


def folder_fingerprint(root: str, folder: str, paths: list[str]) -> str:
    """Where the folder is, and size and mtime of every run file in it and of its sweep manifests: what its rows
    and pages are made of (a copy of the runs elsewhere is read again: its rows and pages name other paths)."""
    h = hashlib.sha256(os.path.abspath(os.path.join(root, folder)).encode())
    for p in sorted(paths):
        h.update(f"{os.path.basename(p)}:{fingerprint(p)}\n".encode())
    mdir = manifest_folder(root, folder)
    if os.path.isdir(mdir):
        for name in sorted(os.listdir(mdir)):
            if name.endswith(".json"):
                h.update(f"m:{name}:{fingerprint(os.path.join(mdir, name))}\n".encode())
    return h.hexdigest()[:20]


def scan(root: str) -> dict[str, list[str]]:
    """Run files under ``root`` grouped by folder (relative to ``root``), in ``records.find_runs`` order."""
    out: dict[str, list[str]] = {}
    for p in records.find_runs(root) if os.path.isdir(root) else []:
        out.setdefault(os.path.relpath(os.path.dirname(p), root), []).append(p)
    return out


# ---------------------------------------------------------------------------------------------
# one file


def _encode(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return records.encode_value(v)


def _intern(v):
    return sys.intern(v) if type(v) is str else v


SCALARS = (str, int, float, bool)
PLAIN = (str, int, bool)  # values that need no encoding (floats may be NaN, which reads as None)
REQUIRED = set(records.REQUIRED_COLUMNS)
CURVE = set(records.CURVE_COLUMNS)


def _fast(path: str):
    """(run dict, curve table) with ``read_record``'s checks, or None to let ``read_record`` decide.

    A run-level column holds one value repeated on every row, so its value is in the file footer's statistics
    (min = max, no nulls; all nulls: None): only the curve columns, and run-level columns without usable
    statistics, are decoded, which reads a file about twice as fast. Anything unusual (nested columns, several
    row groups, a column that is not constant) is read whole, and anything that fails goes to ``read_record``."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as f:
            md = f.metadata
            if md.num_rows == 0 or md.num_row_groups == 0:
                return None
            # the leaf columns' names from the first row group, not md.schema.names: FileMetaData and its
            # ParquetSchema form a reference cycle that keeps the footer alive until a collection, and the
            # readers pause the collector (1 GiB per 5,000 files); schema_arrow would decode the whole schema
            rg = md.row_group(0)
            chunks = [rg.column(i) for i in range(md.num_columns)]
            names = [c.path_in_schema for c in chunks]
            if not REQUIRED <= set(names):
                return None
            values, decode = {}, []
            # a nested column's leaves are dotted paths: such files are read whole
            simple = md.num_row_groups == 1 and "__index_level_0__" not in names and not any("." in n for n in names)
            if simple:
                for name, chunk in zip(names, chunks):
                    if name in CURVE:
                        continue
                    st = chunk.statistics
                    if st is not None and st.null_count == md.num_rows:
                        values[name] = None
                    elif (
                        st is not None
                        and st.has_min_max
                        and st.null_count == 0
                        and st.min == st.max
                        and isinstance(st.min, SCALARS)
                    ):
                        values[name] = st.min
                    else:
                        decode.append(name)
            wanted = [c for c in names if c in CURVE] + decode if simple else None
            table = f.read(columns=wanted, use_threads=False, use_pandas_metadata=False)
        if not simple:
            names = table.column_names
            decode = [c for c in names if c not in CURVE]
        if decode:
            first = table.select(decode).slice(0, 1).to_pylist()[0]
            values.update(first)
        versions = (
            {values["schema_version"]}
            if "schema_version" not in decode
            else set(table.column("schema_version").unique().to_pylist())
        )
        if len(versions) != 1 or not versions <= set(records.READABLE_SCHEMAS):
            return None
        # interned: every run repeats the same column names and mostly the same values (task, optimizer, host,
        # config JSON), and a reader holds thousands of these rows until its run pages are written
        run = {
            _intern(k): _intern(v if type(v) in PLAIN else _encode(v))
            for k in names
            if k not in CURVE
            for v in (values[k],)
        }
        cols = {}
        for c in POINT_COLUMNS:
            if c not in names:
                cols[c] = pa.nulls(table.num_rows, POINT_TYPES[c])
            else:
                col = table.column(c)
                cols[c] = col if col.type == POINT_TYPES[c] else col.cast(POINT_TYPES[c])
        return run, pa.table(cols)
    except Exception:  # noqa: BLE001 - anything odd goes to read_record, which names the problem
        return None


def read_one(path: str, fp: str | None = None):
    """(run dict, points table) of one file, or a warning string (``records.read_record``'s own reason);
    ``fp``: the file's ``fingerprint`` when the caller has it."""
    got = _fast(path)
    if got is None:
        try:
            rec = records.read_record(path)
        except records.ResultsError as e:
            return f"skipping {e}"
        table = rec.curve_table
        got = dict(rec.run), pa.table({c: table.column(c).cast(POINT_TYPES[c]) for c in POINT_COLUMNS})
    run, curve = got
    run["path"] = path
    run["fingerprint"] = fp or fingerprint(path)
    run["n_rows"] = curve.num_rows
    run.update(config_identity(run))  # from the file's own values and types, so a cached run keeps its ids
    run.update(final_values(curve, str(run.get("metric_name") or "loss")))
    return run, curve


def final_values(curve: pa.Table, metric_name: str) -> dict:
    """The last finite value (highest step; the later row on a tie) of the task metric and the loss on
    train, val and test."""
    best: dict = {}  # (split, metric) -> (step, value): tens of points a run, one plain pass beats array masks
    cols = (curve.column(c).to_pylist() for c in ("split", "metric", "step", "value"))
    for key in zip(*cols):
        st, v = key[2], key[3]
        if st is None or v is None or not math.isfinite(v):
            continue
        k = key[:2]
        if k not in best or st >= best[k][0]:
            best[k] = (st, v)
    out = {}
    for name, sp, m in FINALS:
        got = best.get((sp, m or metric_name))
        out[name] = float(got[1]) if got else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# folders (in worker processes when there are many)


def read_folders(root: str, folders: list[tuple[str, list[str], str]], each=None):
    """Read the files of each (folder, paths, fingerprint); ``each(folder, runs, curves)`` after each folder.

    Returns (runs, points table, warnings, CPU seconds spent reading and in ``each``). The cyclic garbage
    collector is paused meanwhile: the rows read so far are many small objects it would walk again and again
    (a fifth of the time of writing run pages), and nothing read here forms a cycle."""
    import gc
    import time

    paused = gc.isenabled()
    gc.disable()
    try:
        return _read_folders(root, folders, each, time)
    finally:
        if paused:
            gc.enable()


def _read_folders(root, folders, each, time):
    runs, tables, warnings = [], [], []
    cpu = {"read": 0.0, "each": 0.0}
    for folder, paths, folder_fp in folders:
        t0 = time.process_time()
        mine, parts = [], []
        for p in paths:
            out = read_one(p)
            if isinstance(out, str):
                warnings.append(out)
                continue
            run, curve = out
            run["folder"], run["folder_fp"] = folder, folder_fp
            mine.append(run)
            rid = pa.array([str(run["run_id"])] * curve.num_rows, pa.large_string())
            parts.append(curve.add_column(0, "run_id", rid))
        # one compact table per folder, the runs' curves are views of it: thousands of small per-run tables
        # cost several times their data in allocations, and a reader keeps its curves until its pages are written
        curves = {}
        if parts:
            table = pa.concat_tables(parts).combine_chunks()
            tables.append(table)
            offset = 0
            for run, part in zip(mine, parts):
                curves[str(run["run_id"])] = table.slice(offset, part.num_rows).drop_columns(["run_id"])
                offset += part.num_rows
            del parts
        runs += mine
        t1 = time.process_time()
        cpu["read"] += t1 - t0
        if each is not None and mine:
            try:
                each(folder, mine, curves)
            except Exception as e:  # noqa: BLE001 - a hook failure is reported, never fatal to the load
                warnings.append(f"{os.path.join(root, folder)}: {type(e).__name__} while processing it: {e}")
        cpu["each"] += time.process_time() - t1
    points = _encoded(pa.concat_tables(tables).combine_chunks()) if tables else None
    return runs, points, warnings, cpu


def _encoded(table):
    """Run ids, splits and metrics dictionary-encoded: a fifth of the bytes to send between processes."""
    import pyarrow.compute as pc

    for c in ("run_id", "split", "metric"):
        i = table.schema.get_field_index(c)
        if not pa.types.is_dictionary(table.schema.field(c).type):
            table = table.set_column(i, c, pc.dictionary_encode(table.column(c)))
    return table


def worker_context():
    """Workers fork from a clean server process that imported the reading and page modules once (forkserver):
    they inherit no one's threads (torch's, a waiting thread's) and do not each pay the imports again."""
    import multiprocessing as mp

    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(["rootbench.leaderboard.load", "rootbench.leaderboard.pages"])
    return ctx


def warm_up(n_files: int, jobs: int | None = None) -> None:
    """Start the worker server now (it imports the reading and page modules once) when ``n_files`` will be
    read in parallel, so that its imports overlap the caller's own start-up work."""
    if n_files < PARALLEL_MIN_FILES or (jobs or os.cpu_count() or 1) < 2:
        return
    ctx = worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _reader(conn, root: str, folders: list, each) -> None:
    """A worker: read the folders, send their rows and points, then run ``each`` on them and say so."""
    import gc

    gc.disable()  # a short-lived process of many small objects (see ``read_folders``)
    try:
        kept = []
        runs, points, warnings, cpu = read_folders(
            root, folders, None if each is None else (lambda f, r, c: kept.append((f, r, c)))
        )
        conn.send((pd.DataFrame(runs) if runs else None, points, warnings, cpu))
        del points
        pa.default_memory_pool().release_unused()  # the per-file buffers freed while reading (~10 KB a run)
        import time

        t0, later = time.process_time(), []
        for folder, mine, curves in kept:
            try:
                each(folder, mine, curves)
            except Exception as e:  # noqa: BLE001 - a hook failure is reported, never fatal to the load
                later.append(f"{os.path.join(root, folder)}: {type(e).__name__} while processing it: {e}")
        conn.send((later, {"each": time.process_time() - t0}))
    finally:
        conn.close()


class Readers:
    """Worker processes that each read a share of the folders, hand their rows and points over as soon as they
    are read, and then write the folders' run pages (``each``) while the caller aggregates: the pages are the
    other half of the work, and the caller's own work no longer waits behind them."""

    def __init__(self, root: str, todo: list, jobs: int, each):
        ctx = worker_context()
        self.procs, self.conns = [], []
        for chunk in _chunks(todo, min(len(todo), jobs)):
            here, there = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_reader, args=(there, root, chunk, each), daemon=True)
            proc.start()
            there.close()
            self.procs.append(proc)
            self.conns.append(here)

    def data(self):
        frames, tables, warnings, cpu = [], [], [], {}
        for conn in self.conns:
            frame, points, warns, used = conn.recv()  # EOFError when a worker died
            if frame is not None:
                frames.append(frame)
            if points is not None:
                tables.append(points)
            warnings += warns
            cpu = {k: cpu.get(k, 0.0) + v for k, v in used.items()}
        return frames, tables, warnings, cpu

    def finish(self) -> tuple[list[str], dict]:
        warnings, cpu = [], {}
        for conn, proc in zip(self.conns, self.procs):
            try:
                later, used = conn.recv()
            except EOFError:
                later, used = [f"a page-writing worker (pid {proc.pid}) ended early; some run pages may be missing"], {}
            warnings += later
            cpu = {k: cpu.get(k, 0.0) + v for k, v in used.items()}
            proc.join()
        return warnings, cpu

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _chunks(folders: list[tuple[str, list[str], str]], n: int) -> list[list]:
    """Folders in ``n`` groups of about equal file counts (largest first into the lightest group)."""
    groups, load = [[] for _ in range(n)], [0] * n
    for item in sorted(folders, key=lambda f: -len(f[1])):
        i = load.index(min(load))
        groups[i].append(item)
        load[i] += len(item[1])
    return [g for g in groups if g]


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": pd.Series(dtype="category"),
            **{c: pd.Series(dtype=POINT_TYPES[c].to_pandas_dtype()) for c in POINT_COLUMNS},
        }
    )


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
    if not {"path", "folder", "folder_fp", "run_id"} <= set(runs.columns) or "run_id" not in points.columns:
        return None, None
    return runs, points


def _to_pandas(tables: list) -> pd.DataFrame:
    """Point tables as one DataFrame; run ids, splits and metrics as categoricals (few values, many rows)."""
    return pa.concat_tables([_encoded(t) for t in tables]).unify_dictionaries().combine_chunks().to_pandas()


def load(
    root: str,
    warn=None,
    previous: str | None = None,
    jobs: int | None = None,
    each=None,
    scanned: tuple[dict, dict] | None = None,
) -> Results:
    """All valid runs under ``root``; bad files are skipped with one ``warn`` line each.

    ``previous``: a folder holding ``runs.parquet`` and ``points.parquet`` of an earlier build; the rows of
    folders whose fingerprint (``folder_fingerprint``) is unchanged are taken from there instead of being
    parsed again. ``each(folder, runs, curves)``: called for every folder parsed in this call, in the worker
    that read it; it must be picklable (a module-level function or a partial of one). The site renders run
    pages this way, spreading them over the workers that read the files. ``scanned``: ``scan(root)`` and the
    folders' fingerprints, when the caller computed them already.
    """
    warn = warn or (lambda msg: None)
    if scanned is None:
        by_folder = scan(root)
        prints = {f: folder_fingerprint(root, f, ps) for f, ps in by_folder.items()}
    else:  # (``scan(root)``, its folder fingerprints), when the caller has them
        by_folder, prints = scanned
    old_runs, old_points = _cache(previous)
    reuse = set()
    if old_runs is not None:
        known = dict(zip(old_runs["folder"], old_runs["folder_fp"]))
        reuse = {f for f, fp in prints.items() if known.get(f) == fp}
        old_runs = old_runs[old_runs["folder"].isin(reuse)]
    todo = [(f, by_folder[f], prints[f]) for f in by_folder if f not in reuse]
    n_files = sum(len(t[1]) for t in todo)
    jobs = jobs or min(os.cpu_count() or 1, 8)
    new_frames, new_tables, warnings, cpu, pending = [], [], [], {}, None
    if n_files >= PARALLEL_MIN_FILES and jobs > 1 and len(todo) > 1:
        try:
            pending = Readers(root, todo, jobs, each)
            new_frames, new_tables, warnings, cpu = pending.data()
        except (OSError, EOFError, RuntimeError):  # no worker processes here (e.g. a __main__ read from stdin)
            if pending is not None:
                pending.stop()
            new_frames, new_tables, warnings, cpu, pending = [], [], [], {}, None
    if pending is None:
        runs, points, warnings, cpu = read_folders(root, todo, each)
        new_frames = [pd.DataFrame(runs)] if runs else []
        new_tables = [points] if points is not None else []
    for w in sorted(warnings):
        warn(w)

    frames = [f for f in [old_runs, *new_frames] if f is not None and len(f)]
    runs_df = (
        pd.concat(frames, ignore_index=True, sort=False)
        if frames
        else pd.DataFrame(
            columns=[c for c in records.REQUIRED_COLUMNS if c not in POINT_COLUMNS]
            + ["path", "fingerprint", "folder", "folder_fp"]
        )
    )
    point_frames = []
    if old_points is not None and len(old_runs):
        keep = old_points[old_points["run_id"].isin(set(old_runs["run_id"]))]
        point_frames.append(keep.astype({c: str for c in ("run_id", "split", "metric")}))
    if new_tables:
        point_frames.append(_to_pandas(new_tables))
    if len(point_frames) > 1:
        points_df = pd.concat(
            [f.astype({c: str for c in ("run_id", "split", "metric")}) for f in point_frames], ignore_index=True
        )
    else:
        points_df = point_frames[0] if point_frames else _empty_points()
    for c in ("run_id", "split", "metric"):
        if points_df[c].dtype != "category":
            points_df[c] = points_df[c].astype("category")

    # two files with one run_id (a copy under another folder): keep the first, say so
    if len(runs_df):
        runs_df = runs_df.sort_values("path", kind="stable").reset_index(drop=True)
    dup = runs_df["run_id"].duplicated(keep="first") if len(runs_df) else pd.Series([], dtype=bool)
    if dup.any():
        for p in runs_df.loc[dup, "path"]:
            warn(f"skipping {p}: its run_id is already loaded from another file")
        runs_df = runs_df[~dup].reset_index(drop=True)
        # the duplicate file's points share the run_id: keep the first n_rows of each run
        points_df = _dedupe_points(points_df, runs_df)
    runs_df = runs_df.sort_values(["tier", "task", "optimizer", "run_id"], kind="stable").reset_index(drop=True)
    protocol = tuning_protocols(root, warn)
    runs_df["tuning_protocol"] = [protocol.get(str(r), 0) for r in runs_df["run_id"]] if len(runs_df) else []
    results = Results(
        runs_df,
        points_df,
        n_read=n_files,
        n_reused=len(old_runs) if old_runs is not None else 0,
        read_ids={str(r) for f in new_frames for r in f["run_id"]},
        folders=prints,
        read_folders={t[0] for t in todo},
        cpu=cpu,
        pending=pending,
    )
    if each is None:  # nothing left to wait for: reap the workers now
        for w in results.finish():
            warn(w)
    return results


def listed_run_ids(manifest: dict) -> list[str]:
    """Every run a sweep manifest lists: its trials, its seeds and their reruns at other precisions (the sweep's
    whole budget). A manifest without ``trials`` or ``seeds`` raises ``KeyError``."""
    ids = [t["run_id"] for t in manifest["trials"]] + [s["run_id"] for s in manifest["seeds"]]
    for more in (manifest.get("other_precisions") or {}).values():
        ids += list(more or [])
    return [str(i) for i in ids if i]


def tuning_protocols(root: str, warn=None) -> dict[str, int]:
    """``{run_id: version}``: the newest sweep-manifest version (``harness.sweep.MANIFEST_VERSION``: 1 random
    boxes, 2 horizon-aware Halton with the published point) whose trials, seeds or other precisions list the run.
    Runs no manifest lists (single ``rootbench bench`` runs) are 0. Unreadable manifests are one warning each."""
    out: dict[str, int] = {}
    for path in records.manifest_paths(root):
        try:
            m = records.read_json(path)
            version = int(m.get("manifest_version") or 1)
            ids = listed_run_ids(m)
        except (records.ResultsError, AttributeError, KeyError, TypeError, ValueError) as e:
            if warn:
                warn(f"skipping sweep manifest {path}: {e}")
            continue
        for rid in ids:
            out[rid] = max(out.get(rid, 0), version)
    return out


def _dedupe_points(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Keep one copy of each run's points (the first ``n_rows`` rows of that run_id)."""
    n_rows = runs.set_index("run_id")["n_rows"]
    order = points.groupby("run_id", sort=False, observed=True).cumcount()
    limit = points["run_id"].astype(str).map(n_rows)
    return points[order < limit].reset_index(drop=True)
