"""The task registry: every module in this package registers its tasks on import.

    >>> from tasks import list_tasks, create_task
    >>> task = create_task("mnist1d-mlp", tier="smoke")

Each task has three tiers: ``smoke`` (seconds, for tests), ``quick`` (minutes on a 2-core CPU, real
data) and ``full`` (the published protocol, for a GPU). Tasks on which the paper's claims are tested add a
``long`` tier: long enough for the claim's regime, at most 10 minutes per run on a 2-core CPU.
"""

from __future__ import annotations

import os

from rootbench.harness.registry import (
    TASKS,
    TIERS,
    RegistryError,
    TaskSpec,
    discover,
    register_task,
    tier_config,
    unknown_name_error,
)
from rootbench.tasks._base import ArrayTask, Task, TierConfig, replace_config

__all__ = [
    "list_tasks",
    "create_task",
    "get_task_spec",
    "register_task",
    "data_root",
    "check_data",
    "data_status",
    "Task",
    "ArrayTask",
    "TierConfig",
    "TaskSpec",
    "RegistryError",
    "TIERS",
]

DATA_ENV = "ROOTBENCH_DATA"


def data_root() -> str:
    """The one data folder: ``$ROOTBENCH_DATA``, else ``~/.cache/rootbench/data``."""
    return os.path.abspath(os.path.expanduser(os.environ.get(DATA_ENV) or "~/.cache/rootbench/data"))


def list_tasks() -> list[str]:
    discover(__name__)
    return sorted(TASKS)


def get_task_spec(name: str) -> TaskSpec:
    discover(__name__)
    if name not in TASKS:
        raise unknown_name_error("task", name, sorted(TASKS))
    return TASKS[name]


def resolve_tier(name: str, tier: str = "quick", **overrides):
    """The tier config of ``name`` with checked overrides (no data is loaded)."""
    spec = get_task_spec(name)
    return spec, replace_config(tier_config(spec, tier), overrides)


def check_data(name: str, tier: str = "quick", **overrides) -> str:
    """Where the data of ``name`` at ``tier`` would come from, without reading it.

    Raises ``tasks.data.DataMissingError`` (a ``RegistryError``: the CLI exits 2 and writes nothing)
    when the data set is neither in the data root nor downloadable. Generated data needs no check.
    """
    from rootbench.tasks.data import require

    _, config = resolve_tier(name, tier, **overrides)
    dataset = getattr(config, "dataset", None)
    return "generated" if dataset is None else require(dataset)


def data_status(name: str, tier: str) -> str:
    """``<data set> <- <local source or 'not in the data root'>`` for listings (no network, never raises)."""
    from rootbench.tasks.data import status

    dataset = getattr(get_task_spec(name).tiers[tier], "dataset", None)
    if dataset is None or dataset == "synthetic":
        return "generated" if dataset is None else "synthetic stand-in"
    return f"{dataset} <- {status(dataset)}"


def create_task(name: str, tier: str = "quick", **overrides) -> Task:
    """Build task ``name`` at ``tier``; ``overrides`` replace fields of its tier config."""
    spec, config = resolve_tier(name, tier, **overrides)
    return spec.build(spec, tier, config)
