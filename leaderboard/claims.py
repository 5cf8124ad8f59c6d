"""The paper's three claims as Markdown tables, from ``runs/`` through the site's own aggregation.

    .venv/bin/python -m rootbench.leaderboard.claims [--runs runs] [--tier quick|long|all] [--stages N]
    .venv/bin/python -m rootbench.leaderboard.claims --check RESULTS.md  # each table as its heading's command prints it

Lin et al., ICML 2024 (https://arxiv.org/abs/2402.03496) claim that removing the square root
(1) closes the generalisation gap to SGD on CNNs, (2) keeps the root-based methods' performance on
vision transformers, and (3) lets the inverse-free Kronecker method run in bf16 where Shampoo needs
high precision, with less memory and time. Every number printed here is computed by
``leaderboard.aggregate`` (the functions behind ``rootbench site``) from the run files, with the run
ids of each selected configuration, so RESULTS.md can quote it and anyone can regenerate it. Which tasks
are CNNs and which optimizers pair up across the square root is what the task and optimizer registries
declare (``leaderboard.model``), so a plugin's task or pair is counted without editing this file.

``--tier all`` prints one section per tier that holds runs (the claims are decided on each separately, never
across tiers), each headed by its hardware and tuning budget, and then the agreement between consecutive tiers
(``leaderboard.tiers``: Kendall's tau of the optimizer rankings per task, with its interval).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from rootbench.harness import records, stats
from rootbench.harness.registry import UsageError
from rootbench.leaderboard import load as loader
from rootbench.leaderboard import tiers as tier_agreement
from rootbench.leaderboard import verdicts
from rootbench.leaderboard.aggregate import CNN_REFERENCE, TIER_ORDER, both_sides_ran
from rootbench.leaderboard.fmt import eval_mode_tag, frozen_tag
from rootbench.leaderboard.model import compute


def _num(v, digits=4) -> str:
    try:
        if v != v:  # NaN
            return "–"
    except TypeError:
        return "–"
    return f"{v:.{digits}f}"


def _cell(mean, half, n) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.4f} ± {half:.4f} (n={int(n)})" if half == half else f"{mean:.4f} (n={int(n)})"


def _diff(diff, half) -> str:
    return f"{diff:+.4f}" + (f" ± {half:.4f}" if half == half else "")


def tiers_with_runs(model: dict) -> list[str]:
    """The tiers that hold selected configurations, cheapest first (smoke excluded: it ranks nothing)."""
    return tier_agreement.selected_tiers(model["overview"])


def tier_header(model: dict, tier: str) -> list[str]:
    """What a tier's numbers rest on: its machines and software, and the tuning budget of its selections."""
    hw = model["hardware"]
    hw = hw[hw["tier"] == tier] if len(hw) else hw
    ov = model["overview"]
    ov = ov[(ov["tier"] == tier) & ov["selected"].astype(bool)]
    out = ["", f"# {tier.capitalize()} tier", ""]
    for r in hw.to_dict("records"):
        threads = r.get("num_threads", "–")
        out.append(
            f"- {r['n_runs']} runs on {r.get('device', '–')} ({r.get('cpu', '–')}, {threads} thread(s)), "
            f"torch {r.get('torch_version', '–')}"
        )
    if len(ov):
        configs = sorted({int(n) for n in ov["n_configs"] if n == n})
        seeds = sorted({int(n) for n in ov["test_n"] if n == n})
        out.append(
            f"- tuning budget of the selected configurations: {', '.join(map(str, configs))} configurations per "
            f"task and optimizer; {', '.join(map(str, seeds))} test seeds"
        )
    return out


