"""``rootbench regress``: a statistical gate for optimizer changes and new variants.

    rootbench regress --update-baseline --opt rfadamw      # run the suite with baseline seeds, store it
    rootbench regress --opt rfadamw                        # gate against its own stored baseline
    rootbench regress --opt my_variant [--against rfadamw] # a new variant: against its parent (registry) or OTHER

The suite (``SUITES``, versioned by ``SUITE_VERSION``) is a few short quick-tier runs on the embedded
MNIST-1D tasks at the optimizer's registered defaults, plus a step-time/state probe on fixed
parameter shapes. Rules, one per metric (``RULES``):

- quality: final validation metric; regression if the candidate's mean is worse than the
  reference's by more than the minimum effect (0.03 accuracy, 0.05 nats of loss) AND a one-sided
  Welch t-test over seeds gives p < 0.05;
- time to target: steps to the task's target (hardware-free; a miss counts as twice the budget),
  same test, regression if the mean is more than 1.5x the reference's;
- step time: the optimizer step over fused AdamW, both timed in one process on the same parameters;
  regression if the candidate's ratio exceeds the reference's by more than 30%, in its first timing
  and in two more (the smallest ratio counts: load only ever slows a step down);
- state: optimizer-state bytes per parameter, exact; regression on any increase;
- bf16-pure: regression if a candidate seed diverges where no reference seed did.

Candidate runs use other seeds than the baseline (``CANDIDATE_SEED_OFFSET``), so the test compares
two independent samples and an unchanged optimizer is not trivially identical to its baseline.
Exit codes: 0 pass, 1 regression, 2 usage or data error.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field

import pandas as pd

from rootbench.harness.config import RunConfig
from rootbench.harness.registry import UsageError

SUITE_VERSION = 2
BASELINE_DIR = os.path.join("runs", "baselines")  # = records.BASELINES_DIR under the default root
CANDIDATE_SEED_OFFSET = 1000
CONFIRM_RETRIES = 2  # a step-time regression must reproduce in this many more timings (the minimum counts)
ALPHA = 0.05  # with suite v1's smaller effect sizes this gave 2 false alarms in 20 gates; v2 raised them (README)


@dataclass(frozen=True)
class Case:
    """One configuration of the suite, run over several seeds."""

    name: str
    task: str
    settings: dict
    checks: tuple  # quality | time_to_target | divergence
    precision: str = "fp32"
    tier: str = "quick"
    baseline_seeds: int = 6
    candidate_seeds: int = 4


@dataclass(frozen=True)
class Rules:
    min_quality_drop: dict = field(default_factory=lambda: {"accuracy": 0.03, "loss": 0.05})  # absolute
    max_steps_ratio: float = 1.5
    max_step_time_ratio: float = 1.30
    alpha: float = ALPHA


RULES = Rules()
# a fine cadence (steps-to-target is read at eval points) and a constant learning rate: the gate's own
# protocol, pinned so that a change of a task's quick-tier schedule does not move the stored baselines
_STEPS = {"steps": 1000, "eval_every": 50, "lr_schedule": "constant"}
SUITES = {
    # chosen so that one optimizer's gate takes a few minutes on 2 cores: see README "Regression gate"
    "default": (
        Case("mlp", "mnist1d-mlp", _STEPS, ("quality", "time_to_target")),
        Case("cnn", "mnist1d-cnn", _STEPS, ("quality", "time_to_target")),
        Case(
            "mlp-bf16-pure",
            "mnist1d-mlp",
            _STEPS,
            ("divergence",),
            precision="bf16-pure",
            baseline_seeds=2,
            candidate_seeds=2,
        ),
    ),
    # a half-minute version for rootbench's own tests of the gate (the default suite's MLP case)
    "smoke": (
        Case("mlp", "mnist1d-mlp", _STEPS, ("quality", "time_to_target"), baseline_seeds=3, candidate_seeds=3),
        Case(
            "mlp-bf16-pure",
            "mnist1d-mlp",
            {"steps": 300, "eval_every": 50, "lr_schedule": "constant"},
            ("divergence",),
            precision="bf16-pure",
            baseline_seeds=1,
            candidate_seeds=1,
        ),
    ),
}
PROBE_SHAPES = ((512, 512), (512, 512), (512,), (256, 512, 3))  # 1-D, 2-D, 3-D; ~0.9M parameters


# ---------------------------------------------------------------------------------------------
# running the suite


def seeds_for(case: Case, role: str, offset: int = 0) -> list[int]:
    if role == "baseline":
        return list(range(case.baseline_seeds))
    return [CANDIDATE_SEED_OFFSET + offset + i for i in range(case.candidate_seeds)]


def case_spec(opt: str, case: Case, seed: int):
    """The resolved run of one case and seed (at the optimizer's registered defaults)."""
    from rootbench.harness.resolve import resolve_run

    return resolve_run(
        case.task,
        opt,
        RunConfig(tier=case.tier, seed=seed, precision=case.precision, task_settings=dict(case.settings), ref_steps=0),
    )


def run_suite(opt: str, suite: str, role: str, runs_root: str, seed_offset: int = 0, log=print) -> pd.DataFrame:
    """Run (or fetch from the cache) every case x seed; returns one row per run (with its ``path``).

    A stored run that cannot be read is an error naming the file (exit 2), never a regression.
    """
    from rootbench.harness.execute import get_or_run

    summaries = []
    for case in SUITES[suite]:
        for seed in seeds_for(case, role, seed_offset):
            out = get_or_run(case_spec(opt, case, seed), runs_root, in_process=True)  # memory is not gated per run
            log(f"  {case.name} seed {seed}: {'cached' if out.cached else out.status}")
            summaries.append({**summarize_run(out.record, case), "path": out.path})
    return pd.DataFrame(summaries)


def _matches(rec, case: Case, opt: str) -> bool:
    r = rec.run
    return (
        r["task"] == case.task
        and r["optimizer"] == opt
        and r["tier"] == case.tier
        and r["precision"] == case.precision
        and all(r.get(f"task_{k}") == v for k, v in case.settings.items())
    )


def load_baseline(root: str, opt: str, suite: str) -> pd.DataFrame:
    """The stored baseline runs of ``opt``, found by their content (task, settings, precision, seed).

    Not by run id: the id hashes the optimizer's source, and the gate exists to judge a changed source
    against the stored runs of the old one. Raises ``UsageError`` when a case or seed is missing.
    """
    from rootbench.harness.records import find_runs, read_record

    probe_row = load_probe(root, opt)
    if probe_row is None:
        raise UsageError(f"{opt} has no baseline under {root}/; run `rootbench regress --update-baseline --opt {opt}`")
    if int(probe_row.get("suite_version", -1)) != SUITE_VERSION:
        raise UsageError(
            f"the baseline of {opt} is from suite version {probe_row.get('suite_version')}, not "
            f"{SUITE_VERSION}; run `rootbench regress --update-baseline --opt {opt}`"
        )
    recs = [read_record(p) for p in find_runs(root) if os.path.basename(os.path.dirname(p)) == opt]
    summaries = []
    for case in SUITES[suite]:
        found = {int(rec["seed"]): rec for rec in recs if _matches(rec, case, opt)}
        for seed in seeds_for(case, "baseline"):
            if seed not in found:
                raise UsageError(
                    f"the baseline of {opt} lacks case {case.name!r} seed {seed}; run "
                    f"`rootbench regress --update-baseline --opt {opt} --suite {suite}`"
                )
            summaries.append(summarize_run(found[seed], case))
    return pd.DataFrame(summaries)


def summarize_run(rec, case: Case) -> dict:
    r = rec.run
    metric = r["metric_name"]
    final = rec.final("val", metric) if r["status"] == "ok" else float("nan")
    budget = int(r["task_steps"])
    steps = r.get("steps_to_target")
    reached = steps is not None and not (isinstance(steps, float) and math.isnan(steps))
    return {
        "case": case.name,
        "task": r["task"],
        "optimizer": r["optimizer"],
        "seed": int(r["seed"]),
        "precision": r["precision"],
        "status": r["status"],
        "metric": metric,
        "higher_is_better": bool(r["higher_is_better"]),
        "final_val": final,
        "steps_to_target": float(steps) if reached else 2.0 * budget,
        "run_id": r["run_id"],
    }


def probe(opt: str, reference: str | None = None, repeats: int = 5) -> dict:
    """Step time over fused AdamW and exact state bytes per parameter on ``PROBE_SHAPES``."""
    import torch

    from rootbench.harness import measure
    from rootbench.optimizers import create_optimizer, get_optimizer_spec

    def one(name):
        spec = get_optimizer_spec(name)
        extra = {"batch_size": 128} if spec.needs_batch_size else {}
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in PROBE_SHAPES]
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 1e-3
        opt_obj = create_optimizer(name, params, **extra)
        opt_obj.step()
        state_bpp = measure.optimizer_state_bytes(opt_obj) / sum(p.numel() for p in params)
        T = spec.defaults.get(spec.period_hparam, 1) if spec.period_hparam else 1
        timing = measure.step_time_ratio(
            lambda ps: create_optimizer(name, ps, **extra),
            params,
            steps=20,
            period=T if isinstance(T, int) and T > 0 else 1,
            repeats=repeats,
        )
        return {"optimizer": name, "state_bytes_per_param": state_bpp, **timing}

    out = {"candidate": one(opt)}
    if reference is not None:
        out["reference"] = one(reference)
    return out


