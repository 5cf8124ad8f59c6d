"""The leaderboard's aggregates and figures on planted runs: ranks and profiles over the tasks every compared optimizer
ran (not over coverage), one colour per declared pair in the rendered SVG, numbers rounded to what their interval
supports, and the verdict block on the front page with one forest row per comparable pair.

The runs are synthetic rows in the runner's columns (written through ``harness.records``); optimizer names are the
registered ones so that the registry's declared pairs apply, but nothing here trains.
"""

from __future__ import annotations

import glob
import os
import re
import shutil

import pandas as pd
import pytest

from rootbench.harness import records, stats
from rootbench.leaderboard import build as site_build
from rootbench.leaderboard import fmt
from rootbench.leaderboard import load as site_load
from rootbench.leaderboard import model as site_model
from tests.test_leaderboard import run_page

TIER = "quick"


@pytest.fixture(scope="module", autouse=True)
def _registries():
    """The registries read in this process (as the CLI's child process would read them)."""
    from rootbench.optimizers import list_optimizers
    from rootbench.tasks import list_tasks

    list_optimizers()
    list_tasks()


def _rows(
    task: str, optimizer: str, seed: int, test: float, ttt: float | None = None, lr: float = 0.01, status: str = "ok"
) -> list[dict]:
    """One synthetic run: accuracy and loss on three splits at three evaluations, reaching ``test`` at the end."""
    rid = f"{task}-{optimizer}-{seed}-{lr}".replace("_", "-").replace(".", "p")
    run = {
        "run_id": rid,
        "task": task,
        "tier": TIER,
        "optimizer": optimizer,
        "seed": seed,
        "precision": "fp32",
        "status": status,
        "metric_name": "accuracy",
        "higher_is_better": True,
        "target": 0.5,
        "hp_lr": lr,
        "time_to_target_s": ttt,
        "steps_to_target": None if ttt is None else int(ttt * 10),
        "git_sha": "synthetic",
        "git_dirty": False,
        "rootbench_version": "synthetic",
        "torch_version": "synthetic",
        "cuda_version": "",
        "device": "cpu",
        "cpu": "synthetic",
        "hostname": "synthetic",
        "started_at": "2026-01-01T00:00:00+00:00",
    }
    rows = []
    for step, acc in ((0, 0.1), (10, (0.1 + test) / 2), (20, test)):
        for split, shift in (("train", 0.02), ("val", -0.01), ("test", 0.0)):
            for metric, value in (("accuracy", acc + shift), ("loss", 2.0 - acc)):
                rows.append(
                    {
                        **run,
                        "step": step,
                        "epoch": step / 10,
                        "examples_seen": step * 32,
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "train_time_s": step * 0.01,
                        "eval_time_s": 0.0,
                    }
                )
    return rows


def _write(root: str, task: str, optimizer: str, means: float, ttt: float | None, seeds=(0, 1, 2), spread=0.01):
    for seed in seeds:
        records.write_run(_rows(task, optimizer, seed, means + spread * (seed - 1), ttt), root)


# ---------------------------------------------------------------------------------------------
# fair aggregates: one optimizer on 17 tasks, another on 6

WIDE, NARROW = "adamw", "rfadamw"  # registered names (a declared pair), planted results
ALL_TASKS = [f"task-{i:02d}" for i in range(17)]
SHARED = ALL_TASKS[:6]


