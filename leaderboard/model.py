"""The leaderboard's model: every table the pages and the claims need, computed once from the loaded runs.

Capabilities are declared by the registries, never guessed from names: a task is a CNN task when its
registered ``TaskSpec.model_kind`` is ``"cnn"``, and the root / root-free pairs are what registered
optimizers declare (``OptimizerSpec.pair`` and ``root_free``). A task or optimizer found in the runs but not
registered in this checkout has no declared kind, pair or root-freeness; the site says so.
"""
from __future__ import annotations

import sys

from rootbench.harness.registry import PRECONDITIONERS
from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import load as loader

CNN_KIND = "cnn"  # the TaskSpec.model_kind of tasks that get the SGD reference (claim 1)


def _warn(message: str) -> None:
    print(f"rootbench site: warning: {message}", file=sys.stderr)


def optimizer_info(names) -> dict:
    """Declared metadata of every optimizer in the results or the registry (the site builds even when an
    optimizer is no longer registered: it is then listed with ``registered`` False and nothing declared)."""
    info = {}
    try:
        from rootbench.optimizers import get_optimizer_spec, list_optimizers

        registered = set(list_optimizers())
    except Exception as e:  # noqa: BLE001 - a broken optimizer file must not break the site
        registered, get_optimizer_spec = set(), None
        _warn(f"optimizer registry unavailable ({type(e).__name__}: {e})")
    in_results = set(names)
    for name in sorted(in_results | registered):
        spec = None
        if name in registered:
            try:
                spec = get_optimizer_spec(name)
            except Exception:  # noqa: BLE001
                spec = None
        info[name] = {"registered": spec is not None, "description": getattr(spec, "description", ""),
                      "paper": getattr(spec, "paper", ""), "family": getattr(spec, "family", ""),
                      "root_free": getattr(spec, "root_free", None), "pair": getattr(spec, "pair", None),
                      "preconditioner": getattr(spec, "preconditioner", None), "in_results": name in in_results}
    return info


def task_info(names) -> dict:
    """Declared metadata of the tasks in the results; ``model_kind`` is None for a task not registered here."""
    info = {}
    try:
        from rootbench.tasks import get_task_spec
    except Exception:  # noqa: BLE001
        get_task_spec = None
    for name in names:
        spec = None
        if get_task_spec is not None:
            try:
                spec = get_task_spec(name)
            except Exception:  # noqa: BLE001
                spec = None
        info[name] = {"description": getattr(spec, "description", ""), "family": getattr(spec, "family", ""),
                      "model_kind": getattr(spec, "model_kind", None), "registered": spec is not None}
    return info


def import_registries() -> None:
    """Import the optimizer and task registries (torch and every optimizer file: seconds), so that a
    thread can do it while the run files are being read."""
    try:
        from rootbench.optimizers import list_optimizers
        from rootbench.tasks import list_tasks

        list_optimizers()
        list_tasks()
    except Exception:  # noqa: BLE001 - optimizer_info reports registry problems itself
        pass


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


def compute(results: loader.Results, with_registry: bool = True) -> dict:
    """Every table the pages need, from the loaded runs and the registries' declarations."""
    summary = agg.summarize(results.runs, results.points)
    configs = agg.configs(summary)
    best = agg.select_best(configs)
    overview = agg.overview(summary, configs, best=best)
    names = sorted(summary["optimizer"].astype(str).unique()) if len(summary) else []
    tasks_ = sorted(summary["task"].astype(str).unique()) if len(summary) else []
    opt_info = optimizer_info(names) if with_registry else {n: {"registered": False, "in_results": True}
                                                            for n in names}
    t_info = task_info(tasks_) if with_registry else {n: {"description": "", "family": "", "model_kind": None,
                                                          "registered": False} for n in tasks_}
    pairs, every_task = declared_pairs(opt_info)
    cnn = [t for t in tasks_ if t_info[t]["model_kind"] == CNN_KIND]
    return {"summary": summary, "configs": configs, "best": best, "overview": overview, "points": results.points,
            "pairs": pairs, "root_vs_free": agg.root_vs_free(overview, pairs, cnn, every_task),
            "across": agg.across_tasks(overview, configs), "hardware": agg.hardware(summary),
            "opt_info": opt_info, "task_info": t_info, "cnn_tasks": cnn}


def groups(model: dict) -> list[tuple[str, list[str]]]:
    """[(tier, [task, ...])] in display order."""
    s = model["summary"]
    if s.empty:
        return []
    out = []
    for tier in sorted(s["tier"].astype(str).unique(), key=agg.tier_key):
        out.append((tier, sorted(s.loc[s["tier"] == tier, "task"].astype(str).unique())))
    return out
