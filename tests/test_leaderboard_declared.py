"""The leaderboard reads capabilities from the registries, never from names.

A Kronecker-style root / root-free pair and a CNN task registered from outside the repository (optimizer and
task files in a temporary folder) are compared, given the SGD reference, and listed by the claims and the site
without any edit to ``leaderboard/``; a task whose name looks like a CNN but declares another kind is not a CNN
task, and names found only in the runs get no declared kind or pair. A scan of the leaderboard's source holds
the rule: no string in it names a registered optimizer or task, except the benchmark's two fixed references.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from rootbench.harness import records, registry
from rootbench.leaderboard import build as site_build
from rootbench.leaderboard import claims
from rootbench.leaderboard import load as site_load
from rootbench.leaderboard import model as site_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIER = "quick"
ROOT_OPT, FREE_OPT = "outside_kron", "outside_kron_rf"  # a Shampoo-like method and its inverse-free partner
CNN_TASK = "outside-task"  # declares model_kind "cnn"; nothing in the name says so
LOOKALIKE = "outside-resnet-lookalike"  # a CNN-ish name that declares "vit": no SGD reference
UNREGISTERED_TASK, UNREGISTERED_OPT = "gone-cnn", "gone_rf"  # only in the runs: nothing declared
AVERAGED_OPT = "outside_averaged"  # in no pair; declares eval_mode (evaluates at the weights its eval() swaps in)
# final test accuracy of each seed (three seeds, so the Welch tests have a value)
TEST_ACCURACY = {
    ROOT_OPT: (0.70, 0.72, 0.71),
    FREE_OPT: (0.80, 0.83, 0.81),
    "sgd": (0.60, 0.62, 0.61),
    UNREGISTERED_OPT: (0.50, 0.52, 0.51),
    AVERAGED_OPT: (0.65, 0.66, 0.64),
}
PLAN = [
    (CNN_TASK, (ROOT_OPT, FREE_OPT, "sgd", UNREGISTERED_OPT)),
    (LOOKALIKE, (ROOT_OPT, FREE_OPT, "sgd", AVERAGED_OPT)),
    (UNREGISTERED_TASK, (ROOT_OPT, FREE_OPT, "sgd")),
]


def _never_called(params, lr: float = 1e-3, T: int = 10):
    """The runs are synthetic: nothing builds these optimizers."""
    raise AssertionError("not used")


def _register(source: str) -> None:
    """What an outside file would do: declare a pair across the square root and a CNN task."""
    from rootbench.tasks import get_task_spec

    meta = dict(search_space={}, family="outside", preconditioner="kronecker", period_hparam="T", source_file=source)
    registry.register_optimizer(ROOT_OPT, _never_called, root_free=False, pair=FREE_OPT, **meta)
    registry.register_optimizer(FREE_OPT, _never_called, root_free=True, pair=ROOT_OPT, **meta)
    registry.register_optimizer(AVERAGED_OPT, _never_called, eval_mode=True, **meta)
    base = get_task_spec("quadratic")
    for name, kind in ((CNN_TASK, "cnn"), (LOOKALIKE, "vit")):
        registry.register_task(
            name,
            build=base.build,
            tiers=base.tiers,
            metric="accuracy",
            higher_is_better=True,
            description=f"registered from {source}",
            family="outside",
            model_kind=kind,
            source_file=source,
        )


def _rows(task: str, optimizer: str, seed: int, test_acc: float) -> list[dict]:
    """One synthetic run in the runner's columns: accuracy and loss on three splits at two evaluations."""
    rid = f"{task}-{optimizer}-{seed}".replace("_", "-")
    run = {
        "run_id": rid,
        "task": task,
        "tier": TIER,
        "optimizer": optimizer,
        "seed": seed,
        "precision": "fp32",
        "status": "ok",
        "metric_name": "accuracy",
        "higher_is_better": True,
        "target": 0.5,
        "hp_lr": 0.1,
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
    for step, acc in ((0, 0.1), (10, test_acc)):
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


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """The registrations (undone afterwards, so other tests see the registries as shipped) and the runs."""
    folder = tmp_path_factory.mktemp("outside")
    source = folder / "outside_plugin.py"
    source.write_text("# stands for a plugin file outside the repository\n")
    from rootbench.optimizers import list_optimizers
    from rootbench.tasks import list_tasks

    list_optimizers()  # the shipped entries first, as in any process
    list_tasks()
    _register(str(source))
    runs = str(folder / "runs")
    for task, optimizers in PLAN:
        for opt in optimizers:
            for seed, acc in enumerate(TEST_ACCURACY[opt]):
                records.write_run(_rows(task, opt, seed, acc), runs)
    try:
        yield runs, str(folder)
    finally:
        for name in (ROOT_OPT, FREE_OPT, AVERAGED_OPT):
            registry.OPTIMIZERS.pop(name, None)
        for name in (CNN_TASK, LOOKALIKE):
            registry.TASKS.pop(name, None)


@pytest.fixture(scope="module")
def outside_model(outside):
    return site_model.compute(site_load.load(outside[0]))


def test_declared_kinds_and_pairs_reach_the_model(outside_model):
    m = outside_model
    assert m["cnn_tasks"] == [CNN_TASK]  # not the CNN-named lookalike (vit), not the unregistered gone-cnn
    assert (ROOT_OPT, FREE_OPT) in m["pairs"]
    assert m["task_info"][UNREGISTERED_TASK] == {
        "description": "",
        "family": "",
        "model_kind": None,
        "registered": False,
    }
    gone = m["opt_info"][UNREGISTERED_OPT]
    assert not gone["registered"] and gone["pair"] is None and gone["root_free"] is None
    assert not any(UNREGISTERED_OPT in pair for pair in m["pairs"])
    rvf = m["root_vs_free"]
    ours = rvf[(rvf["root"] == ROOT_OPT) & (rvf["free"] == FREE_OPT)].set_index("task")
    assert set(ours.index) == {CNN_TASK, LOOKALIKE, UNREGISTERED_TASK}  # a both-sided pair shows on every task
    row = ours.loc[CNN_TASK]
    assert row["diff"] == pytest.approx(np.mean(TEST_ACCURACY[FREE_OPT]) - np.mean(TEST_ACCURACY[ROOT_OPT]))
    assert row["p"] == pytest.approx(
        sps.ttest_ind(TEST_ACCURACY[FREE_OPT], TEST_ACCURACY[ROOT_OPT], equal_var=False).pvalue
    )
    assert row["sgd_reference"] and row["sgd_test_mean"] == pytest.approx(np.mean(TEST_ACCURACY["sgd"]))
    assert not ours.loc[LOOKALIKE, "sgd_reference"] and not ours.loc[UNREGISTERED_TASK, "sgd_reference"]


def _section(markdown: str, heading: str) -> list[str]:
    """The table rows under the ``## heading...`` of the claims printout."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line.startswith("| ") and not line.startswith("| task |")]


def _half(values) -> float:
    """The 95 % t-interval half-width the claims print beside a mean."""
    x = np.asarray(values, float)
    return float(sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def test_claims_compare_the_outside_pair_and_count_the_outside_cnn_task(outside_model):
    md = claims.tables(outside_model, TIER)
    pairs = _section(md, "Root vs root-free")
    ours = [r for r in pairs if r.startswith(f"| {CNN_TASK} | {ROOT_OPT} | {FREE_OPT} |")]
    assert len(ours) == 1
    diff = np.mean(TEST_ACCURACY[FREE_OPT]) - np.mean(TEST_ACCURACY[ROOT_OPT])
    assert f"| {diff:+.4f} ± " in ours[0] and ours[0].endswith(
        f"| {np.mean(TEST_ACCURACY['sgd']):.4f} ± {_half(TEST_ACCURACY['sgd']):.4f} (n=3) |"
    )
    lookalike = next(r for r in pairs if r.startswith(f"| {LOOKALIKE} | {ROOT_OPT} |"))
    assert lookalike.endswith("|  |")  # no SGD reference: it declares a vision transformer
    against = _section(md, "Against SGD on CNN tasks")
    assert {r.split("|")[1].strip() for r in against} == {CNN_TASK}
    assert {r.split("|")[2].strip() for r in against} == {ROOT_OPT, FREE_OPT, UNREGISTERED_OPT}
    zoo = _section(md, "Matmul-only and other modern methods")  # in no declared pair, not the reference
    assert [r.split(" | ")[1:3] for r in zoo] == [
        [AVERAGED_OPT, "kronecker, averaged weights"],
        [UNREGISTERED_OPT, "–"],
    ]


def test_the_site_marks_an_optimizer_evaluated_at_averaged_weights(outside, tmp_path):
    """The declared ``eval_mode`` puts "averaged weights" next to the optimizer's name on its task page and in
    the methodology's optimizer table; an optimizer declaring nothing of the kind gets neither."""
    runs, _ = outside
    out = pathlib.Path(tmp_path / "site")
    assert site_build.build(runs, str(out), warn=lambda m: None, plots=False)["warnings"] == []
    task_page = (out / "tasks" / f"{LOOKALIKE}--{TIER}.html").read_text(encoding="utf-8")
    for opt, averaged in ((AVERAGED_OPT, True), (ROOT_OPT, False), ("sgd", False)):
        row = re.search(rf'<tr id="ov--{TIER}--{LOOKALIKE}--{opt}".*?</tr>', task_page, re.S).group(0)
        assert ("averaged weights" in row) == averaged, opt
    method = (out / "methodology.html").read_text(encoding="utf-8")
    evaluated = {
        opt: re.search(rf'<tr id="opt--{opt}".*?</tr>', method, re.S).group(0)
        for opt in (AVERAGED_OPT, ROOT_OPT, UNREGISTERED_OPT)
    }
    assert "<td>averaged weights (eval_mode)</td>" in evaluated[AVERAGED_OPT]
    assert "<td>training weights</td>" in evaluated[ROOT_OPT]
    assert "averaged" not in evaluated[UNREGISTERED_OPT] and "training weights" not in evaluated[UNREGISTERED_OPT]
    # a run page cannot know the declarations (the run file does not carry them): its title links the row above
    pages = [p for p in (out / "runs").rglob("*.html") if f"<title>{AVERAGED_OPT} on " in p.read_text("utf-8")]
    assert pages and all(
        f'<h1><a href="../methodology.html#opt--{AVERAGED_OPT}"' in p.read_text("utf-8") for p in pages
    )


def test_the_site_shows_the_outside_pair_with_the_sgd_reference(outside, tmp_path):
    runs, _ = outside
    out = str(tmp_path / "site")
    info = site_build.build(runs, out, warn=lambda m: None, plots=False)
    assert info["warnings"] == []
    pairs_html = (pathlib.Path(out) / "pairs.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", pairs_html)
    pair = f"{ROOT_OPT} → {FREE_OPT}"
    ours = [r for r in rows if f">{CNN_TASK}</a>" in r and pair in r]
    assert len(ours) == 1
    sgd_cell = re.findall(r"<td[^>]*>(.*?)</td>", ours[0])[-1]
    assert sgd_cell.startswith("0.610 ")  # the SGD reference column of a CNN task (rounded to its interval)
    lookalike = next(r for r in rows if f">{LOOKALIKE}</a>" in r and pair in r)
    assert re.findall(r"<td[^>]*>(.*?)</td>", lookalike)[-1] == ""
    assert f"shown with the sgd reference: {CNN_TASK}." in pairs_html
    assert f"so of no declared kind: {UNREGISTERED_TASK}." in pairs_html
    assert f"so in no declared pair: {UNREGISTERED_OPT}." in pairs_html
    method = (pathlib.Path(out) / "methodology.html").read_text(encoding="utf-8")
    assert re.search(rf">{CNN_TASK}</a></td><td>cnn</td>", method)
    assert re.search(rf">{LOOKALIKE}</a></td><td>vit</td>", method)
    assert re.search(rf">{UNREGISTERED_TASK}</a></td><td>none declared", method)
    assert re.search(
        rf"<td>(<a [^>]*>#</a>)?{ROOT_OPT}</td><td>yes</td><td>outside</td><td>kronecker</td><td>no</td>", method
    )
    assert re.search(
        rf"<td>(<a [^>]*>#</a>)?{FREE_OPT}<span class=\"rf\"[^>]*>rf</span></td><td>yes</td>"
        r"<td>outside</td><td>kronecker</td><td>yes</td>",
        method,
    )


PLUGIN = '''"""An optimizer plugin from outside the repository: a Kronecker pair, and (same file) a CNN task."""
from rootbench.harness.registry import register_optimizer, register_task
from rootbench.tasks import get_task_spec


def never_called(params, lr=1e-3, T=10):
    raise AssertionError("not used")


for name, partner, free in ((%(root)r, %(free)r, False), (%(free)r, %(root)r, True)):
    register_optimizer(name, never_called, root_free=free, pair=partner, preconditioner="kronecker",
                       period_hparam="T", family="outside")
base = get_task_spec("quadratic")
register_task(%(task)r, build=base.build, tiers=base.tiers, metric="accuracy", higher_is_better=True,
              description="from a plugin", family="outside", model_kind="cnn")
'''


@pytest.mark.slow
def test_claims_cli_counts_a_plugin_file_named_by_the_environment(outside, tmp_path):
    """``python -m rootbench.leaderboard.claims`` in a fresh process: the pair and the CNN task come from a file
    named by ``ROOTBENCH_OPTIMIZERS``, nothing else."""
    runs, _ = outside
    plugin = tmp_path / "kron_plugin.py"
    plugin.write_text(PLUGIN % {"root": ROOT_OPT, "free": FREE_OPT, "task": CNN_TASK})
    env = {**os.environ, "ROOTBENCH_OPTIMIZERS": str(plugin)}
    done = subprocess.run(
        [sys.executable, "-m", "rootbench.leaderboard.claims", "--runs", runs, "--tier", TIER],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert f"| {CNN_TASK} | {ROOT_OPT} | {FREE_OPT} |" in done.stdout
    against = _section(done.stdout, "Against SGD on CNN tasks")
    assert {r.split("|")[1].strip() for r in against} == {CNN_TASK}


# ---------------------------------------------------------------------------------------------
# no site or claims code branches on a plugin's name

# The benchmark's fixed references (declared constants at the top of aggregate.py); nothing else may name one.
FIXED_REFERENCES = {("aggregate.py", "REFERENCE_OPTIMIZER"), ("aggregate.py", "CNN_REFERENCE")}
# bench_build.py makes synthetic runs (it needs optimizer names to write them); it renders nothing itself
NOT_SITE_CODE = {"bench_build.py"}


def _registered_names() -> set[str]:
    from rootbench.optimizers import list_optimizers
    from rootbench.tasks import list_tasks

    return set(list_optimizers()) | set(list_tasks())


def _docstrings(tree) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _named(text: str, names: set[str]) -> set[str]:
    return {t for t in re.findall(r"[A-Za-z0-9_.+-]+", text) if t.strip(".-+") in names}


def test_no_leaderboard_string_names_a_registered_optimizer_or_task():
    names = _registered_names()
    found = []
    for path in sorted((ROOT / "leaderboard").glob("*.py")):
        if path.name in NOT_SITE_CODE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in tree.body:  # the declared references
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and (path.name, t.id) in FIXED_REFERENCES for t in node.targets
            ):
                skip.add(id(node.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found += [f"{path.name}:{node.lineno} {n!r}" for n in _named(node.value, names)]
    for path in sorted((ROOT / "leaderboard" / "templates").glob("*.j2")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for quoted in re.findall(r"\"([^\"]*)\"|'([^']*)'", line):
                found += [f"{path.name}:{lineno} {n!r}" for n in _named("".join(quoted), names)]
    assert not found, f"leaderboard code names registered optimizers or tasks (declare it in the registry): {found}"


def test_the_scan_would_catch_a_branch_on_a_name():
    tree = ast.parse('def f(name):\n    """Docstrings may mention shampoo."""\n    return name == "shampoo"\n')
    skip = _docstrings(tree)
    hits = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in skip
        and _named(n.value, {"shampoo"})
    ]
    assert hits == ["shampoo"]
