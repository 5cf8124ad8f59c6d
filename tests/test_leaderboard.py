"""The leaderboard: statistics helpers, aggregation on runs made by the real runner, the built site,
robustness to bad files, escaping, incremental rebuilds and (where Chromium exists) a browser check.

All result numbers come from ``harness.runner.run`` (smoke tier); expected values are recomputed here
from the run files through an independent path (``records.read_run`` + scipy), never written by hand.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rootbench.harness import records, stats
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import build as site_build
from rootbench.leaderboard import load as site_load
from rootbench.leaderboard import model as site_model
from rootbench.leaderboard import tables as site_tables

SCRIPT = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------
# fixtures: real smoke runs, one site


@pytest.fixture(scope="session")
def lb_runs(tmp_path_factory):
    """~24 smoke runs: 2-3 optimizers x 2 configs x 2 seeds on two tasks, precision twins, a diverged
    run and an error run whose hyperparameter is an HTML script.

    The runner now rejects such a value before running, so the error run is one real run stored again with
    the hostile value and an error status: what a run recorded by an older runner, or edited, would hold."""
    from rootbench.harness import run
    from rootbench.harness.config import RunConfig
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    root = str(tmp_path_factory.mktemp("lb") / "runs")
    quad_opts = {"adamw": (1e-3, 1e-2), "sgd": (0.1, 0.03)}
    pair = get_optimizer_spec("adamw").pair
    if pair in list_optimizers():
        quad_opts[pair] = (1e-3, 1e-2)
    plan = [("quadratic", o, {"lr": lr}, s, "fp32") for o, lrs in quad_opts.items() for lr in lrs for s in (0, 1)]
    plan += [
        ("mnist1d-mlp", o, {"lr": lr}, s, "fp32")
        for o, lrs in (("adamw", (1e-3, 1e-2)), ("sgd", (0.1, 0.03)))
        for lr in lrs
        for s in (0, 1)
    ]
    plan += [
        ("mnist1d-mlp", "adamw", {"lr": 1e-2}, 0, "bf16-pure"),
        ("mnist1d-mlp", "adamw", {"lr": 1e-2}, 0, "bf16"),
        ("quadratic", "sgd", {"lr": 1e3}, 0, "fp32"),
    ]
    import torch

    threads = torch.get_num_threads()
    try:  # one thread: on a shared 2-core machine, two spinning intra-op threads make tiny runs 50x slower
        for task, opt, hp, seed, precision in plan:
            rows = run(
                task, opt, RunConfig(tier="smoke", seed=seed, precision=precision, hparams=hp, ref_steps=2, threads=1)
            )
            records.write_run(rows, root)
            if (task, opt, hp["lr"], seed) == ("quadratic", "adamw", 1e-3, 0):
                message = f"ValueError: impl must be one of ('auto', 'fused'), got {SCRIPT!r}"
                records.write_run(
                    [
                        {**r, "run_id": "hostile00000", "hp_impl": SCRIPT, "status": "error", "status_message": message}
                        for r in rows
                    ],
                    root,
                )
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="session")
def lb_site(lb_runs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lb") / "site")
    warnings = []
    info = site_build.build(lb_runs, out, warn=warnings.append)
    assert warnings == []
    return out, info


@pytest.fixture(scope="session")
def model(lb_runs):
    return site_model.compute(site_load.load(lb_runs))


def run_page(out: str, rid: str) -> tuple[str, str]:
    """(the run's section, its configuration's whole page): ``runs/<rid>.html`` forwards to the section."""
    with open(os.path.join(out, "runs", f"{rid}.html"), encoding="utf-8") as f:
        href = re.search(r'url=\.\./(runs/[^"#]+)#([^"]+)"', f.read())
    with open(os.path.join(out, href.group(1)), encoding="utf-8") as f:
        page = f.read()
    start = page.index(f'<section class="run" id="{href.group(2)}">')
    return page[start : page.index("</section>", start)], page


def _read_all(root):
    """The run files through the independent path: records.read_run, one DataFrame per run."""
    return {df["run_id"].iloc[0]: df for df in (records.read_run(p) for p in records.find_runs(root))}


def _final(df, split):
    metric = df["metric_name"].iloc[0]
    sel = df[(df["split"] == split) & (df["metric"] == metric)].sort_values("step")
    sel = sel[np.isfinite(sel["value"])]
    return float(sel["value"].iloc[-1]) if len(sel) else float("nan")


# ---------------------------------------------------------------------------------------------
# harness.stats against scipy


def test_mean_ci_matches_scipy_t_interval():
    x = [0.81, 0.84, 0.79, 0.86]
    ci = stats.mean_ci(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert ci.n == 4 and ci.low == pytest.approx(lo) and ci.high == pytest.approx(hi)
    one = stats.mean_ci([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.half)
    assert stats.mean_ci([]).n == 0


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy(alternative):
    a, b = [0.91, 0.93, 0.90, 0.94], [0.88, 0.90, 0.87]
    w = stats.welch(a, b, alternative)
    ref = sps.ttest_ind(a, b, equal_var=False, alternative=alternative)
    assert w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    assert math.isnan(stats.welch([1.0], b).p)  # n < 2: no test
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0  # zero variance, equal means
    assert stats.better_p([2.0, 2.0], [1.0, 1.0], higher_is_better=True) == 0.0


def test_profiles_ranks_and_medians():
    times = {"a": {"x": 10.0, "y": 20.0, "z": math.inf}, "b": {"x": 30.0, "y": 15.0}, "c": {"x": math.inf}}
    prof = stats.performance_profiles(times, taus=[1.0, 2.0, 4.0])
    assert prof["tasks"] == ["a", "b"]  # nobody reached c
    assert prof["ratios"]["b"]["x"] == pytest.approx(2.0) and prof["ratios"]["a"]["z"] == math.inf
    assert list(prof["rho"]["x"]) == [0.5, 1.0, 1.0] and list(prof["rho"]["z"]) == [0.0, 0.0, 0.0]
    assert prof["score"]["y"] == pytest.approx(np.trapezoid([0.5, 1.0, 1.0], [1, 2, 4]) / 3)
    assert stats.average_ranks({"p": 0.9, "q": 0.8, "r": 0.9, "s": float("nan")}, True) == {"p": 1.5, "r": 1.5, "q": 3}
    assert stats.median_with_inf([3.0, None, 1.0]) == 3.0 and stats.median_with_inf([1.0, None]) == math.inf
    assert stats.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# aggregation on real runs


def test_summary_final_values_match_run_files(lb_runs, model):
    files = _read_all(lb_runs)
    s = model["summary"].set_index("run_id")
    assert set(s.index) == set(files)
    for rid, df in files.items():
        for split in ("train", "val", "test"):
            expected = _final(df, split)
            got = s.loc[rid, f"final_{split}"]
            assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected), (rid, split)


def test_configs_group_seeds_not_precisions(model):
    s, c = model["summary"], model["configs"]
    assert c.groupby(["tier", "task", "optimizer", "config_id"]).size().max() == 1
    for r in c.to_dict("records"):
        runs = s[s["config_id"] == r["config_id"]]
        assert runs["seed"].nunique() == len(runs) == r["n_runs"]  # only seeds differ inside a config
        assert runs[["precision", "hparams_label"]].drop_duplicates().shape[0] == 1
    twins = c[(c["task"] == "mnist1d-mlp") & (c["optimizer"] == "adamw") & (c["hp_lr"] == 1e-2)]
    assert set(twins["precision"]) == {"fp32", "bf16", "bf16-pure"} and twins["setting_id"].nunique() == 1


def test_selection_uses_validation_never_test(model):
    c = model["configs"]
    best = agg.select_best(c)
    for r in best.to_dict("records"):
        mine = c[
            (c["tier"] == r["tier"]) & (c["task"] == r["task"]) & (c["optimizer"] == r["optimizer"]) & (c["n_ok"] > 0)
        ]
        if (mine["precision"] == "fp32").any():
            mine = mine[mine["precision"] == "fp32"]
        mine = mine[mine["n_ok"] >= min(3, mine["n_ok"].max())]
        assert r["config_id"] in set(mine["config_id"])
        clean = mine[mine["n_diverged"] + mine["n_failed"] == 0]
        if len(clean):
            vals = clean["val_mean"]
            assert r["val_mean"] == (vals.max() if r["higher_is_better"] else vals.min())
            assert r["n_diverged"] + r["n_failed"] == 0
    # scrambling every test number changes no selection
    rng = np.random.default_rng(0)
    scrambled = c.copy()
    scrambled["test_mean"] = rng.permutation(scrambled["test_mean"].to_numpy())
    assert list(agg.select_best(scrambled)["config_id"]) == list(best["config_id"])


def test_selection_prefers_replicated_fp32_configurations():
    """A sweep's 3-seed rerun beats a luckier one-seed trial; bf16-pure twins are compared, not selected."""

    def conf(cid, val, n_ok, precision="fp32"):
        return {
            "tier": "quick",
            "task": "t",
            "optimizer": "o",
            "config_id": cid,
            "precision": precision,
            "val_mean": val,
            "n_ok": n_ok,
            "n_diverged": 0,
            "n_failed": 0,
            "higher_is_better": True,
        }

    c = pd.DataFrame([conf("rerun", 0.90, 3), conf("lucky", 0.95, 1), conf("pure", 0.99, 3, "bf16-pure")])
    assert list(agg.select_best(c)["config_id"]) == ["rerun"]
    only_trials = pd.DataFrame([conf("a", 0.90, 1), conf("b", 0.95, 1)])  # nothing replicated: best val
    assert list(agg.select_best(only_trials)["config_id"]) == ["b"]
    only_pure = pd.DataFrame([conf("p", 0.5, 2, "bf16-pure")])  # no fp32 runs at all: selected anyway
    assert list(agg.select_best(only_pure)["config_id"]) == ["p"]


