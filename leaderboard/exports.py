"""The site's downloadable data: per-run parquet copies, combined parquet and CSV tables, and the overview
as Markdown (also ``rootbench site --markdown``)."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from rootbench.leaderboard import load as loader
from rootbench.leaderboard.cache import link_or_copy
from rootbench.leaderboard.fmt import SIG_TEXT, missing, num, relative, seconds, status_text, tier_view
from rootbench.leaderboard.model import groups

RESULT_COLUMNS = ("run_id", "task", "tier", "optimizer", "seed", "precision", "status", "config_id")
FILES = (("results.parquet",
          "every curve row of every run with all run-level columns (tidy, as written by the runner)"),
         ("results.csv", "every curve row with the identifying columns (join runs.csv on run_id)"),
         ("runs.csv", "one row per run: configuration, status, measurements, provenance, final values"),
         ("runs.parquet", "one row per run (as loaded; also this site's build cache)"),
         ("points.parquet", "curve rows keyed by run_id (as loaded; also this site's build cache)"),
         ("overview.md", "the overview tables as Markdown (rootbench site --markdown)"))


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
            df[c] = df[c].map(lambda v: json.dumps(v.tolist() if isinstance(v, np.ndarray) else v, default=str)
                              if isinstance(v, (list, tuple, dict, np.ndarray)) else v)
    return df


def write_data(model: dict, results: loader.Results, out: str, runs_root: str) -> list[tuple[str, int, str]]:
    """Per-run parquet copies, runs/points tables (also the next build's cache), the combined
    ``results.parquet``, the CSV files and ``overview.md``. Returns (name, bytes, contents) per file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    runs = results.runs
    for p in runs["path"]:
        link_or_copy(p, os.path.join(data, "runs", relative(p, runs_root)))
    runs_t = pa.Table.from_pandas(_arrow_safe(runs), preserve_index=False)
    pq.write_table(runs_t, os.path.join(data, "runs.parquet"))
    points = results.points
    points_t = pa.Table.from_pandas(points, preserve_index=False)
    pq.write_table(points_t, os.path.join(data, "points.parquet"))
    pq.write_table(_combined(runs, runs_t, points, points_t), os.path.join(data, "results.parquet"))
    # CSV: normalised (a denormalised CSV repeats the config on every row and grows ~10x)
    summary = model["summary"]
    ids = summary[["run_id", "task", "tier", "optimizer", "seed", "precision", "status", "config_id"]].astype(
        {"run_id": str}) if len(summary) else pd.DataFrame(columns=list(RESULT_COLUMNS))
    long = points.merge(ids, on="run_id", how="inner")
    long = long[list(RESULT_COLUMNS) + list(loader.POINT_COLUMNS)]
    pacsv.write_csv(pa.Table.from_pandas(_csv_safe(long), preserve_index=False), os.path.join(data, "results.csv"))
    run_cols = [c for c in summary.columns if c not in ("fingerprint", "n_rows")]
    pacsv.write_csv(pa.Table.from_pandas(_csv_safe(summary[run_cols]), preserve_index=False),
                    os.path.join(data, "runs.csv"))
    write_markdown(os.path.join(data, "overview.md"), markdown(model))
    return [(name, os.path.getsize(os.path.join(data, name)), desc) for name, desc in FILES]


def _combined(runs: pd.DataFrame, runs_t, points: pd.DataFrame, points_t):
    """All results denormalised the way the run files are (run-level columns on every curve row)."""
    import pyarrow as pa

    run_index = pd.Series(np.arange(len(runs)), index=runs["run_id"].astype(str))
    take = run_index.reindex(points["run_id"].astype(str)).to_numpy()
    ok = ~np.isnan(take.astype(float)) if len(take) else np.zeros(0, bool)
    keep_runs = [c for c in runs_t.column_names if c not in ("fingerprint", "n_rows", "run_id")
                 and c not in loader.POINT_COLUMNS]
    positions = take[ok].astype(np.int32)
    indices = pa.array(positions)
    combined = points_t.filter(pa.array(ok)) if len(take) else points_t
    for c in keep_runs:
        column = runs_t.column(c).combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # a dictionary column repeats each run's text by reference, not by copy (config_json is long);
            # parquet wants nulls in the indices, not in the dictionary
            valid = np.asarray(column.is_valid())
            codes = pa.array(positions, mask=~valid[positions]) if column.null_count else indices
            combined = combined.append_column(
                c, pa.DictionaryArray.from_arrays(codes, column.fill_null("") if column.null_count else column))
        else:
            combined = combined.append_column(c, column.take(indices))
    return combined


def write_markdown(path: str, md: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(md)


def _md_escape(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def markdown(model: dict) -> str:
    """The overview as GitHub Markdown: one table per (tier, task)."""
    ov = model["overview"]
    lines = ["# rootbench leaderboard", "",
             "Best configuration per optimizer, selected on validation; test metric = mean ± 95% t-interval over "
             "seeds (n). vs best: one-sided Welch t-test at p = 0.05 (≈ best: not significantly worse; n/a: fewer "
             "than two seeds). Tiers are never mixed.", ""]
    if ov.empty:
        lines.append("_No runs yet._")
        return "\n".join(lines) + "\n"
    for tier, task_names in groups(model):
        lines += [f"## {tier_view(tier)['title']}", ""]
        for task in task_names:
            rows = ov[(ov["tier"] == tier) & (ov["task"] == task)].to_dict("records")
            if not rows:
                continue
            metric = rows[0]["metric_name"]
            better = "higher" if rows[0]["higher_is_better"] else "lower"
            lines += [f"### {_md_escape(task)} ({_md_escape(metric)}, {better} is better)", "",
                      "| # | optimizer | configuration | test metric | vs best | steps→target | time→target | "
                      "step time ×AdamW | state B/param | configs | runs |",
                      "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
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
    return "| " + " | ".join(_md_escape(x) for x in (
        num(r.get("rank"), 3), r["optimizer"],
        (r.get("config_label") or "defaults") + f" [{r.get('precision')}]" if sel else "no finished run",
        test, sig, num(r.get("stt"), 6) if sel else "–", seconds(r.get("ttt")) if sel else "–",
        num(r.get("step_ratio"), 3), num(r.get("state_bytes_per_param"), 3),
        int(r.get("n_configs") or 0), status_text(r.get("status_counts") or {}))) + " |"
