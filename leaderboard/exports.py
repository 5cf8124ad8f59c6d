"""The site's downloadable data: the runs and points tables (also the build cache), the combined parquet, gzipped
CSV, every aggregated table as CSV and JSON, and the overview as Markdown (also ``rootbench site --markdown``).
The raw run files are linked from the run pages, never copied into the site."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from rootbench.leaderboard import load as loader
from rootbench.leaderboard.fmt import SIG_TEXT, missing, num, seconds, status_text, tier_view
from rootbench.leaderboard.model import groups

RESULT_COLUMNS = ("run_id", "task", "tier", "optimizer", "seed", "precision", "status", "config_id")
RAW = (
    (
        "runs.parquet",
        "one row per run: every run-level column as written by the runner, final values, the "
        "configuration ids (also this site's build cache)",
    ),
    (
        "points.parquet",
        "every curve row keyed by run_id (join runs.parquet on run_id for the tidy table the "
        "runner wrote; also this site's build cache)",
    ),
    ("runs.csv.gz", "one row per run: configuration, status, measurements, provenance, final values"),
    ("results.csv.gz", "every curve row with the identifying columns (join runs.csv.gz on run_id)"),
)
AGGREGATED = (
    ("overview.csv", "per tier, task and optimizer: the selected configuration and its statistics"),
    ("comparisons.csv", "every root vs root-free comparison: difference, CI, p, direction, verdict, q"),
    ("verdicts.csv", "every claim verdict with its test, q-value and reason"),
    ("profiles.csv", "per tier and compared optimizer: profile scores, speedups and mean rank over the common tasks"),
    ("ranks.csv", "per tier: each compared optimizer's rank on every common task"),
    ("head_to_head.csv", "per tier: every two optimizers over the tasks both ran"),
    ("leaderboard.json", "all the aggregated tables above in one JSON file"),
    ("overview.md", "the overview tables as Markdown (rootbench site --markdown)"),
)
FILES = RAW + AGGREGATED
OVERVIEW_COLUMNS = (
    "tier",
    "task",
    "optimizer",
    "rank",
    "significance",
    "p_vs_best",
    "selected",
    "config_id",
    "precision",
    "hparams_label",
    "metric_name",
    "higher_is_better",
    "test_mean",
    "test_half",
    "test_n",
    "val_mean",
    "gap_mean",
    "stt",
    "ttt",
    "n_reached",
    "step_ratio",
    "peak_mem_bytes",
    "state_bytes_per_param",
    "delta_bf16",
    "delta_bf16-pure",
    "n_configs",
    "n_runs",
    "run_ids",
)


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that mix types (a hyperparameter that is a string in one run and a number in another)
    are stored as text, so that pyarrow can write them."""
    import pyarrow as pa

    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            try:
                pa.array(df[c], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                df[c] = df[c].map(lambda v: None if missing(v) else str(v))
    return df


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``_arrow_safe``, and list-valued cells (a tier setting such as a tuple of milestones) as JSON text:
    CSV has no list type."""
    df = _arrow_safe(df)
    for c in df.columns:
        if df[c].dtype == object and df[c].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).any():
            df[c] = df[c].map(
                lambda v: (
                    json.dumps(v.tolist() if isinstance(v, np.ndarray) else v, default=str)
                    if isinstance(v, (list, tuple, dict, np.ndarray))
                    else v
                )
            )
    return df


def write_data(model: dict, results: loader.Results, out: str) -> list[tuple[str, int, str]]:
    """The runs/points tables (also the next build's cache), the gzipped CSV files, every aggregated table as CSV
    and JSON, and ``overview.md``. Raw run files are linked, not copied (a site of 10,000 runs that copied them
    and a denormalised ``results.parquet`` weighed 0.5 GB).
    Returns (name, bytes, contents) per file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    runs = results.runs
    runs_t = pa.Table.from_pandas(_arrow_safe(runs), preserve_index=False)
    pq.write_table(runs_t, os.path.join(data, "runs.parquet"), compression="zstd")
    points = results.points
    points_t = pa.Table.from_pandas(points, preserve_index=False)
    pq.write_table(points_t, os.path.join(data, "points.parquet"), compression="zstd")
    # CSV: normalised (a denormalised CSV repeats the config on every row and grows ~10x) and gzipped
    summary = model["summary"]
    ids = (
        summary[list(RESULT_COLUMNS)].astype({"run_id": str})
        if len(summary)
        else pd.DataFrame(columns=list(RESULT_COLUMNS))
    )
    _write_csv_gz(_curve_rows(ids, points_t), os.path.join(data, "results.csv.gz"))
    run_cols = [c for c in summary.columns if c not in ("fingerprint", "n_rows", "folder_fp")]
    _write_csv_gz(
        pa.Table.from_pandas(_csv_safe(summary[run_cols]), preserve_index=False), os.path.join(data, "runs.csv.gz")
    )
    aggregated = aggregated_tables(model)
    for name, df in aggregated.items():
        pacsv.write_csv(pa.Table.from_pandas(_csv_safe(df), preserve_index=False), os.path.join(data, f"{name}.csv"))
    with open(os.path.join(data, "leaderboard.json"), "w", encoding="utf-8") as f:
        json.dump({name: json.loads(df.to_json(orient="records")) for name, df in aggregated.items()}, f)
    write_markdown(os.path.join(data, "overview.md"), markdown(model))
    return [(name, os.path.getsize(os.path.join(data, name)), desc) for name, desc in FILES]


def _curve_rows(ids: pd.DataFrame, points_t):
    """Every curve row with the run's identifying columns, built in arrow (a pandas merge of ~10^6 rows with
    string columns held several hundred MB)."""
    import pyarrow as pa

    index = pd.Series(np.arange(len(ids)), index=ids["run_id"].astype(str))
    run_ids = points_t.column("run_id").combine_chunks()
    if pa.types.is_dictionary(run_ids.type):
        pos = index.reindex([str(x) for x in run_ids.dictionary.to_pylist()]).to_numpy()[
            run_ids.indices.to_numpy(zero_copy_only=False)
        ]
    else:
        pos = index.reindex(run_ids.to_pylist()).to_numpy()
    keep = ~np.isnan(pos.astype(float))
    take = pa.array(pos[keep].astype(np.int64))
    id_t = pa.Table.from_pandas(ids.reset_index(drop=True), preserve_index=False)
    # the run's columns stay dictionary-encoded (an index per row) until written, a batch at a time
    cols = {c: id_t.column(c).combine_chunks().dictionary_encode().take(take) for c in RESULT_COLUMNS}
    pts = points_t.filter(pa.array(keep))
    cols.update({c: pts.column(c) for c in loader.POINT_COLUMNS})
    return pa.table(cols)


def _plain(table):
    """Dictionary (categorical) columns as their values: CSV has no dictionaries."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _write_csv_gz(table, path: str, rows_per_batch: int = 65536) -> None:
    """CSV through gzip level 1 (a quarter of the time of the default level, 15 % larger), written a batch at a
    time with dictionary columns decoded per batch: a curve table of 10,000 runs stays small until written."""
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema = _plain(table.slice(0, 0)).schema
    with gzip.open(path, "wb", compresslevel=1) as f, pacsv.CSVWriter(f, schema) as writer:
        for batch in table.to_batches(max_chunksize=rows_per_batch):
            writer.write_table(_plain(pa.Table.from_batches([batch], table.schema)))


def aggregated_tables(model: dict) -> dict[str, pd.DataFrame]:
    """Every aggregated table of the site as a plain DataFrame (the CSV and JSON downloads)."""
    ov = model["overview"]
    overview = ov[[c for c in OVERVIEW_COLUMNS if c in ov.columns]].copy() if len(ov) else pd.DataFrame()
    profiles, ranks, h2h = [], [], []
    for tier, a in model["across"].items():
        mean_rank = dict(zip(a["ranks"]["optimizer"], a["ranks"]["mean_rank"]))
        for r in a["speedup"].to_dict("records"):
            profiles.append(
                {"tier": tier, **r, "mean_rank": mean_rank.get(r["optimizer"]), "common_tasks": " ".join(a["tasks"])}
            )
        for r in a["ranks"].to_dict("records"):
            ranks += [{"tier": tier, "optimizer": r["optimizer"], "task": t, "rank": r[t]} for t in a["tasks"]]
        h2h += [{"tier": tier, **r, "tasks": " ".join(r["tasks"])} for r in a["head_to_head"].to_dict("records")]
    return {
        "overview": overview,
        "comparisons": model["comparisons"],
        "verdicts": model["verdicts"],
        "profiles": pd.DataFrame(profiles),
        "ranks": pd.DataFrame(ranks),
        "head_to_head": pd.DataFrame(h2h),
    }


def write_markdown(path: str, md: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(md)


def _md_escape(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def markdown(model: dict) -> str:
    """The overview as GitHub Markdown: one table per (tier, task)."""
    ov = model["overview"]
    lines = [
        "# rootbench leaderboard",
        "",
        "Best configuration per optimizer, selected on validation; test metric = mean ± 95% t-interval over "
        "seeds (n). vs best: one-sided Welch t-test at p = 0.05 (≈ best: not significantly worse; n/a: fewer "
        "than two seeds). Tiers are never mixed.",
        "",
    ]
    if ov.empty:
        lines.append("_No runs yet._")
        return "\n".join(lines) + "\n"
    by_task: dict = {}
    for r in ov.to_dict("records"):
        by_task.setdefault((r["tier"], r["task"]), []).append(r)
    for tier, task_names in groups(model):
        lines += [f"## {tier_view(tier)['title']}", ""]
        for task in task_names:
            rows = by_task.get((tier, task), [])
            if not rows:
                continue
            metric = rows[0]["metric_name"]
            better = "higher" if rows[0]["higher_is_better"] else "lower"
            lines += [
                f"### {_md_escape(task)} ({_md_escape(metric)}, {better} is better)",
                "",
                "| # | optimizer | configuration | test metric | vs best | steps→target | time→target | "
                "step time ×AdamW | state B/param | configs | runs |",
                "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|",
            ]
            lines += [_md_row(r) for r in rows]
            lines.append("")
    return "\n".join(lines)


def _md_row(r: dict) -> str:
    sel = bool(r.get("selected"))
    ci = "" if missing(r.get("test_half")) else f" ± {num(r['test_half'], 2)}"
    test = f"{num(r.get('test_mean'))}{ci} (n={int(r.get('test_n') or 0)})" if sel else "–"
    sig = SIG_TEXT.get(r.get("significance") or "n/a", ("n/a", ""))[0]
    if r.get("significance") in ("tied", "worse") and not missing(r.get("p_vs_best")):
        sig += f" (p={num(r['p_vs_best'], 2)})"
    return (
        "| "
        + " | ".join(
            _md_escape(x)
            for x in (
                num(r.get("rank"), 3),
                r["optimizer"],
                (r.get("config_label") or "defaults") + f" [{r.get('precision')}]" if sel else "no finished run",
                test,
                sig,
                num(r.get("stt"), 6) if sel else "–",
                seconds(r.get("ttt")) if sel else "–",
                num(r.get("step_ratio"), 3),
                num(r.get("state_bytes_per_param"), 3),
                int(r.get("n_configs") or 0),
                status_text(r.get("status_counts") or {}),
            )
        )
        + " |"
    )
