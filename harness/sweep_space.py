"""A sweep's search space (``rootbench sweep``, module doc of ``harness/sweep.py``): the optimizer's declared
space resolved for the run's length, the stage-2 narrowing around the best trials, the paper's published
configuration as a fixed trial, and a local search seeded from another tier's sweep (``--around``)."""

from __future__ import annotations

import math

from rootbench.harness import search
from rootbench.harness.registry import UsageError

TOP_FRACTION, TOP_MIN = 0.2, 3  # stage 2 narrows around the top max(3, ceil(N/5)) stage-1 trials
WIDEN = 0.1  # ... widened by this fraction of the declared (log-)width on each side
PROTOCOL = (
    f"two-stage quasi-random search ({search.SAMPLER}); ranges resolved for the run's length (horizon "
    "dimensions); the paper's published configuration for the task's model kind as one more stage-1 "
    f"trial where there is one; stage 2 narrows to the top max({TOP_MIN}, ceil({TOP_FRACTION}*N)) ok "
    f"stage-1 trials widened by {WIDEN:g} of the width; trials at run seed 0; selection on the final "
    f"validation metric among ok trials whose final warm-start share is at most {search.WARM_START_LIMIT:g}; "
    "the selected config rerun with seeds 0..K-1"
)


def search_space(opt_spec, pinned: dict, steps: int | None = None, period: int = 1) -> dict:
    """The optimizer's declared search space without the pinned (``key=value``) hyperparameters; with
    ``steps``, resolved for a run of that length (horizon dimensions become concrete ranges)."""
    space = {k: search.check_dim(k, v) for k, v in opt_spec.search_space.items() if k not in pinned}
    return search.resolve(space, steps, period) if steps is not None else space


def top_k(n_stage1: int) -> int:
    return max(TOP_MIN, math.ceil(TOP_FRACTION * n_stage1))


def narrow_space(space: dict, best: list[dict]) -> dict:
    """Stage-2 ranges: per dimension, the span of the ``best`` configs, widened and clipped (see module doc)."""
    return search.narrow(space, best, WIDEN)


def published_trial(opt_spec, task_spec, pinned: dict) -> dict | None:
    """The paper's best configuration for this task's model kind (declared on the optimizer), minus pins."""
    config = opt_spec.published.get(task_spec.model_kind)
    if not config:
        return None
    return {k: v for k, v in config.items() if k not in pinned and k in opt_spec.defaults}


SEEDED_PROTOCOL = (
    "; stage 1 seeded from the {tier} tier's sweep (--around {tier}): ranges narrowed around its top "
    f"max({TOP_MIN}, ceil({TOP_FRACTION}*N)) eligible trials, ranked on that tier's final validation value and "
    "carried to this run's length (horizon rates keep their time constant's share of the run), widened by "
    f"{WIDEN:g} of the width; its selection, carried likewise, is one more fixed trial; this sweep selects on its "
    "own validation runs only"
)


def seed_manifest(root: str, task: str, optimizer: str, tier: str, own_tier: str, precision: str) -> dict:
    """The sweep of ``task`` / ``optimizer`` at ``tier`` that seeds a local search (``--around tier``): the
    one with the most trials (then the latest) among protocol-2 manifests at ``precision`` with a selection."""
    from rootbench.harness import records
    from rootbench.harness.registry import tier_config
    from rootbench.tasks import get_task_spec

    if tier == own_tier:
        raise UsageError(f"--around {tier}: name another tier than the sweep's own ({own_tier})")
    tier_config(get_task_spec(task), tier)  # a tier this task lacks fails with the tasks that have it
    found = [
        m
        for m in records.read_manifests(root, task, optimizer)
        if m.get("tier") == tier
        and m.get("precision") == precision
        and m.get("selected")
        and m.get("manifest_version", 1) >= 2
    ]
    if not found:
        raise UsageError(
            f"--around {tier}: no finished {tier}-tier sweep of {optimizer} on {task} at {precision} in {root}; "
            f"run rootbench sweep --task {task} --opt {optimizer} --tier {tier} first"
        )
    return max(found, key=lambda m: (m["budget"]["trials"], m["last_invocation"]["finished_at"]))


def seeded_space(space: dict, declared: dict, source: dict, steps: int, period: int, pinned: dict) -> tuple:
    """(stage-1 space, ``seeded_from`` record): ``space`` (resolved for ``steps``) narrowed around the top
    eligible trials of ``source`` (another tier's manifest, ranked on its validation values), each carried to
    ``steps`` (``search.carry``); the record names them and the carried selection (a fixed trial)."""
    n_stage1 = sum(t["stage"] == 1 for t in source["trials"])
    ranked = sorted((t for t in source["trials"] if t.get("eligible")), key=lambda t: t["rank"])
    best = ranked[: top_k(n_stage1)]
    src_steps = int(source["search_space"]["resolved_for_steps"])
    src_period = int(source["search_space"].get("period", 1))

    def carried(hparams: dict) -> dict:
        config = {**source.get("pinned", {}), **hparams}
        config = search.carry(declared, config, src_steps, steps, src_period, period)
        return {k: v for k, v in config.items() if k in space and k not in pinned}

    configs = [carried(t["hparams"]) for t in best]
    record = {
        "tier": source["tier"],
        "sweep_id": source["sweep_id"],
        "resolved_for_steps": src_steps,
        "run_ids": [t["run_id"] for t in best],
        "carried": configs,
        "selected_run_id": source["selected"]["run_id"],
        "selected": carried(source["selected"]["hparams"]),
    }
    return narrow_space(space, configs), record