def confirm_step_time(
    opt: str,
    reference: str | None,
    probes: dict,
    ref_probe: dict,
    rules: Rules = RULES,
    retries: int = CONFIRM_RETRIES,
    log=print,
) -> dict:
    """The candidate's probe, re-timed up to ``retries`` times while its step-time ratio breaks the rule.

    Interference from other processes only ever makes a step slower, so the smallest of the repeated
    ratios is the estimate; a real slowdown (the planted 2x step) survives every retry. The baseline's
    stored ratio cannot be re-timed (it belongs to the code before the change).
    """
    cand = dict(probes["candidate"])
    for _ in range(retries):
        if cand["step_time_ratio_adamw"] <= rules.max_step_time_ratio * ref_probe["step_time_ratio_adamw"]:
            break
        log(f"step-time ratio {cand['step_time_ratio_adamw']:.3g} breaks the rule; timing it again")
        again = probe(opt, reference)["candidate"]
        if again["step_time_ratio_adamw"] < cand["step_time_ratio_adamw"]:
            cand = again
    return cand


# ---------------------------------------------------------------------------------------------
# the comparison (pure: data frames in, checks out)


def welch_one_sided(worse, better) -> float:
    """p-value of H1: mean(worse) > mean(better) (Welch's t-test); 1.0 when it cannot be computed."""
    from rootbench.harness.stats import welch

    p = welch(list(worse), list(better), alternative="greater").p
    return 1.0 if math.isnan(p) else p


