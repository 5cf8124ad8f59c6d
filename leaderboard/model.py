"""The leaderboard's model: every table the pages and the claims need, computed once from the loaded runs.

Capabilities are declared by the registries, never guessed from names: a task is a CNN task when its
registered ``TaskSpec.model_kind`` is ``"cnn"``, and the root / root-free pairs are what registered
optimizers declare (``OptimizerSpec.pair`` and ``root_free``), read through ``leaderboard.declared``. A task or
optimizer found in the runs but not registered in this checkout has no declared kind, pair or root-freeness;
the site says so.
"""

from __future__ import annotations

import sys

from rootbench.harness.registry import PRECONDITIONERS
from rootbench.leaderboard import across as acr
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import comparisons as cmp
from rootbench.leaderboard import declared
from rootbench.leaderboard import load as loader
from rootbench.leaderboard import tiers as tier_agreement

CNN_KIND = "cnn"  # the TaskSpec.model_kind of tasks that get the SGD reference (claim 1)


def _warn(message: str) -> None:
    print(f"rootbench site: warning: {message}", file=sys.stderr)


def optimizer_info(names, snap: dict | None = None) -> dict:
    """Declared metadata of every optimizer in the results or the registry (``declared.optimizer_info``)."""
    return declared.optimizer_info(names, declared.snapshot() if snap is None else snap)


def task_info(names, snap: dict | None = None) -> dict:
    """Declared metadata of the tasks in the results (``declared.task_info``)."""
    return declared.task_info(names, declared.snapshot() if snap is None else snap)


def import_registries() -> None:
    """Import the optimizer and task registries (torch and every optimizer file: seconds)."""
    declared.snapshot()


def _oriented(name: str, partner: str, root_free, partner_root_free) -> tuple[str, str] | None:
    """(root, root-free) from the declarations of either side; None when neither side says which is which."""
    if root_free is True or partner_root_free is False:
        return partner, name
    if root_free is False or partner_root_free is True:
        return name, partner
    return None


def declared_pairs(opt_info: dict) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """The (root, root-free) pairs registered optimizers declare, and the subset both sides declare.

    A pair declared by both sides (``adamw.pair == "rfadamw"`` and back) is one of the benchmark's pairs and is
    shown on every task; a one-sided declaration (a variant naming its parent's partner) only where it ran.
    Order: both-sided pairs first, then by the root's preconditioner (none, diagonal, kronecker) and names.
    """
    pairs, both_sides = [], set()
    for name, info in opt_info.items():
        partner = info.get("pair")
        if not info.get("registered") or not partner:
            continue
        other = opt_info.get(partner, {})
        pair = _oriented(name, partner, info.get("root_free"), other.get("root_free"))
        if pair is None:
            continue
        if pair not in pairs:
            pairs.append(pair)
        if other.get("registered") and other.get("pair") == name:
            both_sides.add(pair)

    def order(pair):
        kind = opt_info.get(pair[0], {}).get("preconditioner")
        rank = PRECONDITIONERS.index(kind) if kind in PRECONDITIONERS else len(PRECONDITIONERS)
        return pair not in both_sides, rank, pair

    return sorted(pairs, key=order), both_sides


def newest_protocol(runs, up_to: int | None = None):
    """The runs of each (tier, task, optimizer)'s newest tuning protocol (``load.tuning_protocols``), so that a
    re-sweep under a new protocol replaces the old selection instead of mixing with it (the old runs stay on disk
    and on their run pages; ``up_to`` reproduces an older protocol's tables). Returns the kept runs and
    ``{(tier, task, optimizer): protocol}``."""
    if not len(runs) or "tuning_protocol" not in runs.columns:
        return runs, {}
    level = runs["tuning_protocol"].clip(lower=1)  # single runs sit with the first protocol's sweeps
    if up_to is not None:
        runs, level = runs[level <= up_to], level[level <= up_to]
    newest = level.groupby([runs["tier"], runs["task"], runs["optimizer"]], observed=True).transform("max")
    kept = runs[level == newest].reset_index(drop=True)
    chosen = level[level == newest].groupby([runs["tier"], runs["task"], runs["optimizer"]], observed=True).max()
    return kept, {tuple(map(str, k)): int(v) for k, v in chosen.items()}


def compute(
    results: loader.Results,
    with_registry: bool = True,
    snap: dict | None = None,
    warn=None,
    protocol: int | None = None,
) -> dict:
    """Every table the pages need, from the loaded runs and the registries' declarations.

    ``snap``: the declarations (``declared.snapshot()`` or what ``declared.Pending`` returned); read here
    when not given. ``with_registry=False``: nothing declared (no pairs, no kinds). ``protocol``: the newest
    tuning protocol to use (``newest_protocol``; default: each optimizer's newest)."""
    runs, protocols = newest_protocol(results.runs, protocol)
    summary = agg.summarize(runs, results.points)
    configs = agg.configs(summary)
    best = agg.select_best(configs)
    overview = agg.overview(summary, configs, best=best)
    names = sorted(summary["optimizer"].astype(str).unique()) if len(summary) else []
    tasks_ = sorted(summary["task"].astype(str).unique()) if len(summary) else []
    if not with_registry:
        snap = declared.empty()
    elif snap is None:
        snap = declared.Pending().get()
    for e in snap.get("errors", []):
        (warn or _warn)(e)
    opt_info = declared.optimizer_info(names, snap)
    t_info = declared.task_info(tasks_, snap)
    pairs, every_task = declared_pairs(opt_info)
    cnn = [t for t in tasks_ if t_info[t]["model_kind"] == CNN_KIND]
    model = {
        "summary": summary,
        "configs": configs,
        "best": best,
        "overview": overview,
        "points": results.points,
        "pairs": pairs,
        "root_vs_free": agg.root_vs_free(overview, pairs, cnn, every_task),
        "across": acr.across_tasks(overview, configs),
        "hardware": agg.hardware(summary),
        "opt_info": opt_info,
        "task_info": t_info,
        "cnn_tasks": cnn,
        "declared": snap,
        "tuning_protocol": protocols,
    }
    model["verdicts"] = cmp.formal_verdicts(model, warn)
    model["comparisons"] = cmp.comparisons(model, model["verdicts"])
    model["task_classes"] = cmp.task_classes(overview)
    model["tier_agreement"] = agreements(overview)
    return model


def agreements(overview):
    """Kendall tau of the optimizer rankings per task for each consecutive pair of tiers with results."""
    import pandas as pd

    pairs = tier_agreement.tier_pairs(tier_agreement.selected_tiers(overview))
    frames = [tier_agreement.agreement(overview, a, b) for a, b in pairs]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=tier_agreement.COLUMNS)


def groups(model: dict) -> list[tuple[str, list[str]]]:
    """[(tier, [task, ...])] in display order."""
    s = model["summary"]
    if s.empty:
        return []
    out = []
    for tier in sorted(s["tier"].astype(str).unique(), key=agg.tier_key):
        out.append((tier, sorted(s.loc[s["tier"] == tier, "task"].astype(str).unique())))
    return out