def agreement_table(model: dict, cheap: str, dear: str) -> list[str]:
    """Per task run at both tiers: does the ``cheap`` tier's ranking of the optimizers predict the ``dear`` one's?"""
    df = tier_agreement.agreement(model["overview"], cheap, dear)
    out = [
        "",
        f"## Does the {cheap} tier predict the {dear} tier? (Kendall tau of the optimizer rankings by test mean)",
        "",
        f"| task | optimizers | tau, 95% bootstrap CI | p (orders unrelated) | {cheap} order | {dear} order |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in df.to_dict("records"):
        missing = r["tau"] != r["tau"]
        tau = "– (fewer than 3)" if missing else f"{r['tau']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
        p = "–" if missing else _num(r["p"], 4)
        out.append(f"| {r['task']} | {r['n']} | {tau} | {p} | {r['cheap_order']} | {r['dear_order']} |")
    return out


def all_tiers(model: dict) -> str:
    """One section per tier with runs (``tables``), then the agreement of each consecutive pair of tiers."""
    present = tiers_with_runs(model)
    out = []
    for tier in present:
        out += tier_header(model, tier) + ["", tables(model, tier)]
    for cheap, dear in tier_agreement.tier_pairs(present):
        out += agreement_table(model, cheap, dear)
    return "\n".join(out).lstrip("\n") + "\n"


def tables(model: dict, tier: str) -> str:
    if tier == "all":
        return all_tiers(model)
    ov = model["overview"]
    ov = ov[(ov["tier"] == tier) & ov["selected"].astype(bool)]
    rvf = model["root_vs_free"]
    rvf = rvf[(rvf["tier"] == tier) & both_sides_ran(rvf)] if len(rvf) else rvf
    out = [
        f"## Root vs root-free, {tier} tier (test metric, selected on validation)",
        "",
        "| task | root | root-free | root | root-free | difference (free − root), 95% CI | Welch p | SGD |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rvf.to_dict("records"):
        sgd = (
            _cell(
                r.get("sgd_test_mean", float("nan")), r.get("sgd_test_half", float("nan")), r.get("sgd_test_n", 0) or 0
            )
            if r.get("sgd_reference")
            else ""
        )
        diff = _diff(r["diff"], r["diff_half"])
        out.append(
            f"| {r['task']} | {r['root']} | {r['free']} "
            f"| {_cell(r['root_test_mean'], r['root_test_half'], r['root_test_n'])} "
            f"| {_cell(r['free_test_mean'], r['free_test_half'], r['free_test_n'])} "
            f"| {diff} | {_num(r['p'], 3)} | {sgd} |"
        )
    out += against_sgd(model, tier)
    out += verdict_table(model, tier)
    out += warm_start_table(model, tier)
    compared = {name for pair in model.get("pairs", []) for name in pair} | {CNN_REFERENCE}
    ours = ov["optimizer"].isin(compared)
    out += ["", f"## Precision, memory and step time, {tier} tier", ""] + precision_table(ov[ours])
    if (~ours).any():  # in no declared pair and not the reference: the zoo
        out += [
            "",
            f"## Matmul-only and other modern methods, {tier} tier (in no claim; selected and summarised as above)",
            "",
        ]
        out += precision_table(ov[~ours], model.get("opt_info", {}))
    return "\n".join(out) + "\n"


def precision_table(ov, opt_info: dict | None = None) -> list[str]:
    """One row per selected configuration: fp32 test, the bf16-pure change, memory, step time and gap. With
    ``opt_info`` a column says what each optimizer declares (preconditioner, root or not)."""
    traits = opt_info is not None
    out = [
        "| task | optimizer | "
        + ("declared | " if traits else "")
        + "fp32 test | bf16-pure − fp32 | bf16-pure diverged | state B/param | peak memory MiB | "
        "step time ×fused AdamW | train−test gap | selected run ids |",
        "|---|---|" + ("---|" if traits else "") + "---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ov.sort_values(["task", "optimizer"]).to_dict("records"):
        pure = r.get("delta_bf16-pure")
        pure = "–" if pure != pure or pure is None else f"{pure:+.4f}"
        frozen = r.get("frozen_bf16-pure")  # [reruns whose EMA rounds to no decay in bf16, reruns]
        tag = frozen_tag(frozen, "bf16-pure")  # the site's badge, so both say it under the same condition
        if tag:
            pure += f" ({frozen[0]}/{frozen[1]} {tag[0]})"
        div = r.get("diverged_bf16-pure")
        div = f"{div[0]}/{div[1]}" if isinstance(div, (list, tuple)) else "–"
        peak = r.get("peak_mem_bytes")
        declared = ""
        if traits:
            info = opt_info.get(r["optimizer"], {})
            root = {True: ", root-free", False: ", square root"}.get(info.get("root_free"), "")
            weights = eval_mode_tag(info.get("eval_mode"))  # the site's badge: evaluated at averaged weights
            averaged = f", {weights[0]}" if weights else ""
            declared = f"{info.get('preconditioner') or '–'}{root}{averaged} | "
        out.append(
            f"| {r['task']} | {r['optimizer']} | {declared}{_cell(r['test_mean'], r['test_half'], r['test_n'])} "
            f"| {pure} | {div} "
            f"| {_num(r['state_bytes_per_param'], 2)} | {_num(peak / 2**20, 1) if peak == peak else '–'} "
            f"| {_num(r['step_ratio'], 2)} | {_num(r['gap_mean'], 4)} | {' '.join(r['run_ids'])} |"
        )
    return out


def against_sgd(model: dict, tier: str, tasks=None) -> list[str]:
    """Claim 1's table: every selected optimizer minus SGD (``CNN_REFERENCE``) on the CNN tasks (Welch 95 % CI and p).

    ``tasks`` defaults to the model's CNN tasks (those registered with ``model_kind="cnn"``); tasks without a
    selected SGD configuration are skipped.
    """
    ov = model["overview"]
    ov = ov[(ov["tier"] == tier) & ov["selected"].astype(bool)]
    tasks = model.get("cnn_tasks", []) if tasks is None else tasks
    out = [
        "",
        f"## Against SGD on CNN tasks, {tier} tier (test metric, selected on validation)",
        "",
        "| task | optimizer | test | SGD test | difference (optimizer − SGD), 95% CI | Welch p |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task in sorted(tasks):
        rows = {r["optimizer"]: r for r in ov[ov["task"] == task].to_dict("records")}
        ref = rows.get(CNN_REFERENCE)
        if ref is None:
            continue
        for name, r in sorted(rows.items()):
            if name == CNN_REFERENCE:
                continue
            w = stats.welch(r["test_values"], ref["test_values"])
            out.append(
                f"| {task} | {name} | {_cell(r['test_mean'], r['test_half'], r['test_n'])} "
                f"| {_cell(ref['test_mean'], ref['test_half'], ref['test_n'])} "
                f"| {_diff(r['test_mean'] - ref['test_mean'], w.half)} | {_num(w.p, 3)} |"
            )
    return out


def verdict_table(model: dict, tier: str) -> list[str]:
    """The claims decided by ``leaderboard.verdicts`` (the site's rules): one row per comparison, with the
    Benjamini-Hochberg q within its claim, the seeds and the verdict with its reason."""
    df = verdicts.decide(model, tier)
    out = [
        "",
        f"## Claim verdicts, {tier} tier (decided by rootbench.leaderboard.verdicts)",
        "",
        "| task | claim | comparison | metric | difference, 95% CI | q (BH) | seeds | verdict | reason |",
        "|---|---:|---|---|---:|---:|---|---|---|",
    ]
    if not len(df):
        return out
    for r in df.sort_values(["claim", "task", "comparison"]).to_dict("records"):
        diff = "–" if r["diff"] != r["diff"] else f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
        out.append(
            f"| {r['task']} | {r['claim']} | {r['comparison']} | {r['metric']} | {diff} | {_num(r['q'], 3)} "
            f"| {r['n'] or '–'} | {r['verdict'] or '–'} | {str(r['reason']).replace('|', '/')} |"
        )
    counts = df[df["verdict"].isin(["supported", "contradicted", "not testable"])].groupby(["claim", "verdict"]).size()
    out += [
        "",
        "Tally: "
        + "; ".join(
            f"claim {c}: "
            + ", ".join(f"{counts.get((c, v), 0)} {v}" for v in ("supported", "contradicted", "not testable"))
            for c in sorted(df["claim"].unique())
        ),
    ]
    return out


def warm_start_table(model: dict, tier: str) -> list[str]:
    """Per selected configuration of an optimizer that declares a warm start: the largest final warm-start
    share over its fp32 seeds (the share of the preconditioner still owed to its initial value; above
    ``verdicts.WARM_START_LIMIT`` the run is SGD in disguise) and whether any seed's state froze."""
    ov = model["overview"]
    ov = ov[(ov["tier"] == tier) & ov["selected"].astype(bool)]
    summary, info = model["summary"], model.get("opt_info", {})
    protocols = model.get("tuning_protocol", {})
    out = [
        "",
        f"## Warm start of the selected configurations, {tier} tier",
        "",
        "| task | optimizer | tuning protocol | final warm-start share, max over seeds | seeds | state frozen |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in ov.sort_values(["task", "optimizer"]).to_dict("records"):
        if not info.get(r["optimizer"], {}).get("warm_start"):
            continue
        runs = summary[summary["run_id"].isin(list(r["run_ids"]))]
        frozen = any(bool(v) for v in runs.get("state_frozen", []) if v == v and v is not None)
        most = r.get("warm_start_max", float("nan"))  # ``aggregate.configs``: max over the configuration's seeds
        share = "not recorded" if most is None or most != most else f"{most:.3f}"
        protocol = protocols.get((str(r["tier"]), str(r["task"]), str(r["optimizer"])), "–")
        out.append(
            f"| {r['task']} | {r['optimizer']} | {protocol} | {share} | {len(runs)} | {'yes' if frozen else 'no'} |"
        )
    return out


def sweep_run_ids(runs_root: str, stages: int) -> dict[tuple[str, str, str], set[str]]:
    """Run ids of the sweeps with ``stages`` search stages, per (tier, task, optimizer), from their manifests.

    Lets a table be rebuilt at one tuning budget after a task got a second stage: every trial, seed and
    other-precision run a manifest lists counts (they are the sweep's whole budget).
    """
    out: dict[tuple[str, str, str], set[str]] = {}
    for path in records.manifest_paths(runs_root):
        try:
            m = records.read_json(path)
            if m.get("budget", {}).get("stages") != stages:
                continue
            ids = loader.listed_run_ids(m)
            key = (m["tier"], m["task"], m["optimizer"])
        except records.ResultsError as e:
            raise SystemExit(f"error: cannot read sweep manifest {e}; restore it from git or delete it") from None
        except (AttributeError, KeyError, TypeError) as e:
            raise SystemExit(
                f"error: cannot read sweep manifest {path} ({type(e).__name__}: {e}); restore it from git or delete it"
            ) from None
        out.setdefault(key, set()).update(ids)
    return out


def restrict_to_sweeps(runs, allowed: dict[tuple[str, str, str], set[str]]):
    """Drop runs of a (tier, task, optimizer) that has allowed sweeps but are not in them; others stay."""
    if not allowed or not len(runs):
        return runs
    key = list(zip(runs["tier"], runs["task"], runs["optimizer"]))
    keep = [k not in allowed or rid in allowed[k] for k, rid in zip(key, runs["run_id"])]
    return runs[keep].reset_index(drop=True)


def render(results: loader.Results, runs_root: str, tier: str, stages: int | None, protocol: int | None = None) -> str:
    """The tables of ``results`` (optionally restricted to the sweeps with ``stages`` search stages, and to the
    tuning protocols up to ``protocol``: 1 the random boxes, 2 the horizon-aware Halton search)."""
    if stages:
        runs = restrict_to_sweeps(results.runs, sweep_run_ids(runs_root, stages))
        results = loader.Results(runs=runs, points=results.points[results.points["run_id"].isin(set(runs["run_id"]))])
    return tables(compute(results, protocol=protocol), tier)


def table_blocks(markdown: str) -> list[list[str]]:
    """The data rows of each of a Markdown text's per-task tables (header ``| task |``), one list per table,
    without header or separator.

    Other tables (a summary in prose, say) are not what ``claims`` prints, so they are not checked.
    """
    blocks, current = [], None
    for line in (raw.rstrip() for raw in markdown.splitlines()):
        if not line.startswith("|"):
            current = None
        elif line.startswith("| task |"):
            current = []
            blocks.append(current)
        elif current is not None and not line.startswith("|---"):
            current.append(line)
    return [b for b in blocks if b]


def table_rows(markdown: str) -> list[str]:
    """The data rows of a Markdown text's per-task tables, in order (``table_blocks`` flattened)."""
    return [row for block in table_blocks(markdown) for row in block]


def printed_tables(results: loader.Results, runs_root: str, tier: str) -> list[list[str]]:
    """Every table ``claims`` prints for ``tier`` (``all``: each tier with runs, and the all-tiers view) under
    every aggregation it offers: all stages, ``--stages 1``, ``--stages 2``, each under the newest protocol and
    under ``--protocol 1``."""
    if tier == "all":
        tiers = sorted(set(results.runs["tier"])) if len(results.runs) else []
        extra = table_blocks(render(results, runs_root, "all", None, None))
        return [t for one in tiers for t in printed_tables(results, runs_root, one)] + extra
    return [
        table
        for protocol in (None, 1)
        for stages in (None, 1, 2)
        for table in table_blocks(render(results, runs_root, tier, stages, protocol))
    ]


STAGE_CHOICES = PROTOCOL_CHOICES = (1, 2)  # search stages / tuning protocols; argparse and --check both read these
_COMMAND = re.compile(r"`(?:\S*python\S* -m )?rootbench\.leaderboard\.claims([^`]*)`")


def heading_aggregation(heading: str) -> tuple[str, int | None, int | None] | None:
    """The (tier, stages, protocol) that a Markdown heading's ```claims ...``` command prints, or None where the
    heading names no such command. A heading that names an option ``--check`` cannot bind is an error."""
    found = _COMMAND.search(heading)
    if not found:
        return None
    words, picked = found.group(1).split(), {"--tier": "quick", "--stages": None, "--protocol": None}
    allowed = {
        "--tier": (*TIER_ORDER, "all"),
        "--stages": tuple(map(str, STAGE_CHOICES)),
        "--protocol": tuple(map(str, PROTOCOL_CHOICES)),
    }
    for option, value in zip(words[::2], words[1::2] + [None] * (len(words) % 2), strict=True):
        if value not in allowed.get(option, ()):
            raise UsageError(f"heading {heading.strip()!r}: cannot bind its tables to '{found.group(1).strip()}'")
        picked[option] = value if option == "--tier" else int(value)
    return picked["--tier"], picked["--stages"], picked["--protocol"]


_TASK_ROWS = re.compile(r"the `([\w.-]+)` rows")


def heading_task(heading: str) -> str | None:
    """The task a heading says its tables hold ("..., the `cifar10-vit` rows"), or None."""
    found = _TASK_ROWS.search(heading)
    return found.group(1) if found else None


def document_sections(document: str) -> list[tuple[tuple | None, str | None, str]]:
    """The document cut at its headings, each part with the aggregation of the command its heading names and
    the task whose rows it says it holds (a ``###`` heading without them inherits its ``##`` heading's; a
    ``##`` heading without them binds nothing)."""
    sections, lines, bound, top, fenced = [], [], (None, None), (None, None), False
    for line in document.splitlines():
        fenced ^= line.startswith("```")  # a "# comment" in a code block is no heading
        level = len(line) - len(line.lstrip("#"))
        if not fenced and line.startswith("#") and line[level : level + 1] == " ":
            sections.append((*bound, "\n".join(lines)))
            lines, own = [], (heading_aggregation(line), heading_task(line))
            if level <= 2:
                top = own
            inherited = top if level > 2 else (None, None)
            bound = tuple(mine or theirs for mine, theirs in zip(own, inherited, strict=True))
        lines.append(line)
    sections.append((*bound, "\n".join(lines)))
    return [(agg, task, text) for agg, task, text in sections if table_blocks(text)]


def unprinted_rows(document: str, results: loader.Results, runs_root: str, tier: str) -> list[str]:
    """Table rows of ``document`` that the printed table they must come from does not hold.

    A table under a heading that names a ``claims`` command (``--tier long``, ``--protocol 1 --stages 2``) is
    matched only against what that command prints; any other table against everything ``claims`` prints for
    ``tier``. Within those, each table is matched with the one printed table (one tier, one aggregation, one kind
    of table) that holds most of its rows, and every row it lacks is returned. So a row counts only in the
    table it was printed in, and a table only under the command it names: a long-tier row pasted into a
    quick-tier table is named, and so is a whole ``--stages 2`` table under a heading that names ``claims``.
    Under a heading that says whose rows it holds ("the `cifar10-vit` rows"), another task's row is named too.
    An empty list means every table of the document is, verbatim, part of a table ``claims`` prints today.
    """
    rendered: dict = {}

    def printed(agg):
        if agg not in rendered:
            if agg is None:
                tables = printed_tables(results, runs_root, tier)
            else:
                tables = table_blocks(render(results, runs_root, *agg))
            rendered[agg] = [set(table) for table in tables]
        return rendered[agg]

    missing = []
    for agg, task, text in document_sections(document):
        for block in table_blocks(text):
            best = max(printed(agg), key=lambda table: len(table.intersection(block)), default=set())
            missing += [row for row in block if row not in best or (task and row.split("|")[1].strip() != task)]
    return missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument(
        "--tier",
        default=None,
        help="a tier, or all: one section per tier with runs (default quick; with --check, all)",
    )
    ap.add_argument(
        "--stages",
        type=int,
        choices=STAGE_CHOICES,
        default=None,
        help="only runs of sweeps with this many search stages, where a task/optimizer has such "
        "a sweep (e.g. 1: the 6-trial budget even where a second stage was run)",
    )
    ap.add_argument(
        "--protocol",
        type=int,
        choices=PROTOCOL_CHOICES,
        default=None,
        help="tuning protocol: 1 the first random-box sweeps, 2 the horizon-aware Halton sweeps "
        "(default: each optimizer's newest)",
    )
    ap.add_argument(
        "--check",
        metavar="FILE",
        default=None,
        help="exit 1 if a table row of FILE (e.g. RESULTS.md) is not printed, verbatim, from --runs by the "
        "claims command its section's heading names (any aggregation where it names none)",
    )
    args = ap.parse_args(argv)
    try:
        records.check_local(args.runs, "claims")
    except UsageError as e:
        print(f"claims: error: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.runs):
        print(f"claims: error: --runs {args.runs}: no such results folder", file=sys.stderr)
        return 2
    warnings = []
    results = loader.load(args.runs, warnings.append)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.check:
        try:
            with open(args.check, encoding="utf-8") as f:
                document = f.read()
        except OSError as e:
            raise SystemExit(
                f"error: cannot read {args.check} ({e.strerror}); give the path of a Markdown file"
            ) from None
        try:
            missing = unprinted_rows(document, results, args.runs, args.tier or "all")
        except UsageError as e:
            print(f"claims: error: {args.check}: {e}", file=sys.stderr)
            return 2
        for row in missing:
            print(f"not printed: {row}", file=sys.stderr)
        n = len(table_rows(document))
        if missing:
            print(
                f"error: {len(missing)} of {n} table rows in {args.check} are not what the runs in {args.runs} "
                "aggregate to for their section (its heading's claims command and task); regenerate them with "
                "that command",
                file=sys.stderr,
            )
            return 1
        print(f"ok: all {n} table rows in {args.check} are printed from {args.runs}")
        return 0
    sys.stdout.write(render(results, args.runs, args.tier or "quick", args.stages, args.protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