@pytest.fixture(scope="module")
def coverage_site(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coverage") / "runs")
    for task in ALL_TASKS:
        _write(root, task, WIDE, 0.70, ttt=20.0)
    for task in SHARED:  # better and twice as fast wherever both ran
        _write(root, task, NARROW, 0.80, ttt=10.0)
    out = str(tmp_path_factory.mktemp("coverage") / "site")
    info = site_build.build(root, out, warn=lambda m: None)
    return root, out, info, site_model.compute(site_load.load(root))


def test_aggregates_rank_on_the_tasks_both_ran(coverage_site):
    _, out, info, model = coverage_site
    across = model["across"][TIER]
    assert across["tasks"] == SHARED and set(across["optimizers"]) == {WIDE, NARROW} and not across["set_aside"]
    ranks = across["ranks"].set_index("optimizer")
    assert ranks.loc[NARROW, "mean_rank"] == 1.0 and ranks.loc[WIDE, "mean_rank"] == 2.0
    assert ranks.loc[NARROW, "n_tasks"] == ranks.loc[WIDE, "n_tasks"] == 6
    score = across["speedup"].set_index("optimizer")["score"]
    assert score[NARROW] == pytest.approx(1.0) and score[WIDE] < score[NARROW]
    assert across["speedup"].set_index("optimizer").loc[NARROW, "speedup_time"] == pytest.approx(2.0)
    # AlgoPerf's way (every workload, a missing one counting as infinite time) ranks coverage instead
    times = {t: {WIDE: 20.0, **({NARROW: 10.0} if t in SHARED else {})} for t in ALL_TASKS}
    algoperf = stats.performance_profiles(times)["score"]
    assert algoperf[WIDE] > algoperf[NARROW]
    page = open(os.path.join(out, "across.html"), encoding="utf-8").read()
    assert "Common tasks (6 of 17):</strong> " + ", ".join(SHARED) + "." in page
    assert "AlgoPerf" in page
    profiles = pd.read_csv(os.path.join(out, "data", "profiles.csv"))
    assert set(profiles["n_tasks"]) == {6} and set(profiles["common_tasks"]) == {" ".join(SHARED)}
    assert profiles.set_index("optimizer").loc[NARROW, "mean_rank"] == 1.0


def test_tasks_with_one_replicated_optimizer_are_reference_runs(coverage_site):
    _, out, _, model = coverage_site
    classes = model["task_classes"]
    assert {t for (_, t), n in classes.items() if n >= 2} == set(SHARED)
    index = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    compared = re.findall(r'<section class="task" data-k="([^"]+)"', index)
    assert compared == SHARED  # the leaderboards; the other 11 are listed as reference runs
    assert "Reference runs: 11 tasks with fewer than two replicated optimizers" in index


def test_a_site_with_nothing_changed_is_kept(coverage_site, tmp_path):
    root, out, info, _ = coverage_site
    again = site_build.build(root, out, warn=lambda m: None)
    assert again["unchanged"] and again["n_read"] == 0 and again["n_runs"] == info["n_runs"]
    assert again["timings"]["total"] < 5


# ---------------------------------------------------------------------------------------------
# colours: one per declared pair, the root-free partner dashed


@pytest.fixture(scope="module")
def pairs_site(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pairs") / "runs")
    for opt, mean in (("adamw", 0.70), ("rfadamw", 0.72), ("shampoo", 0.65), ("ifshampoo", 0.75), ("sgd", 0.6)):
        _write(root, "task-a", opt, mean, ttt=10.0)
    out = str(tmp_path_factory.mktemp("pairs") / "site")
    site_build.build(root, out, warn=lambda m: None)
    return out


def _strokes(svg: str) -> dict[str, set[tuple[str, bool]]]:
    """optimizer -> {(stroke colour, dashed)} of its polylines in one SVG."""
    out: dict = {}
    for tag in re.findall(r"<polyline [^>]*>", svg):
        opt = re.search(r'data-opt="([^"]+)"', tag)
        if opt:
            out.setdefault(opt.group(1), set()).add(
                (re.search(r'stroke="([^"]+)"', tag).group(1), "stroke-dasharray" in tag)
            )
    return out


def test_pair_colours_in_the_rendered_svg(pairs_site):
    from rootbench.optimizers import get_optimizer_spec

    html = open(os.path.join(pairs_site, "tasks", "task-a--quick.html"), encoding="utf-8").read()
    panels = [
        f
        for f in re.findall(r'<div class="fig-scroll">(<svg .*?</svg>)</div>', html, re.S)
        if 'class="plot plot-panel"' in f
    ]
    assert panels
    for svg in panels:
        st = _strokes(svg)
        colour = {o: next(iter(s))[0] for o, s in st.items()}
        assert all(len(s) == 1 for s in st.values())  # one style per optimizer
        for root, free in (("adamw", "rfadamw"), ("shampoo", "ifshampoo")):
            assert get_optimizer_spec(free).pair == root and get_optimizer_spec(free).root_free  # declared
            assert colour[root] == colour[free]  # one colour per pair
            assert st[root] == {(colour[root], False)} and st[free] == {(colour[free], True)}  # partner dashed
        assert colour["adamw"] != colour["shampoo"]
        assert colour["sgd"] not in (colour["adamw"], colour["shampoo"])
        assert "solid: root-based · dashed: root-free" in svg  # the legend says so
    figure_file = re.search(r'<a href="\.\./(fig/[^"]+\.svg)" download>', html).group(1)
    assert os.path.exists(os.path.join(pairs_site, figure_file))  # each figure also downloads as SVG


def test_front_page_verdict_and_forest_rows(pairs_site):
    html = open(os.path.join(pairs_site, "index.html"), encoding="utf-8").read()
    verdict = re.search(r'<div class="verdict" id="verdict-quick">(.*?)</div>\s*<h3', html, re.S)
    assert verdict, "the verdict block comes first"
    assert html.index('class="verdict"') < html.index('<section class="task"')
    forest = next(
        f
        for f in re.findall(r'<div class="fig-scroll">(<svg .*?</svg>)</div>', html, re.S)
        if 'class="plot plot-forest"' in f
    )
    rows = re.findall(r'<g id="([^"]+)" class="frow" data-direction="([^"]+)"', forest)
    assert len(rows) == 2  # adamw/rfadamw and shampoo/ifshampoo on task-a
    assert {d for _, d in rows} <= {"root-free better", "root better", "not significant", "untestable"}
    ifs = re.search(r'class="frow" data-direction="([^"]+)" data-k="task-a shampoo ifshampoo"', forest)
    assert ifs.group(1) == "root-free better"  # 0.75 vs 0.65 over three seeds


# ---------------------------------------------------------------------------------------------
# formatting


def test_means_are_rounded_to_what_their_interval_supports():
    assert fmt.ci_text(0.5685, 0.0142) == ("0.569", "± 0.014")
    assert fmt.ci_text(0.596, 0.047) == ("0.596", "± 0.047")
    assert fmt.ci_text(1.8934, 0.31) == ("1.89", "± 0.31")
    assert fmt.ci_text(1234.5, 12.3) == ("1234", "± 12") or fmt.ci_text(1234.5, 12.3) == ("1235", "± 12")
    assert fmt.ci_text(0.5, float("nan")) == ("0.5", "")  # one seed: no interval, four significant digits
    assert fmt.ci_text(-0.0413, 0.0151, sign=True) == ("−0.041", "± 0.015")
    cell = fmt.ci_cell(0.5685, 0.0142, 3)
    assert cell.t == "0.569" and cell.s == "± 0.014 n=3" and float(cell.v) == 0.5685  # sorting keeps every digit


def test_units_and_diverged_runs_read_right():
    assert fmt.nbytes(1023.9 * 1024) == "1 MiB" and "e+" not in fmt.nbytes(1020 * 1024)
    assert fmt.nbytes(999 * 1024) == "999 KiB" and fmt.nbytes(512) == "512 B"
    assert fmt.num(12000, 4) == "12,000" and fmt.num(0.000123) == "0.000123"
    assert fmt.seconds(7300) == "2.03 h" and fmt.seconds(0.0004) == "400 µs"
    assert fmt.diverged_text(1200) == "diverged at step 1,200"
    table = {
        "cols": [fmt.col("a"), fmt.col("b"), fmt.col("Δ bf16")],
        "rows": [{"cells": [fmt.cell("x"), fmt.cell("y"), fmt.cell("–")]} for _ in range(3)],
    }
    assert [c.t for c in fmt.drop_empty(table)["cols"]] == ["a", "b"]  # a column of dashes says nothing


def test_final_values_of_a_diverged_run_are_marked_not_shown(tmp_path):
    root = str(tmp_path / "runs")
    _write(root, "task-d", "adamw", 0.7, 10.0)
    rows = _rows("task-d", "adamw", 5, 0.1, None, lr=10.0, status="diverged")
    rows = [dict(r, diverged_step=15, status_message="non-finite loss at step 15") for r in rows if r["step"] < 20]
    records.write_run(rows, root)
    out = str(tmp_path / "site")
    site_build.build(root, out, warn=lambda m: None)
    rid = rows[0]["run_id"]
    section, page = run_page(out, rid)
    assert "<dt>final test</dt><dd>diverged at step 15; last finite value" in section
    assert "diverged at step 15</text>" in page  # and the curves mark where
    task = open(os.path.join(out, "tasks", "task-d--quick.html"), encoding="utf-8").read()
    assert re.search(r'title="run [^"]*: diverged at step 15"', task)  # the seed link says where it diverged


def test_worker_processes_read_and_write_pages_like_one_process(coverage_site, tmp_path, monkeypatch):
    """The parallel path (worker processes that hand their rows over, then write their folders' pages) gives the
    same tables and pages as reading in this process."""
    root, serial_out, _, _ = coverage_site
    serial = site_load.load(root)
    monkeypatch.setattr(site_load, "PARALLEL_MIN_FILES", 1)
    out = str(tmp_path / "site")
    info = site_build.build(root, out, warn=lambda m: None, jobs=2)
    assert info["warnings"] == [] and info["pages_rendered"] == info["n_runs"] == len(serial.runs)
    assert set(info["worker_cpu"]) == {"read", "each"}  # the workers did read and write pages
    parallel = site_load.load(root, jobs=2)
    cols = ["run_id", "config_id", "final_test", "final_val", "status"]
    key = ["run_id"]
    pd.testing.assert_frame_equal(
        parallel.runs[cols].sort_values(key).reset_index(drop=True),
        serial.runs[cols].sort_values(key).reset_index(drop=True),
    )
    assert len(parallel.points) == len(serial.points)
    assert sorted(os.listdir(os.path.join(out, "runs"))) == sorted(os.listdir(os.path.join(serial_out, "runs")))


def test_front_page_puts_the_tiers_side_by_side_with_what_each_verdict_rests_on(tmp_path):
    root = str(tmp_path / "runs")
    for tier, means in (("quick", (0.70, 0.72, 0.60)), ("long", (0.80, 0.78, 0.85))):
        for opt, mean in zip(("adamw", "rfadamw", "sgd"), means, strict=True):
            for seed in (0, 1, 2):
                rows = _rows("task-a", opt, seed, mean + 0.01 * (seed - 1))
                for r in rows:
                    r["tier"], r["run_id"] = tier, f"{r['run_id']}-{tier}"
                records.write_run(rows, root)
    out = str(tmp_path / "site")
    site_build.build(root, out, warn=lambda m: None)
    html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    section = re.search(r'<section class="tiers" id="tiers">(.*?)</section>', html, re.S)
    assert section and html.index('id="tiers"') < html.index('id="tier-quick"')  # first, above the tiers
    table = section.group(1)
    heads = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
    assert [h for h in heads if "tier" in h or "τ" in h][:3] == ["quick tier", "long tier", "τ quick→long"]
    assert "q " in table and " cfg" in table and "n " in table  # what each verdict rests on
    # sgd best at quick, worst at long; adamw and rfadamw swap: every pair of the three reverses
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table))
    assert "−1 [−1, −1]" in words
    one_tier = str(tmp_path / "one")
    quick_only = str(tmp_path / "quick-only")
    for path in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True):
        if "-quick" in os.path.basename(path) or records.read_run(path)["tier"].iloc[0] == "quick":
            dest = os.path.join(quick_only, os.path.relpath(path, root))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(path, dest)
    site_build.build(quick_only, one_tier, warn=lambda m: None)
    assert 'id="tiers"' not in open(os.path.join(one_tier, "index.html"), encoding="utf-8").read()


