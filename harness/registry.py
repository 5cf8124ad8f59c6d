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
import os
import pkgutil
import sys
from dataclasses import dataclass
from typing import Any, Callable


class RegistryError(ValueError):
    """An unknown name or an invalid hyperparameter; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# optimizers


@dataclass(frozen=True)
class OptimizerSpec:
    """Metadata of one registered optimizer; ``factory(params, **hparams)`` builds it."""

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
    wd_kind: str = "decoupled"  # l2 | decoupled | post_precond (methods.md section 5)
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
    source_file: str = ""

    @property
    def source_hash(self) -> str:
        return file_hash(self.source_file)


OPTIMIZERS: dict[str, OptimizerSpec] = {}
TASKS: dict[str, TaskSpec] = {}
TIERS = ("smoke", "quick", "full")


def file_hash(path: str) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _caller_file(depth: int = 2) -> str:
    # sys._getframe, not inspect.stack(): the latter reads source for every frame (~0.3 s per call once torch is imported)
    return os.path.abspath(sys._getframe(depth).f_code.co_filename)


def register_optimizer(name: str, factory: Callable | None = None, *, defaults: dict | None = None,
                       **meta) -> Callable:
    """Register ``factory`` under ``name``; without a factory, use as a class/function decorator.

    ``defaults`` are the hyperparameters the entry binds; every tunable hyperparameter must have a
    default here or in the factory signature, so that unknown or ill-typed values can be rejected.
    """
    source = meta.pop("source_file", None) or _caller_file()

    def add(f):
        if name in OPTIMIZERS:
            raise RegistryError(f"optimizer {name!r} is registered twice "
                                f"({OPTIMIZERS[name].source_file} and {source})")
        merged = {**signature_defaults(f), **(defaults or {})}
        spec = OptimizerSpec(name=name, factory=f, defaults=merged, source_file=source,
                             description=meta.pop("description", (f.__doc__ or "").strip().split("\n")[0]),
                             paper=meta.pop("paper", ""), family=meta.pop("family", "other"),
                             search_space=meta.pop("search_space", {}), **meta)
        for key in spec.search_space:
            if key not in merged:
                raise RegistryError(f"optimizer {name!r}: search-space key {key!r} is not a hyperparameter")
        OPTIMIZERS[name] = spec
        return f

    return add(factory) if factory is not None else add


def register_task(name: str, *, build: Callable, tiers: dict, metric: str, higher_is_better: bool,
                  description: str, family: str, **meta) -> TaskSpec:
    """Register one task; tier configs are dataclass instances keyed by smoke/quick/full."""
    source = meta.pop("source_file", None) or _caller_file()
    if name in TASKS:
        raise RegistryError(f"task {name!r} is registered twice ({TASKS[name].source_file} and {source})")
    missing = set(TIERS) - set(tiers)
    if missing:
        raise RegistryError(f"task {name!r} lacks tier(s) {sorted(missing)}")
    spec = TaskSpec(name=name, build=build, tiers=tiers, metric=metric, higher_is_better=higher_is_better,
                    description=description, family=family, source_file=source, **meta)
    TASKS[name] = spec
    return spec


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
    return RegistryError(f"unknown {kind} {name!r}.{hint} "
                         f"Run `rootbench list {kind.split()[0]}s` to see all {len(known)}.")


# ---------------------------------------------------------------------------------------------
# value checking shared by hyperparameters and tier overrides


def coerce(kind: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; ints are accepted where floats are."""
    def bad(expected):
        return RegistryError(f"{kind} {key}={value!r} has the wrong type: expected {expected} "
                             f"(default {default!r})")

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


def resolve_hparams(spec: OptimizerSpec, overrides: dict) -> dict:
    """Defaults merged with checked overrides: the fully resolved hyperparameters of a run."""
    tunable = {k: v for k, v in spec.defaults.items() if k != "batch_size"}
    return {**tunable, **check_keys(f"hyperparameter of {spec.name}:", overrides, tunable)}


__all__ = ["OptimizerSpec", "TaskSpec", "RegistryError", "register_optimizer", "register_task",
           "OPTIMIZERS", "TASKS", "TIERS", "discover"]