def test_overview_cells_and_significance(lb_runs, model):
    files = _read_all(lb_runs)
    ov = model["overview"]
    for (tier, task), g in ov.groupby(["tier", "task"]):  # noqa: B007 - the query below reads them
        g = g.reset_index(drop=True)
        higher = bool(g["higher_is_better"].iloc[0])
        shown = g[g["test_mean"].notna()]
        means = shown["test_mean"].to_numpy()
        assert list(means) == sorted(means, reverse=higher)  # ranked by test mean
        best_values = None
        for r in g.to_dict("records"):
            if not r["selected"]:
                continue
            seeds = [files[rid] for rid in r["run_ids"]]
            test = [_final(df, "test") for df in seeds if df["status"].iloc[0] == "ok"]
            assert r["test_n"] == len(test)
            assert r["test_mean"] == pytest.approx(np.mean(test))
            if len(test) > 1:
                lo, hi = sps.t.interval(0.95, len(test) - 1, loc=np.mean(test), scale=sps.sem(test))
                assert r["test_half"] == pytest.approx((hi - lo) / 2)
            assert (
                r["n_configs"]
                == model["summary"]
                .query("tier == @tier and task == @task and optimizer == @r['optimizer']")["setting_id"]
                .nunique()  # a bf16-pure rerun of a setting is not another configuration tried
            )
            if r["significance"] == "best":
                best_values = test
            elif r["significance"] in ("tied", "worse"):
                p = sps.ttest_ind(
                    best_values, test, equal_var=False, alternative="greater" if higher else "less"
                ).pvalue
                assert r["p_vs_best"] == pytest.approx(p)
                assert r["significance"] == ("tied" if p >= 0.05 else "worse")
            else:
                assert r["significance"] == "n/a" and (len(test) < 2 or len(best_values or []) < 2)