def test_methods_in_no_pair_get_their_own_precision_table_with_what_they_declare(tmp_path):
    """The zoo (registered optimizers in no declared pair, not the CNN reference) is reported beside the paper's
    methods, never among them; which optimizers those are comes from the declarations, not from names."""
    from rootbench.leaderboard import claims
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    unpaired = [n for n in list_optimizers() if get_optimizer_spec(n).pair is None and n != "sgd"]
    if not unpaired:
        pytest.skip("every registered optimizer is in a pair (the zoo extra is not installed)")
    other = unpaired[0]
    root = str(tmp_path / "runs")
    for opt, mean in (("adamw", 0.70), ("rfadamw", 0.72), (other, 0.65)):
        for seed in (0, 1, 2):
            records.write_run(_rows("task-a", opt, seed, mean + 0.01 * (seed - 1)), root)
    text = claims.render(site_load.load(root), root, TIER, None)
    main, _, zoo = text.partition(f"## Matmul-only and other modern methods, {TIER} tier")
    assert zoo, text
    precision = main.split(f"## Precision, memory and step time, {TIER} tier")[1]
    rows = {line.split(" | ")[1]: line for line in precision.splitlines() if line.startswith("| task-a |")}
    assert set(rows) == {"adamw", "rfadamw"}
    spec = get_optimizer_spec(other)
    zoo_rows = [line for line in zoo.splitlines() if line.startswith("| task-a |")]
    assert len(zoo_rows) == 1 and zoo_rows[0].split(" | ")[1] == other
    assert zoo_rows[0].split(" | ")[2].startswith(spec.preconditioner)
    assert claims.table_rows(text).count(zoo_rows[0]) == 1  # held by --check like every other row
