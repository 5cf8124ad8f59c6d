"""Registries for optimizers and tasks: plain dicts filled by decorators at import time.

One optimizer (or task family) is one module under ``optimizers/`` (``tasks/``); importing the
package imports every module in it (``discover``), so adding a file is the whole registration.
A variant of an optimizer is one more ``register_optimizer`` line that binds other defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import inspect
import math
import os
import pkgutil
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class UsageError(ValueError):
    """Bad input (an unknown name, an invalid value, missing data); the CLI turns it into one line and exit 2."""


RegistryError = UsageError  # the earlier name, kept for plugins that catch it

# Names of optimizers and tasks become folder names under runs/: letters, digits, and _ . + - inside.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
PRECONDITIONERS = ("none", "diagonal", "kronecker")  # what OptimizerSpec.preconditioner may declare
MODEL_KINDS = ("cnn", "vit", "transformer", "rnn", "mlp", "linear", "other")  # TaskSpec.model_kind


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a safe registry/file name, else ``UsageError`` (no path separators, no '..')."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise UsageError(
            f"invalid {kind} name {name!r}: use letters, digits and _ . + - (starting with a "
            "letter or digit, no '..', at most 100 characters)"
        )
    return name


# ---------------------------------------------------------------------------------------------
# optimizers


@dataclass(frozen=True)
class OptimizerSpec:
    """Metadata of one registered optimizer; ``factory(params, **hparams)`` builds it.

    Capabilities are declared here, never guessed from the name: ``preconditioner`` (none | diagonal |
    kronecker), ``period_hparam`` (the hyperparameter holding the preconditioner's update period, if any),
    ``root_free`` and its ``pair`` (the counterpart across the square root), ``bounds`` (valid ranges).
    """

    name: str
    factory: Callable[..., Any]
    defaults: dict
    description: str
    paper: str
    family: str
    search_space: dict  # name -> ("log", low, high) | ("uniform", low, high) | ("choice", [...])
    test_lr: float | None = None  # a learning rate at which the noisy quadratic must improve
    needs_batch_size: bool = False  # root-free methods need B, the examples the loss averages over
    parent: str | None = None  # the optimizer a variant replaces (regression gate baseline)
    root_free: bool | None = None
    pair: str | None = None  # the root-based (or root-free) counterpart, for the leaderboard
    wd_kind: str = "decoupled"  # l2 | decoupled | post_precond
    preconditioner: str = "diagonal"  # none (SGD) | diagonal (Adam, RMSProp) | kronecker (Shampoo family)
    period_hparam: str | None = None  # e.g. "T": the preconditioner is updated every T steps
    bounds: dict = field(default_factory=dict)  # hyperparameter -> interval such as "(0, inf)" or "[0, 1)"
    # the paper's published best configuration per task model_kind ("cnn", "vit"): a fixed trial of every sweep
    published: dict = field(default_factory=dict)
    # the preconditioner starts from a nonzero initial value (RF-RMSProp's s0 = 1): its runs must record how
    # much of the preconditioner is still owed to it (``optimizer.warm_start_share()``), or no verdict uses them
    warm_start: bool = False
    # hyperparameters that are EMA rates r of the preconditioner (the state decays by 1 - r per step): in a
    # 16-bit state, 1 - r can round to 1 and freeze the decay; the runner checks and records it
    ema_rates: tuple = ()
    # the optimizer evaluates with other weights than it trains (schedule-free methods' averaged iterate): the
    # runner calls ``optimizer.eval()`` before an evaluation and ``optimizer.train()`` after it
    eval_mode: bool = False
    source_file: str = ""

    @property
    def source_hash(self) -> str:
        return file_hash(self.source_file)


@dataclass(frozen=True)
class TaskSpec:
    """Metadata of one registered task; ``build(tier_config)`` returns a Task object."""

    name: str
    build: Callable[..., Any]
    tiers: dict  # tier name -> tier config dataclass instance
    metric: str
    higher_is_better: bool
    description: str
    family: str
    paper: str = ""
    data: str = ""  # data set name(s) this task reads; "" for generated data
    model_kind: str = "other"  # cnn | vit | transformer | rnn | mlp | linear | other: which claims it informs
    minutes: dict = field(default_factory=dict)  # tier -> measured minutes per run on the reference CPU
    source_file: str = ""

    @property
    def source_hash(self) -> str:
        return file_hash(self.source_file)


OPTIMIZERS: dict[str, OptimizerSpec] = {}
TASKS: dict[str, TaskSpec] = {}
# smoke: seconds, generated data (tests); quick: minutes on a 2-core CPU; long: a run long enough for the
# paper's claims to be testable (<= 10 minutes on a 2-core CPU, seconds on a GPU); full: the published protocol.
TIERS = ("smoke", "quick", "long", "full")
REQUIRED_TIERS = ("smoke", "quick", "full")  # every task has these; ``long`` only where a claim is tested
TIER_MINUTES_LIMIT = {"long": 10.0}  # a run's design limit on a 2-core CPU, one thread (the campaign's plan checks it)


def file_hash(path: str) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _caller_file(depth: int = 2) -> str:
    # sys._getframe, not inspect.stack(): the latter reads source for every frame (~0.3 s per call with torch)
    return os.path.abspath(sys._getframe(depth).f_code.co_filename)


def register_optimizer(name: str, factory: Callable | None = None, *, defaults: dict | None = None, **meta) -> Callable:
    """Register ``factory`` under ``name``; without a factory, use as a class/function decorator.

    ``defaults`` are the hyperparameters the entry binds; every tunable hyperparameter must have a
    default here or in the factory signature, so that unknown or ill-typed values can be rejected.
    """
    source = meta.pop("source_file", None) or _caller_file()
    check_name("optimizer", name)
    if meta.get("preconditioner", "diagonal") not in PRECONDITIONERS:
        raise RegistryError(f"optimizer {name!r}: preconditioner must be one of {', '.join(PRECONDITIONERS)}")

    def add(f):
        if name in OPTIMIZERS:
            raise RegistryError(f"optimizer {name!r} is registered twice ({OPTIMIZERS[name].source_file} and {source})")
        merged = {**signature_defaults(f), **(defaults or {})}
        spec = OptimizerSpec(
            name=name,
            factory=f,
            defaults=merged,
            source_file=source,
            description=meta.pop("description", (f.__doc__ or "").strip().split("\n")[0]),
            paper=meta.pop("paper", ""),
            family=meta.pop("family", "other"),
            search_space=meta.pop("search_space", {}),
            **meta,
        )
        for key in spec.search_space:
            if key not in merged:
                raise RegistryError(f"optimizer {name!r}: search-space key {key!r} is not a hyperparameter")
        for key in spec.ema_rates:
            if key not in merged:
                raise RegistryError(f"optimizer {name!r}: ema_rates key {key!r} is not a hyperparameter")
        if spec.period_hparam is not None and spec.period_hparam not in merged:
            raise RegistryError(f"optimizer {name!r}: period_hparam {spec.period_hparam!r} is not a hyperparameter")
        for key, interval in spec.bounds.items():
            if key not in merged:
                raise RegistryError(f"optimizer {name!r}: bounds key {key!r} is not a hyperparameter")
            parse_interval(interval)
        OPTIMIZERS[name] = spec
        return f

    return add(factory) if factory is not None else add


MISSING_OPTIMIZERS: dict = {}  # name -> how to install what it needs (a plugin whose package is absent)


def register_missing_optimizer(name: str, hint: str) -> None:
    """Declare an optimizer a plugin provides once its package is installed: it is listed as not installed, and
    naming it says ``hint`` instead of "unknown optimizer"."""
    check_name("optimizer", name)
    if name not in OPTIMIZERS:
        MISSING_OPTIMIZERS[name] = hint


def register_task(
    name: str,
    *,
    build: Callable,
    tiers: dict,
    metric: str,
    higher_is_better: bool,
    description: str,
    family: str,
    **meta,
) -> TaskSpec:
    """Register one task; tier configs are dataclass instances keyed by smoke/quick/full (and optionally long)."""
    source = meta.pop("source_file", None) or _caller_file()
    check_name("task", name)
    if meta.get("model_kind", "other") not in MODEL_KINDS:
        raise RegistryError(f"task {name!r}: model_kind must be one of {', '.join(MODEL_KINDS)}")
    if name in TASKS:
        raise RegistryError(f"task {name!r} is registered twice ({TASKS[name].source_file} and {source})")
    missing = set(REQUIRED_TIERS) - set(tiers)
    if missing:
        raise RegistryError(f"task {name!r} lacks tier(s) {sorted(missing)}")
    unknown = set(tiers) - set(TIERS)
    if unknown:
        raise RegistryError(f"task {name!r}: unknown tier(s) {sorted(unknown)}; tiers are {', '.join(TIERS)}")
    minutes = meta.get("minutes") or {}
    if set(minutes) - set(tiers):
        raise RegistryError(f"task {name!r}: minutes given for tier(s) it lacks: {sorted(set(minutes) - set(tiers))}")
    tiers = {t: tiers[t] for t in TIERS if t in tiers}  # listed in tier order
    spec = TaskSpec(
        name=name,
        build=build,
        tiers=tiers,
        metric=metric,
        higher_is_better=higher_is_better,
        description=description,
        family=family,
        source_file=source,
        **meta,
    )
    TASKS[name] = spec
    return spec


def check_tier(tier: str) -> None:
    """A ``UsageError`` naming the tiers unless ``tier`` is one: a typo is named as one, not as a tier no task
    happens to declare."""
    if tier not in TIERS:
        raise UsageError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")


def tier_config(spec: TaskSpec, tier: str):
    """The tier config of ``spec`` at ``tier``; an unknown tier, or one this task does not declare, is a
    ``UsageError`` naming the tasks that do."""
    check_tier(tier)
    if tier not in spec.tiers:
        having = sorted(name for name, s in TASKS.items() if tier in s.tiers)
        raise UsageError(f"task {spec.name!r} has no {tier!r} tier; tasks with one: {', '.join(having) or 'none'}")
    return spec.tiers[tier]


def signature_defaults(f: Callable) -> dict:
    """Keyword defaults of a factory (a class: its ``__init__``), skipping the params argument."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return {}
    out = {}
    for i, (k, p) in enumerate(sig.parameters.items()):
        if i == 0 or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # the first argument is the parameters to optimize
        if p.default is not inspect.Parameter.empty:
            out[k] = p.default
    return out


def discover(package: str) -> None:
    """Import every module of ``package`` so that each registers itself."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def unknown_name_error(kind: str, name: str, known: list[str]) -> RegistryError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RegistryError(
        f"unknown {kind} {name!r}.{hint} Run `rootbench list {kind.split()[0]}s` to see all {len(known)}."
    )


# ---------------------------------------------------------------------------------------------
# value checking shared by hyperparameters and tier overrides


def coerce(kind: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; ints are accepted where floats are."""

    def bad(expected):
        return RegistryError(f"{kind} {key}={value!r} has the wrong type: expected {expected} (default {default!r})")

    if default is None:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise bad("a number, string, bool or None")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad("True or False")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad("a string")
    if isinstance(default, (tuple, list)):
        if isinstance(value, (tuple, list)) and len(value) == len(default):
            return type(default)(coerce(kind, key, v, d) for v, d in zip(value, default))
        raise bad(f"a sequence of {len(default)}")
    if isinstance(value, type(default)):
        return value
    raise bad(type(default).__name__)


def check_keys(kind: str, given: dict, allowed: dict) -> dict:
    """Reject unknown keys (with close matches) and coerce the rest against ``allowed`` defaults."""
    out = {}
    for key, value in given.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise RegistryError(f"unknown {kind} {key!r}.{hint} Valid: {', '.join(sorted(allowed))}")
        out[key] = coerce(kind, key, value, allowed[key])
    return out


def dataclass_defaults(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# Valid ranges of the common hyperparameter names (a documented convention: lr, momentum, lr_cov,
# damping, weight_decay), used where an optimizer declares no bounds of its own for that name.
COMMON_BOUNDS = {
    "lr": "(0, inf)",
    "momentum": "[0, 1)",
    "lr_cov": "(0, 1]",
    "damping": "[0, inf)",
    "weight_decay": "[0, inf)",
}


def parse_interval(text: str) -> tuple[float, float, bool, bool]:
    """``"(0, inf)"`` -> (low, high, low_closed, high_closed); ``[`` and ``]`` close an end."""
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*", str(text))
    if not m:
        raise RegistryError(f"cannot read interval {text!r}: write e.g. '(0, inf)' or '[0, 1)'")
    lo, hi = float(m.group(2)), float(m.group(3))
    return lo, hi, m.group(1) == "[", m.group(4) == "]"


def in_interval(value, text: str) -> bool:
    lo, hi, lo_closed, hi_closed = parse_interval(text)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if math.isnan(v):
        return False
    return (v > lo or (lo_closed and v == lo)) and (v < hi or (hi_closed and v == hi))


def hparam_bounds(spec: OptimizerSpec) -> dict:
    """The valid interval of every bounded hyperparameter of ``spec``: its own, else the common convention."""
    out = {k: v for k, v in COMMON_BOUNDS.items() if k in spec.defaults}
    if spec.period_hparam:
        out[spec.period_hparam] = "[1, inf)"
    out.update(spec.bounds)
    return out


def check_hparam_values(spec: OptimizerSpec, hparams: dict, batch_size: int | None = None) -> None:
    """Out-of-range values raise ``UsageError`` naming the value and its valid range (``None`` is left to the
    optimizer: it means "its own default")."""
    for key, interval in hparam_bounds(spec).items():
        value = hparams.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not in_interval(value, interval):
            raise UsageError(f"hyperparameter of {spec.name}: {key}={value!r} is out of range; valid: {interval}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")


def resolve_hparams(spec: OptimizerSpec, overrides: dict) -> dict:
    """Defaults merged with checked overrides: the fully resolved hyperparameters of a run."""
    tunable = {k: v for k, v in spec.defaults.items() if k != "batch_size"}
    return {**tunable, **check_keys(f"hyperparameter of {spec.name}:", overrides, tunable)}


__all__ = [
    "OptimizerSpec",
    "TaskSpec",
    "UsageError",
    "RegistryError",
    "register_optimizer",
    "register_task",
    "OPTIMIZERS",
    "TASKS",
    "TIERS",
    "REQUIRED_TIERS",
    "tier_config",
    "discover",
    "check_name",
    "check_hparam_values",
]