def test_precision_robustness_and_divergence(model):
    ov, c = model["overview"], model["configs"]
    row = ov[(ov["task"] == "mnist1d-mlp") & (ov["optimizer"] == "adamw")].iloc[0]
    twins = c[(c["setting_id"] == row["setting_id"]) & (c["optimizer"] == "adamw")].set_index("precision")
    for p in ("bf16", "bf16-pure"):
        if p in twins.index and "fp32" in twins.index:
            assert row[f"delta_{p}"] == pytest.approx(
                twins.loc[p, "test_mean"] - twins.loc["fp32", "test_mean"], nan_ok=True
            )
    sgd = ov[(ov["task"] == "quadratic") & (ov["optimizer"] == "sgd")].iloc[0]
    runs = model["summary"].query("task == 'quadratic' and optimizer == 'sgd'")
    assert (runs["status"] == "diverged").any(), "sgd at lr=1e3 should diverge on the quadratic"
    assert sgd["divergence"]["fp32"] == [int((runs["status"] == "diverged").sum()), len(runs)]
    assert sgd["n_diverged"] == 0  # the selected configuration is not the diverged one
    err = ov[(ov["task"] == "quadratic") & (ov["optimizer"] == "adamw")].iloc[0]
    assert err["status_counts"].get("error") == 1


def test_root_vs_free_pairs(model):
    rvf = model["root_vs_free"]
    shown = set(zip(rvf["root"], rvf["free"]))  # the registry's pairs; a variant's one-sided pair where it ran
    assert {("adamw", "rfadamw"), ("rmsprop", "rfrmsprop"), ("shampoo", "ifshampoo")} <= shown <= set(model["pairs"])
    assert set(rvf["task"]) == {"quadratic", "mnist1d-mlp"}  # the paper's pairs appear on every task
    ov = model["overview"].set_index(["task", "optimizer"])
    for r in rvf.to_dict("records"):
        if (
            (r["task"], r["free"]) in ov.index
            and ov.loc[(r["task"], r["free"]), "selected"]
            and ov.loc[(r["task"], r["root"]), "selected"]
        ):
            a, b = ov.loc[(r["task"], r["root"])], ov.loc[(r["task"], r["free"])]
            assert r["diff"] == pytest.approx(b["test_mean"] - a["test_mean"])
            ref = sps.ttest_ind(b["test_values"], a["test_values"], equal_var=False)
            assert r["p"] == pytest.approx(ref.pvalue, nan_ok=True)


def test_across_tasks_profiles_from_fastest_configs(model):
    across = model["across"]["smoke"]
    c = model["configs"]
    for task, ratios in across["profile"]["ratios"].items():
        fastest = c[c["task"] == task].groupby("optimizer")["ttt"].min()
        best_time = fastest[np.isfinite(fastest)].min()
        for o, r in ratios.items():
            expected = fastest.get(o, math.inf) / best_time
            assert r == pytest.approx(expected) if math.isfinite(expected) else r == math.inf
    ranks = across["ranks"].set_index("optimizer")
    assert across["tasks"] and set(ranks.index) == set(across["optimizers"])  # the compared optimizers only
    for task in across["tasks"]:  # the common tasks: every compared optimizer ran them
        g = model["overview"].query("task == @task and selected and optimizer in @across['optimizers']")
        assert set(g["optimizer"]) == set(across["optimizers"])
        top = g.sort_values("rank").iloc[0]["optimizer"]
        assert ranks.loc[top, task] == 1


def test_hardware_table_from_provenance(model):
    hw = model["hardware"]
    assert hw["n_runs"].sum() == len(model["summary"]) and set(hw["tier"]) == {"smoke"}


# ---------------------------------------------------------------------------------------------
# the site


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])


def test_site_pages_links_and_downloads(lb_runs, lb_site):
    out, info = lb_site
    assert info["n_runs"] == len(records.find_runs(lb_runs)) and info["warnings"] == []
    for page in ("index.html", "pairs.html", "across.html", "methodology.html", "downloads.html"):
        assert os.path.exists(os.path.join(out, page))
    for rid in _read_all(lb_runs):
        assert os.path.exists(os.path.join(out, "runs", f"{rid}.html"))
    broken = []
    for dirpath, _, files in os.walk(out):
        for f in files:
            if not f.endswith(".html"):
                continue
            parser = _Links()
            with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                parser.feed(fh.read())
            for link in parser.links:
                if link.startswith(("http://", "https://", "data:", "#", "mailto:")):
                    continue
                target = os.path.normpath(os.path.join(dirpath, urllib.request.url2pathname(link.split("#")[0])))
                if not os.path.exists(target):
                    broken.append((f, link))
    assert broken == []  # the raw run files and manifests are linked (from the runs folder), never copied
    assert not os.path.exists(os.path.join(out, "data", "runs", "quadratic"))
    data = os.path.join(out, "data")
    points = pd.read_parquet(os.path.join(data, "points.parquet"))
    assert len(points) == sum(len(df) for df in _read_all(lb_runs).values())
    assert set(points["run_id"].astype(str)) == set(_read_all(lb_runs))
    csv = pd.read_csv(os.path.join(data, "results.csv.gz"))
    assert len(csv) == len(points) and len(pd.read_csv(os.path.join(data, "runs.csv.gz"))) == info["n_runs"]
    for name in ("overview", "comparisons", "verdicts", "profiles", "ranks", "head_to_head"):  # aggregated tables
        assert os.path.exists(os.path.join(data, f"{name}.csv")), name
    tables = json.load(open(os.path.join(data, "leaderboard.json"), encoding="utf-8"))
    assert {"overview", "comparisons", "profiles"} <= set(tables) and len(tables["overview"]) == len(
        pd.read_csv(os.path.join(data, "overview.csv"))
    )
    with open(os.path.join(out, "index.html"), encoding="utf-8") as f:
        index = f.read()
    assert "quadratic" in index and "mnist1d-mlp" in index and "smoke tier" in index and 'class="verdict"' in index
    with open(os.path.join(out, "tasks", "quadratic--smoke.html"), encoding="utf-8") as f:
        task_page = f.read()
    assert task_page.count("<svg") >= 2 and "http://www.w3.org/2000/svg" in task_page
    assert not re.search(r'(src|href)="(https?:)?//', task_page)  # nothing fetched from elsewhere
    assert not re.search(r'<script[^>]*src="(https?:)?//', index)