def compare(
    candidate: pd.DataFrame,
    reference: pd.DataFrame,
    cand_probe: dict,
    ref_probe: dict,
    rules: Rules = RULES,
    suite: str = "default",
) -> list[dict]:
    """One check per (case, rule): metric, reference, candidate, p-value, verdict and the rule in words."""
    checks = []
    for case in SUITES[suite]:
        c = candidate[candidate["case"] == case.name]
        r = reference[reference["case"] == case.name]
        if c.empty or r.empty:
            raise UsageError(f"case {case.name!r} has no {'candidate' if c.empty else 'reference'} runs")
        higher = bool(r["higher_is_better"].iloc[0])
        metric = r["metric"].iloc[0]
        if "quality" in case.checks:
            c_fail, r_fail = int((c["status"] != "ok").sum()), int((r["status"] != "ok").sum())
            checks.append(
                _check(
                    case.name,
                    "failed runs",
                    r_fail,
                    c_fail,
                    None,
                    c_fail > r_fail,
                    "more failed or diverged seeds than the reference",
                    n=(len(r), len(c)),
                )
            )
            cv, rv = c["final_val"].dropna(), r["final_val"].dropna()
            drop = (rv.mean() - cv.mean()) if higher else (cv.mean() - rv.mean())
            p = welch_one_sided(-cv if higher else cv, -rv if higher else rv)
            min_drop = rules.min_quality_drop.get(metric, rules.min_quality_drop["loss"])
            bad = drop > min_drop and p < rules.alpha
            checks.append(
                _check(
                    case.name,
                    f"final val {metric}",
                    rv.mean(),
                    cv.mean(),
                    p,
                    bad,
                    f"worse by > {min_drop:g} and one-sided Welch p < {rules.alpha:g}",
                    n=(len(rv), len(cv)),
                )
            )
        if "time_to_target" in case.checks:
            cv, rv = c["steps_to_target"], r["steps_to_target"]
            ratio = cv.mean() / rv.mean() if rv.mean() > 0 else math.inf
            p = welch_one_sided(cv, rv)
            bad = ratio > rules.max_steps_ratio and p < rules.alpha
            checks.append(
                _check(
                    case.name,
                    "steps to target",
                    rv.mean(),
                    cv.mean(),
                    p,
                    bad,
                    f"> {rules.max_steps_ratio:g}x the reference and one-sided Welch p < {rules.alpha:g}",
                    n=(len(rv), len(cv)),
                )
            )
        if "divergence" in case.checks:
            c_div = int((c["status"] == "diverged").sum())
            r_div = int((r["status"] == "diverged").sum())
            bad = c_div > 0 and r_div == 0
            checks.append(
                _check(
                    case.name,
                    f"{case.precision} divergences",
                    r_div,
                    c_div,
                    None,
                    bad,
                    "any divergence where the reference had none",
                    n=(len(r), len(c)),
                )
            )
    ratio_c, ratio_r = cand_probe["step_time_ratio_adamw"], ref_probe["step_time_ratio_adamw"]
    checks.append(
        _check(
            "probe",
            "step time / fused AdamW",
            ratio_r,
            ratio_c,
            None,
            ratio_c > rules.max_step_time_ratio * ratio_r,
            f"> {rules.max_step_time_ratio:g}x the reference's ratio",
        )
    )
    s_c, s_r = cand_probe["state_bytes_per_param"], ref_probe["state_bytes_per_param"]
    checks.append(_check("probe", "state bytes / param", s_r, s_c, None, s_c > s_r + 1e-9, "any increase (exact)"))
    return checks


