"""The run a diagnostic command retrains without writing it (``eval-weights``, ``rounding``): named by
``--task``/``--opt``/``key=value`` or taken from a stored run (``--from-run``), resolved as ``bench`` resolves it."""

from __future__ import annotations

import json

from rootbench.harness.registry import UsageError


def add_run_arguments(p) -> None:
    """The arguments that name the run: ``--task``, ``--opt``, ``--seed``, ``--from-run``, ``--runs``,
    ``--tier``, ``--device``, ``--threads`` and ``key=value`` overrides."""
    p.add_argument("--task")
    p.add_argument("--opt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--from-run", metavar="RUN_ID", help="take task, optimizer, tier, seed and settings from a stored run"
    )
    p.add_argument("--runs", default="runs", help="results folder (read only, for --from-run)")
    p.add_argument("--tier", default="quick")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="hyperparameters and task settings")


def spec_from_run(runs: str, run_id: str, **config_fields):
    """The RunSpec of stored run ``run_id`` under this code (its hyperparameters and task settings)."""
    from rootbench.harness.records import find_run_file, read_record
    from rootbench.harness.resolve import resolve_args
    from rootbench.tasks import resolve_tier

    path = find_run_file(runs, run_id)
    if not path:
        raise UsageError(f"no run {run_id!r} under {runs}/; `ls {runs}/<task>/<optimizer>/` lists run ids")
    r = read_record(path).run
    stored = json.loads(r["config_json"])
    _, defaults = resolve_tier(r["task"], r["tier"])
    settings = {k: v for k, v in stored["task_config"].items() if getattr(defaults, k, v) != v}
    fields = {"tier": r["tier"], "precision": r["precision"], **config_fields}
    return resolve_args(r["task"], r["optimizer"], {**stored["hparams"], **settings}, seed=int(r["seed"]), **fields)


def spec_from_args(args, precision: str | None = None):
    """The RunSpec the arguments name; ``precision`` None keeps a stored run's (a named run: fp32). No
    step-time probe (``ref_steps`` 0): these commands trace, they do not time."""
    from rootbench.harness.config import parse_overrides
    from rootbench.harness.resolve import resolve_args

    if args.from_run:
        if args.task or args.opt or args.overrides:
            raise UsageError("--from-run takes the task, optimizer and hyperparameters from the stored run; drop them")
        given = {"precision": precision, "device": args.device, "threads": args.threads}
        given = {k: v for k, v in given.items() if v not in (None, "auto")}
        return spec_from_run(args.runs, args.from_run, ref_steps=0, **given)
    if not (args.task and args.opt):
        raise UsageError("name --task and --opt (or --from-run RUN_ID)")
    fields = dict(tier=args.tier, precision=precision or "fp32", device=args.device, threads=args.threads)
    return resolve_args(args.task, args.opt, parse_overrides(args.overrides), seed=args.seed, ref_steps=0, **fields)