def test_result_strings_are_escaped(lb_site, model):
    out, _ = lb_site
    bad = model["summary"].query("task == 'quadratic' and status == 'error'").iloc[0]
    assert bad["hp_impl"] == SCRIPT  # the store kept the hostile value as given
    found = 0
    for dirpath, _, files in os.walk(out):
        for f in files:
            if f.endswith((".html", ".md")):
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    text = fh.read()
                assert SCRIPT not in text, f
                found += "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert found >= 2  # at least its run page and the task page show it, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page(out, bad["run_id"])[1]


def _with(table, name, value):
    """``table`` with column ``name`` set to ``value`` on every row."""
    import pyarrow as pa

    return table.set_column(table.column_names.index(name), name, pa.array([value] * table.num_rows))


def test_bad_files_are_skipped_with_one_warning_each(lb_runs, tmp_path):
    import pyarrow.parquet as pq

    runs = str(tmp_path / "runs")
    shutil.copytree(lb_runs, runs)
    good = records.find_runs(runs)
    src = pq.read_table(good[0])
    folder = os.path.join(runs, "quadratic", "adamw")
    bad = {
        "corrupt": os.path.join(folder, "corrupt000000.parquet"),
        "truncated": os.path.join(folder, "trunc0000000.parquet"),
        "schema": os.path.join(folder, "schema000000.parquet"),
        "columns": os.path.join(folder, "columns00000.parquet"),
    }
    with open(bad["corrupt"], "wb") as f:
        f.write(b"this is not parquet")
    with open(good[0], "rb") as f:
        blob = f.read()
    with open(bad["truncated"], "wb") as f:
        f.write(blob[: len(blob) // 2])
    version = _with(src, "schema_version", 99)
    pq.write_table(_with(version, "run_id", "schema000000"), bad["schema"])
    pq.write_table(_with(src, "run_id", "columns00000").drop_columns(["split"]), bad["columns"])
    # a run with only the required columns (older or partial runs) is kept, not skipped
    keep = [c for c in src.column_names if c in records.REQUIRED_COLUMNS]
    minimal = _with(src.select(keep), "run_id", "minimal00000")
    pq.write_table(minimal, os.path.join(folder, "minimal00000.parquet"))
    # an optimizer that is no longer registered still gets its row
    gone = _with(_with(src, "optimizer", "retired-opt"), "run_id", "retired00000")
    os.makedirs(os.path.join(runs, "quadratic", "retired-opt"))
    pq.write_table(gone, os.path.join(runs, "quadratic", "retired-opt", "retired00000.parquet"))

    warnings = []
    out = str(tmp_path / "site")
    info = site_build.build(runs, out, warn=warnings.append, plots=False)
    assert len(warnings) == len(bad)
    for path in bad.values():
        assert sum(path in w for w in warnings) == 1
    assert all("\n" not in w for w in warnings)
    assert info["n_runs"] == len(good) + 2
    assert os.path.exists(os.path.join(out, "runs", "minimal00000.html"))
    with open(os.path.join(out, "methodology.html"), encoding="utf-8") as f:
        assert "retired-opt" in f.read()
    with open(os.path.join(out, "index.html"), encoding="utf-8") as f:
        index = f.read()
    assert "retired-opt" in index and "Skipped files" in index


def test_rebuild_is_incremental(lb_runs, lb_site, tmp_path):
    out = str(tmp_path / "site")
    shutil.copytree(lb_site[0], out)
    again = site_build.build(lb_runs, out, warn=lambda m: None, plots=False)
    assert again["n_read"] == 0 and again["n_reused"] == again["n_runs"]
    assert again["pages_rendered"] == 0 and again["pages_reused"] == again["n_runs"]
    runs = str(tmp_path / "runs")
    shutil.copytree(lb_runs, runs)
    rows = pd.read_parquet(records.find_runs(runs)[0])
    rows["run_id"] = "copy00000000"
    records.write_run(rows.to_dict("records"), runs)
    third = site_build.build(runs, out, warn=lambda m: None, plots=False)
    assert third["n_read"] == third["n_runs"]  # another runs folder: paths differ, all read again
    fourth = site_build.build(runs, out, warn=lambda m: None, plots=False)
    assert fourth["n_read"] == 0 and fourth["n_runs"] == again["n_runs"] + 1


def test_cli_markdown_and_refusing_foreign_out(lb_runs, tmp_path, capsys):
    from rootbench.harness.cli import main

    assert main(["site", "--runs", lb_runs, "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "### quadratic" in md and "### mnist1d-mlp" in md and "| # | optimizer |" in md
    assert SCRIPT not in md
    foreign = tmp_path / "notasite"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["site", "--runs", lb_runs, "--out", str(foreign)]) == 2
    assert os.listdir(foreign) == ["keep.txt"]
    capsys.readouterr()
    # an --out that cannot be written is refused before anything is read or rendered: one line, exit 2
    blocked = foreign / "keep.txt" / "site"
    assert main(["site", "--runs", lb_runs, "--out", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keep.txt is not a folder" in err and os.listdir(foreign) == ["keep.txt"]


def test_empty_runs_folder_builds_an_empty_site(tmp_path):
    warnings = []
    info = site_build.build(str(tmp_path / "missing"), str(tmp_path / "site"), warn=warnings.append)
    assert info["n_runs"] == 0 and len(warnings) == 1
    with open(tmp_path / "site" / "index.html", encoding="utf-8") as f:
        assert "No runs yet" in f.read()


# ---------------------------------------------------------------------------------------------
# the browser: served over http, loaded in headless Chromium through the DevTools protocol


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _DevTools:
    def __init__(self, binary, profile):
        import websocket

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.fail("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.n, self.events = 0, []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, url):
        self.events = []
        self.call("Page.navigate", url=url)
        deadline = time.time() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.time() < deadline, f"{url} did not load"
            self.events.append(json.loads(self.ws.recv()))
        return self.js("1")  # drain pending console events

    def js(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def errors(self):
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(str(p.get("args")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def screenshot(self, path):
        height = self.js("document.documentElement.scrollHeight")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=min(int(height), 6000),
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_site_renders_in_headless_chromium(lb_site, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the browser check needs one")
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools")
    out, _ = lb_site
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=out))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    browser = _DevTools(binary, str(tmp_path / "profile"))
    try:
        browser.open(f"{base}/index.html")
        assert browser.js("document.querySelectorAll('table.sortable tbody tr').length") >= 4
        assert browser.js("document.querySelector('section.task h4 a').textContent") in ("mnist1d-mlp", "quadratic")
        browser.js("document.querySelector('table.sortable th:nth-child(4)').click()")  # sorting runs
        assert browser.js("document.querySelector('table.sortable th:nth-child(4)').dataset.dir") == "asc"
        browser.screenshot(str(tmp_path / "index.png"))
        assert browser.errors() == []
        for page in ("tasks/quadratic--smoke.html", "across.html", "pairs.html", "methodology.html"):
            browser.open(f"{base}/{page}")
            assert browser.errors() == [], page
        browser.open(f"{base}/tasks/quadratic--smoke.html")
        svgs = browser.js("Array.from(document.querySelectorAll('svg.plot')).map(s => s.getBoundingClientRect().width)")
        assert len(svgs) >= 2 and min(svgs) > 200  # inline SVG plots are laid out, not empty
        assert browser.js("document.querySelectorAll('svg.plot polyline').length") >= 4  # curves were drawn
        browser.screenshot(str(tmp_path / "task.png"))
        assert os.path.getsize(tmp_path / "index.png") > 10_000 and os.path.getsize(tmp_path / "task.png") > 10_000
    finally:
        browser.close()
        server.shutdown()


def test_claims_tables_quote_the_aggregation(model):
    from rootbench.leaderboard import claims

    md = claims.tables(model, "smoke")
    rvf = model["root_vs_free"]
    both = rvf[(rvf["tier"] == "smoke") & rvf["root_present"].astype(bool) & rvf["free_present"].astype(bool)]
    assert len(both)
    for r in both.to_dict("records"):
        assert f"| {r['task']} | {r['root']} | {r['free']} |" in md
        assert f"{r['diff']:+.4f}" in md
    ov = model["overview"]
    for r in ov[(ov["tier"] == "smoke") & ov["selected"].astype(bool)].to_dict("records"):
        assert " ".join(r["run_ids"]) in md  # every row names the runs behind it


def test_claims_against_sgd_recomputes_from_the_run_files(model, lb_runs):
    """Claim 1's table: optimizer minus SGD, recomputed from the listed runs' files with scipy's Welch test."""
    from rootbench.leaderboard import claims

    lines = claims.against_sgd(model, "smoke", tasks=["mnist1d-mlp", "quadratic"])
    by_run = _read_all(lb_runs)
    ov = model["overview"]
    sel = ov[(ov["tier"] == "smoke") & ov["selected"].astype(bool)]
    checked = 0
    for task in ("mnist1d-mlp", "quadratic"):
        rows = {r["optimizer"]: r for r in sel[sel["task"] == task].to_dict("records")}
        sgd = [_final(by_run[i], "test") for i in rows["sgd"]["run_ids"]]
        for name, r in rows.items():
            if name == "sgd":
                continue
            mine = [_final(by_run[i], "test") for i in r["run_ids"]]
            row = next(line for line in lines if line.startswith(f"| {task} | {name} |"))
            cells = [c.strip() for c in row.split("|")]
            assert cells[5].startswith(f"{np.mean(mine) - np.mean(sgd):+.4f}")
            if len(mine) > 1 and len(sgd) > 1:
                p = sps.ttest_ind(mine, sgd, equal_var=False).pvalue
                assert cells[6] == f"{p:.3f}"
            checked += 1
    assert checked >= 2
    assert not any(line.startswith("| quadratic | sgd |") for line in lines)


def test_list_valued_settings_reach_the_csv_exports(tmp_path):
    """A tier setting that is a sequence (Swin's depths per stage) is written to CSV as JSON text."""
    from tests.conftest import rootbench

    runs, site = str(tmp_path / "runs"), str(tmp_path / "site")
    assert (
        rootbench(
            "bench",
            "--task",
            "imagewoof-swin_t",
            "--opt",
            "sgd",
            "--tier",
            "smoke",
            "--quiet",
            "--in-process",
            runs=runs,
        )
        == 0
    )
    assert rootbench("site", "--runs", runs, "--out", site) == 0
    table = pd.read_csv(os.path.join(site, "data", "runs.csv.gz"))
    depths = json.loads(table["task_depths"].iloc[0])
    assert isinstance(depths, list) and all(isinstance(d, int) for d in depths)


def test_claims_can_restrict_to_one_stage_sweeps(tmp_path):
    """``--stages 1`` keeps a pair's runs listed by its one-stage sweep manifests and leaves other pairs alone."""
    from rootbench.leaderboard import claims

    def manifest(name, stages, trials, seeds, bf16):
        d = tmp_path / "sweeps" / "t" / "adamw"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.json").write_text(
            json.dumps(
                {
                    "tier": "quick",
                    "task": "t",
                    "optimizer": "adamw",
                    "budget": {"stages": stages},
                    "trials": [{"run_id": r} for r in trials],
                    "seeds": [{"run_id": r} for r in seeds],
                    "other_precisions": {"bf16-pure": bf16},
                }
            )
        )

    manifest("one", 1, ["a", "b"], ["a", "c"], ["d"])
    manifest("two", 2, ["a", "b", "e"], ["e", "f"], [])
    runs = pd.DataFrame(
        {
            "tier": "quick",
            "task": ["t"] * 6 + ["u"],
            "optimizer": "adamw",
            "run_id": ["a", "b", "c", "d", "e", "f", "g"],
        }
    )
    one = claims.restrict_to_sweeps(runs, claims.sweep_run_ids(str(tmp_path), 1))
    assert list(one["run_id"]) == ["a", "b", "c", "d", "g"]  # task u has no sweep: its run stays
    two = claims.restrict_to_sweeps(runs, claims.sweep_run_ids(str(tmp_path), 2))
    assert list(two["run_id"]) == ["a", "b", "e", "f", "g"]
    (tmp_path / "sweeps" / "t" / "adamw" / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read sweep manifest"):
        claims.sweep_run_ids(str(tmp_path), 1)


def test_claims_check_names_exactly_the_rows_the_runs_do_not_print(lb_runs):
    """``claims --check``: a document of the printed tables passes; a row with one digit changed is named, and so
    is a printed row moved into another table (a row counts only in the table it is printed in)."""
    from rootbench.leaderboard import claims

    results = site_load.load(lb_runs)
    printed = claims.render(results, lb_runs, "smoke", None)
    rows = claims.table_rows(printed)
    assert len(rows) >= 4 and not any(r.startswith("|---") or r.startswith("| task |") for r in rows)
    summary = "| claim | verdict |\n|---|---|\n| (1) | prose, not printed by claims |\n\n"
    assert claims.unprinted_rows("# Results\n\n" + summary + printed, results, lb_runs, "smoke") == []
    row = next(r for r in rows if re.search(r"\d\.\d{4}", r))
    forged = re.sub(r"(\d\.\d{3})(\d)", lambda m: m.group(1) + str((int(m.group(2)) + 1) % 10), row, count=1)
    assert forged != row
    assert claims.unprinted_rows(printed.replace(row, forged), results, lb_runs, "smoke") == [forged]
    blocks = claims.table_blocks(printed)
    target = max(blocks, key=len)  # a table of several rows receives one row of another table
    stray = next(block for block in blocks if block is not target)[-1]
    assert len(target) >= 2 and stray not in target
    moved = printed.replace(target[0], target[0] + "\n" + stray, 1)
    assert claims.table_rows(moved).count(stray) == 2
    assert claims.unprinted_rows(moved, results, lb_runs, "smoke") == [stray]


def test_claims_check_binds_tables_to_the_command_their_heading_names(lb_runs):
    """A table under a heading that names ``claims --tier smoke`` passes; the same table under a heading that names
    another tier is named row by row (it is printed, but not by that command); a ``###`` heading inherits its
    ``##`` heading's command, and a heading whose command ``--check`` cannot bind is one clear error."""
    from rootbench.harness.registry import UsageError
    from rootbench.leaderboard import claims

    results = site_load.load(lb_runs)
    printed = claims.render(results, lb_runs, "smoke", None)
    rows = claims.table_rows(printed)
    sub = re.sub(r"^## ", "### ", printed, flags=re.M)  # its tables' headings become the section's subheadings
    bound = "## Smoke (`python -m rootbench.leaderboard.claims --tier smoke`)\n\n" + sub
    assert claims.heading_aggregation(bound.splitlines()[0]) == ("smoke", None, None)
    assert claims.unprinted_rows(bound, results, lb_runs, "all") == []
    elsewhere = bound.replace("--tier smoke", "--tier long --protocol 1")
    assert claims.heading_aggregation(elsewhere.splitlines()[0]) == ("long", None, 1)
    assert claims.unprinted_rows(elsewhere, results, lb_runs, "all") == rows
    task = rows[0].split("|")[1].strip()  # a heading that says whose rows it holds names every other task's row
    others = [r for r in rows if r.split("|")[1].strip() != task]
    assert others and claims.heading_task(f"## X (`claims`, the `{task}` rows)") == task
    owned = bound.replace("--tier smoke`)", f"--tier smoke`, the `{task}` rows)", 1)
    assert claims.unprinted_rows(owned, results, lb_runs, "all") == others
    unbound = "## Smoke, no command\n\n" + sub  # no command: checked against every aggregation, as before
    assert claims.unprinted_rows(unbound, results, lb_runs, "all") == []
    for bad in ("--tier smoke --fast", "--tier smoke --stages two", "--tier smoke --stages", "--tier lnog"):
        with pytest.raises(UsageError, match=f"cannot bind its tables to '{bad}'"):
            claims.unprinted_rows(bound.replace("--tier smoke", bad), results, lb_runs, "all")
    fenced = "```sh\n# a shell comment, not a heading\n```\n"
    assert claims.unprinted_rows(bound.replace("\n\n", "\n\n" + fenced, 1), results, lb_runs, "all") == []
    assert claims.unprinted_rows(elsewhere.replace("\n\n", "\n\n" + fenced, 1), results, lb_runs, "all") == rows


@pytest.mark.slow
def test_results_md_tables_are_what_the_committed_runs_print(capsys):
    """Issue 10's acceptance: every table row of RESULTS.md is printed, verbatim, by ``claims`` from ``runs/``."""
    from rootbench.leaderboard import claims

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, "RESULTS.md")):
        pytest.skip("no RESULTS.md in this checkout")
    code = claims.main(["--runs", os.path.join(root, "runs"), "--check", os.path.join(root, "RESULTS.md")])
    assert code == 0, capsys.readouterr().err


def test_pairs_page_tables_only_comparable_pairs_and_lists_the_rest(model, lb_site):
    """A pair with runs on both sides is a table row; one missing a side is listed, naming the missing side."""
    rvf = model["root_vs_free"]
    smoke = rvf[rvf["tier"] == "smoke"]
    cmp = model["comparisons"]
    table = site_tables.comparisons_table(cmp[cmp["tier"] == "smoke"], smoke, "")
    missing = site_tables.pairs_missing(smoke)
    both = smoke[smoke["root_present"].astype(bool) & smoke["free_present"].astype(bool)]
    assert len(table["rows"]) == len(both) >= 1
    assert {r["cells"][0].ls[0][0] for r in table["rows"]} == set(both["task"])
    listed = {m["task"]: m["pairs"] for m in missing}
    assert sum(map(len, listed.values())) == len(smoke) - len(both)
    from rootbench.optimizers import get_optimizer_spec

    pair = get_optimizer_spec("adamw").pair
    assert f"adamw/{pair} (no runs of {pair})" in listed["mnist1d-mlp"]  # the fixture runs no rfadamw there
    html = open(os.path.join(lb_site[0], "pairs.html"), encoding="utf-8").read()
    assert "Pairs not comparable yet" in html and f"adamw/{pair} (no runs of {pair})" in html
    assert "no runs</td>" not in html


def test_run_pages_show_the_command_that_reproduces_the_run(lb_site, model):
    """The command on a run page resolves (``harness.resolve``) to that very run id, and the page links its
    sibling seeds, draws its curves and links (not copies) the raw file."""
    import html as html_lib
    import shlex

    from rootbench.harness.config import parse_overrides
    from rootbench.harness.resolve import resolve_args

    out, _ = lb_site
    s = model["summary"]
    # an fp32 run (two seeds per configuration); the precision twins are one-seed configurations of their own
    fp32 = (
        (s["task"] == "mnist1d-mlp") & (s["optimizer"] == "adamw") & (s["status"] == "ok") & (s["precision"] == "fp32")
    )
    r = s[fp32].iloc[0]
    section, page = run_page(out, r["run_id"])
    command = html_lib.unescape(re.search(r'<pre class="cmd"[^>]*>(.*?)</pre>', section, re.S).group(1))
    argv = shlex.split(command)
    assert argv[:2] == ["rootbench", "bench"]
    opts = dict(zip(argv[2:12:2], argv[3:12:2]))
    spec = resolve_args(
        opts["--task"],
        opts["--opt"],
        parse_overrides(argv[12:]),
        tier=opts["--tier"],
        seed=int(opts["--seed"]),
        precision=opts["--precision"],
    )
    assert spec.run_id == r["run_id"]
    siblings = s[(s["config_id"] == r["config_id"]) & (s["optimizer"] == "adamw") & (s["task"] == "mnist1d-mlp")]
    assert len(siblings) == 2
    for rid in siblings["run_id"]:  # every seed of the configuration on one page, a section each
        assert f'<section class="run" id="run--{rid}">' in page
    assert 'class="plot plot-run"' in page and ".parquet" in page
    assert not os.path.exists(os.path.join(out, "data", "runs"))  # raw files linked, not copied


def test_the_fast_reader_gives_read_records_records(lb_runs, tmp_path):
    """``load._fast`` reads run-level values from the footer statistics and decodes only the curve; for every file
    it gives ``records.read_record``'s run dict (values and types) and curve, and leaves odd files to it."""
    paths = records.find_runs(lb_runs)
    for p in paths:
        rec, got = records.read_record(p), site_load._fast(p)
        assert got is not None, p
        run, curve = got
        assert list(run) == list(rec.run)
        for k, v in rec.run.items():
            same = v == run[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(run[k]))
            assert same and type(v) is type(run[k]), (p, k, v, run[k])
        for c in site_load.POINT_COLUMNS:
            a, b = curve.column(c).to_pylist(), rec.curve_table.column(c).to_pylist()
            assert all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True)), (p, c)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    assert site_load._fast(str(bad)) is None and site_load.read_one(str(bad)).startswith("skipping ")


def test_reading_leaves_no_cyclic_garbage(lb_runs):
    """The readers pause the garbage collector; a reference cycle per file (pyarrow's footer and its schema)
    held every file's footer until the reader ended (1 GB per 5,000 files)."""
    import gc

    paths = records.find_runs(lb_runs)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for p in paths:
            assert not isinstance(site_load.read_one(p), str)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("pyarrow")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_folder_curves_are_each_runs_own_curve(lb_runs):
    """``read_folders`` keeps one table per folder and hands ``each`` views of it: every view is exactly its
    run's curve, in the runs' order."""
    scanned = site_load.scan(lb_runs)
    seen = {}
    runs, points, _, _ = site_load.read_folders(
        lb_runs, [(f, ps, "fp") for f, ps in scanned.items()], lambda folder, mine, curves: seen.update(curves)
    )
    assert len(seen) == len(runs) and points.num_rows == sum(t.num_rows for t in seen.values())
    for run in runs:
        own = site_load.read_one(run["path"])[1]
        view = seen[str(run["run_id"])]
        assert view.column_names == own.column_names
        for c in own.column_names:
            a, b = view.column(c).to_pylist(), own.column(c).to_pylist()
            assert all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True)), (run["path"], c)


def test_curve_csv_is_the_same_in_any_batch_size(lb_runs, model, tmp_path):
    """``results.csv.gz`` is written a batch at a time (dictionary columns decoded per batch): the file does not
    depend on the batch size."""
    import pyarrow as pa

    from rootbench.leaderboard import exports

    results = site_load.load(lb_runs)
    ids = model["summary"][list(exports.RESULT_COLUMNS)].astype({"run_id": str})
    table = exports._curve_rows(ids, pa.Table.from_pandas(results.points, preserve_index=False))
    one, many = str(tmp_path / "one.csv.gz"), str(tmp_path / "many.csv.gz")
    exports._write_csv_gz(table, one, rows_per_batch=table.num_rows + 1)
    exports._write_csv_gz(table, many, rows_per_batch=7)
    a, b = pd.read_csv(one), pd.read_csv(many)
    assert len(a) == table.num_rows > 7
    pd.testing.assert_frame_equal(a, b)


def test_warm_started_runs_are_marked_as_sgd_next_to_their_number(tmp_path):
    """A run whose preconditioner still owes more than half to its initial value (final ``warm_start_share``
    above ``search.WARM_START_LIMIT``) measured heavy-ball SGD: its number carries "≈ SGD" on the task page
    (overview and configuration rows) and on its run page; a run whose preconditioner took over does not."""
    from rootbench.harness import run, search
    from rootbench.harness.config import RunConfig

    root, out = str(tmp_path / "runs"), str(tmp_path / "site")
    shares = {}
    for lr_cov in (1e-6, 0.5):  # the curvature EMA barely moves vs. replaces s0 within the smoke run
        rows = run(
            "quadratic",
            "rfrmsprop",
            RunConfig(tier="smoke", hparams={"lr": 1e-2, "lr_cov": lr_cov}, ref_steps=2, threads=1),
        )
        records.write_run(rows, root)
        shares[rows[0]["run_id"]] = [r["warm_start_share"] for r in rows if r.get("warm_start_share") is not None][-1]
    warm = [rid for rid, v in shares.items() if v > search.WARM_START_LIMIT]
    assert len(warm) == 1, shares  # the two runs fall on either side of the limit
    warnings = []
    site_build.build(root, out, warn=warnings.append)
    assert warnings == []
    s = site_model.compute(site_load.load(root))["summary"].set_index("run_id")
    with open(os.path.join(out, "tasks", "quadratic--smoke.html"), encoding="utf-8") as f:
        page = f.read()
    for rid in shares:
        row = re.search(rf'<tr id="cfg--rfrmsprop--{s.loc[rid, "config_id"]}".*?</tr>', page, re.S).group(0)
        assert ("≈ SGD" in row) == (rid in warm)
        section, _ = run_page(out, rid)
        assert ("≈ SGD" in section) == (rid in warm) and "final warm-start share" in section
    # the overview shows the selected configuration, which the sweeps' rule never takes from the warm run
    overview = re.search(r'<tr id="ov--smoke--quadratic--rfrmsprop".*?</tr>', page, re.S).group(0)
    assert "≈ SGD" not in overview


def test_a_precision_change_measured_with_a_frozen_state_says_so(tmp_path):
    """When a precision's reruns recorded ``state_frozen`` (an EMA factor rounds to 1 in bf16), the overview's
    change for that precision carries "state frozen"; the same setting with a rate bf16 resolves does not."""
    import warnings as warnings_lib

    from rootbench.harness import run
    from rootbench.harness.config import RunConfig

    root, out = str(tmp_path / "runs"), str(tmp_path / "site")
    with warnings_lib.catch_warnings():
        warnings_lib.simplefilter("ignore", RuntimeWarning)  # the construction warning (test_diagnostics)
        for task, lr_cov in (("quadratic", 1e-3), ("mnist1d-mlp", 0.05)):  # frozen in bf16 / resolved in bf16
            for precision in ("fp32", "bf16-pure"):
                cfg = RunConfig(tier="smoke", precision=precision, hparams={"lr_cov": lr_cov}, ref_steps=0, threads=1)
                records.write_run(run(task, "adamw", cfg), root)
    warnings = []
    site_build.build(root, out, warn=warnings.append)
    assert warnings == []
    ov = site_model.compute(site_load.load(root))["overview"].set_index("task")
    assert list(ov.loc["quadratic", "frozen_bf16-pure"]) == [1, 1]
    assert list(ov.loc["mnist1d-mlp", "frozen_bf16-pure"]) == [0, 1]
    for task, frozen in (("quadratic", True), ("mnist1d-mlp", False)):
        with open(os.path.join(out, "tasks", f"{task}--smoke.html"), encoding="utf-8") as f:
            row = re.search(rf'<tr id="ov--smoke--{task}--adamw".*?</tr>', f.read(), re.S).group(0)
        assert ("state frozen" in row) == frozen
    from rootbench.leaderboard.claims import precision_table  # RESULTS.md's table says it too

    rows = {line.split(" | ")[0][2:]: line for line in precision_table(ov.reset_index()) if "adamw" in line}
    assert "(1/1 state frozen)" in rows["quadratic"]
    assert "state frozen" not in rows["mnist1d-mlp"]
