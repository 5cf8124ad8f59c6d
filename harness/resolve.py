"""A run, resolved once: names and ``key=value`` settings in, one frozen ``RunSpec`` out.

Every command (bench, sweep, regress) and every test resolves a run here, at the edge, and passes the
value on; nothing downstream re-reads names or re-checks values. Resolving loads no data and starts no
worker: it looks the task and optimizer up in their registries, checks every hyperparameter and tier
setting (unknown keys, wrong types, out-of-range values raise ``UsageError``), and computes the run id
from the resolved configuration and the hash of all code the run executes (``harness.identity``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rootbench.harness import identity
from rootbench.harness.config import RunConfig
from rootbench.harness.registry import (
    OptimizerSpec,
    TaskSpec,
    UsageError,
    check_hparam_values,
    dataclass_defaults,
    resolve_hparams,
)


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run, checked; ``run_id`` names it in the store."""

    task: TaskSpec
    optimizer: OptimizerSpec
    tier_config: Any  # the task's tier dataclass with overrides applied
    hparams: Mapping[str, Any]  # every hyperparameter, defaults included (batch_size excluded: it is the task's)
    config: RunConfig  # tier, seed, precision and the execution knobs (time limit, device, threads)
    identity: Mapping[str, Any]
    run_id: str

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def optimizer_name(self) -> str:
        return self.optimizer.name

    @property
    def tier(self) -> str:
        return self.config.tier

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def precision(self) -> str:
        return self.config.precision

    @property
    def batch_size(self) -> int:
        return int(self.tier_config.batch_size)

    def optimizer_kwargs(self) -> dict:
        """What ``create_optimizer`` gets: the hyperparameters, plus B where the method declares it needs it."""
        extra = {"batch_size": self.batch_size} if self.optimizer.needs_batch_size else {}
        return {**self.hparams, **extra}

    def replace(self, **changes) -> RunSpec:
        """The same run with other config fields (``seed=1``, ``precision="bf16-pure"``, ``hparams={...}``)."""
        return resolve_run(self.task_name, self.optimizer_name, self.config.replace(**changes))

    def request(self) -> tuple[str, str, RunConfig]:
        """Names and config: what a worker process needs to resolve the same spec again (specs hold functions)."""
        return self.task_name, self.optimizer_name, self.config


def split_overrides(task_name: str, optimizer_name: str, tier: str, overrides: dict) -> tuple[dict, dict]:
    """Sort ``key=value`` overrides into optimizer hyperparameters and task settings."""
    from rootbench.harness.registry import tier_config
    from rootbench.optimizers import get_optimizer_spec
    from rootbench.tasks import get_task_spec

    opt_keys = {k for k in get_optimizer_spec(optimizer_name).defaults if k != "batch_size"}
    task_keys = set(dataclass_defaults(tier_config(get_task_spec(task_name), tier)))
    hparams, settings = {}, {}
    for key, value in overrides.items():
        if key in opt_keys:
            hparams[key] = value
        elif key in task_keys:
            settings[key] = value
        else:
            close = difflib.get_close_matches(key, sorted(opt_keys | task_keys), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UsageError(
                f"unknown setting {key!r}.{hint} Hyperparameters of {optimizer_name}: {', '.join(sorted(opt_keys))}; "
                f"task settings of {task_name}: {', '.join(sorted(task_keys))}"
            )
    return hparams, settings


def resolve_run(task_name: str, optimizer_name: str, config: RunConfig | None = None) -> RunSpec:
    """The one place a run is resolved; raises ``UsageError`` on any bad name or value."""
    from rootbench.optimizers import get_optimizer_spec
    from rootbench.tasks import resolve_tier

    config = config or RunConfig()
    opt_spec = get_optimizer_spec(optimizer_name)
    hparams = resolve_hparams(opt_spec, config.hparams)
    task_spec, tier_config = resolve_tier(task_name, config.tier, **config.task_settings)
    check_hparam_values(opt_spec, hparams, tier_config.batch_size)
    _dry_construct(
        opt_spec, {**hparams, **({"batch_size": tier_config.batch_size} if opt_spec.needs_batch_size else {})}
    )
    identity_ = {
        "task": task_name,
        "tier": config.tier,
        "task_config": dataclass_defaults(tier_config),
        "optimizer": optimizer_name,
        "hparams": hparams,
        "seed": config.seed,
        "precision": config.precision,
        "optimizer_source": opt_spec.source_hash,
        "task_source": task_spec.source_hash,
        "code": identity.code_hash([opt_spec.source_file, task_spec.source_file]),
    }
    if config.time_limit is not None:
        identity_["time_limit"] = config.time_limit
    rid = identity.run_hash(identity_)
    return RunSpec(
        task=task_spec,
        optimizer=opt_spec,
        tier_config=tier_config,
        hparams=MappingProxyType(dict(hparams)),
        config=config,
        identity=MappingProxyType(identity_),
        run_id=rid,
    )


def _dry_construct(spec: OptimizerSpec, kwargs: dict) -> None:
    """Build the optimizer on a 2x2 layer, so values its own checks reject fail now, not in a worker."""
    import torch

    from rootbench.optimizers import create_optimizer

    try:
        create_optimizer(spec.name, torch.nn.Linear(2, 2), **kwargs)
    except UsageError:
        raise
    except (ValueError, TypeError, RuntimeError, AssertionError) as e:
        raise UsageError(f"optimizer {spec.name} rejects its hyperparameters: {e}") from None


def resolve_args(task: str, optimizer: str, overrides: dict, **config_fields) -> RunSpec:
    """``key=value`` overrides (parsed) sorted into hyperparameters and task settings, then resolved."""
    tier = config_fields.get("tier", RunConfig.tier)
    hparams, settings = split_overrides(task, optimizer, tier, overrides)
    return resolve_run(task, optimizer, RunConfig(hparams=hparams, task_settings=settings, **config_fields))


def as_dict(spec: RunSpec) -> dict:
    """The identity as plain JSON-able data (what runs record as ``config_json``)."""
    return json.loads(json.dumps(dict(spec.identity), sort_keys=True, default=str))


__all__ = ["RunSpec", "resolve_run", "resolve_args", "split_overrides", "as_dict"]