def _check(case, metric, ref, cand, p, bad, rule, n=None) -> dict:
    return {
        "case": case,
        "metric": metric,
        "reference": ref,
        "candidate": cand,
        "p_value": p,
        "verdict": "REGRESSION" if bad else "pass",
        "rule": rule,
        "n": n,
    }


def to_markdown(checks: list[dict], title: str) -> str:
    def fmt(x):
        if x is None:
            return ""
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)

    lines = [
        f"### {title}",
        "",
        "| case | metric | reference | candidate | p | n (ref, cand) | verdict | rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        verdict = "**REGRESSION**" if c["verdict"] != "pass" else "pass"
        n = f"{c['n'][0]}, {c['n'][1]}" if c["n"] else ""
        lines.append(
            f"| {c['case']} | {c['metric']} | {fmt(c['reference'])} | {fmt(c['candidate'])} | "
            f"{fmt(c['p_value'])} | {n} | {verdict} | {c['rule']} |"
        )
    failed = [c for c in checks if c["verdict"] != "pass"]
    lines += [
        "",
        f"**{len(failed)} regression(s)**: " + ", ".join(f"{c['case']}: {c['metric']}" for c in failed)
        if failed
        else "**pass**: no regression",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# baselines on disk


def baseline_probe_path(root: str, opt: str) -> str:
    from rootbench.harness.registry import check_name

    return os.path.join(root, "probes", f"{check_name('optimizer', opt)}.json")


def save_probe(root: str, opt: str, result: dict) -> None:
    import torch

    from rootbench.harness import records
    from rootbench.harness.provenance import provenance

    row = {**result, "suite_version": SUITE_VERSION, "shapes": repr(PROBE_SHAPES), **provenance(torch.device("cpu"))}
    records.write_json(row, baseline_probe_path(root, opt))


def load_probe(root: str, opt: str) -> dict | None:
    """The stored probe of ``opt``'s baseline, or None; an unreadable file is a ``ResultsError`` naming it."""
    from rootbench.harness import records

    path = baseline_probe_path(root, opt)
    if not os.path.exists(path):
        return None
    probe_row = records.read_json(path)
    needed = ("suite_version", "step_time_ratio_adamw", "state_bytes_per_param")
    if not isinstance(probe_row, dict) or any(k not in probe_row for k in needed):
        raise records.ResultsError(
            f"{path}: not a baseline probe (needs {', '.join(needed)}); "
            f"rerun `rootbench regress --update-baseline --opt {opt}`"
        )
    return probe_row


def has_baseline(root: str, opt: str) -> bool:
    return load_probe(root, opt) is not None


# ---------------------------------------------------------------------------------------------
# CLI


def changed_optimizers(files: list[str]) -> list[str]:
    """Registered optimizers whose code is among ``files``: the same closure as the run identity
    (``harness.identity``): the optimizer's module, every rootbench module it imports, and the runner's. An
    edit to a shared helper such as ``optimizers/_compiled.py`` gates every optimizer that uses it; an edit
    to the runner or the measurements gates them all.
    """
    from rootbench.harness import identity
    from rootbench.optimizers import get_optimizer_spec, list_optimizers

    wanted = {os.path.realpath(f) for f in files}
    out = []
    for name in list_optimizers():
        code = identity.closure([get_optimizer_spec(name).source_file], identity.RUNNER_MODULES)
        if any(os.path.realpath(f) in wanted for f in code):
            out.append(name)
    return out


def cmd_regress(args) -> int:
    from rootbench.harness import records
    from rootbench.optimizers import get_optimizer_spec

    if args.changed_files is not None:
        print(" ".join(changed_optimizers(args.changed_files)))
        return 0
    if not args.opt:
        raise UsageError("regress needs --opt NAME (or --changed-files FILE ...)")
    spec = get_optimizer_spec(args.opt)
    if args.against:
        get_optimizer_spec(args.against)
    if args.suite not in SUITES:
        raise UsageError(f"unknown suite {args.suite!r}; choose one of {', '.join(SUITES)}")
    log = (lambda *a: print(*a, file=sys.stderr)) if not args.quiet else (lambda *a: None)

    if args.update_baseline:
        records.check_writable(args.baselines)
        log(f"baseline of {args.opt} (suite {args.suite} v{SUITE_VERSION}) -> {args.baselines}")
        new = run_suite(args.opt, args.suite, "baseline", args.baselines, log=log)
        save_probe(args.baselines, args.opt, probe(args.opt)["candidate"])
        keep = {os.path.abspath(p) for p in new["path"]}
        for path in records.find_runs(args.baselines):  # runs of this optimizer's older code are replaced
            if os.path.basename(os.path.dirname(path)) == args.opt and os.path.abspath(path) not in keep:
                records.remove(path)
        print(f"baseline of {args.opt} written under {args.baselines}/; commit it")
        return 0

    records.check_writable(args.runs)
    reference = args.against or (None if has_baseline(args.baselines, args.opt) else spec.parent)
    if reference is None and not has_baseline(args.baselines, args.opt):
        raise UsageError(
            f"{args.opt} has no baseline under {args.baselines}/ and declares no parent; "
            f"run `rootbench regress --update-baseline --opt {args.opt}` or pass --against OTHER"
        )
    ref_name = reference or args.opt
    if reference is not None and not has_baseline(args.baselines, reference):
        raise UsageError(
            f"the reference {reference} has no baseline under {args.baselines}/; "
            f"run `rootbench regress --update-baseline --opt {reference}` first"
        )
    log(f"candidate {args.opt} vs reference {ref_name} (suite {args.suite} v{SUITE_VERSION})")
    # a corrupt baseline or cached run raises ResultsError (a UsageError): exit 2 naming the file, never
    # exit 1, which would report a regression that is not there
    ref_runs = load_baseline(args.baselines, ref_name, args.suite)
    cand_runs = run_suite(args.opt, args.suite, "candidate", args.runs, seed_offset=args.seed_offset, log=log)
    probes = probe(args.opt, reference)  # a different reference is timed live, in this process
    ref_probe = probes.get("reference") or load_probe(args.baselines, args.opt)
    probes["candidate"] = confirm_step_time(args.opt, reference, probes, ref_probe, log=log)
    checks = compare(cand_runs, ref_runs, probes["candidate"], ref_probe, suite=args.suite)
    md = to_markdown(
        checks,
        f"rootbench regress: {args.opt} vs {ref_name} "
        f"({'own baseline' if reference is None else 'reference'}; suite {args.suite} v{SUITE_VERSION})",
    )
    print(md)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(md + "\n")
    return 1 if any(c["verdict"] != "pass" for c in checks) else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "regress",
        help="gate an optimizer against its baseline (exit 1 on a regression)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--opt", help="the optimizer to gate")
    p.add_argument("--against", help="compare with this optimizer's baseline instead")
    p.add_argument("--update-baseline", action="store_true", help="run the suite with baseline seeds and store it")
    p.add_argument("--suite", default="default", help=f"one of {', '.join(SUITES)}")
    p.add_argument("--baselines", default=BASELINE_DIR, help="where baselines live (committed)")
    p.add_argument("--runs", default=os.path.join(".rootbench", "regress-runs"), help="candidate runs (a cache)")
    p.add_argument("--seed-offset", type=int, default=0, help="shift the candidate seeds (false-alarm studies)")
    p.add_argument("--markdown", help="append the result table as Markdown to this file (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--changed-files", nargs="*", help="print the optimizers registered in these files and exit")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_regress)
