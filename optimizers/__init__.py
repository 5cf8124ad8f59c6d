"""The optimizer registry: every module in this package registers itself on import.

    >>> from optimizers import list_optimizers, create_optimizer
    >>> opt = create_optimizer("rfrmsprop", model, lr=1e-3, batch_size=128)

Optimizers from outside the repository are loaded too: ``ROOTBENCH_OPTIMIZERS`` names Python files
or modules (separated by ``os.pathsep`` or commas), and installed packages can declare an entry
point in the group ``rootbench.optimizers``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib import metadata

import torch

from rootbench.harness.registry import (
    MISSING_OPTIMIZERS,
    OPTIMIZERS,
    OptimizerSpec,
    RegistryError,
    discover,
    register_missing_optimizer,
    register_optimizer,
    resolve_hparams,
    unknown_name_error,
)
from rootbench.optimizers._integration import global_batch_size

__all__ = [
    "list_optimizers",
    "create_optimizer",
    "get_optimizer_spec",
    "global_batch_size",
    "register_optimizer",
    "register_missing_optimizer",
    "missing_optimizers",
    "OptimizerSpec",
    "RegistryError",
]

ENV_PLUGINS = "ROOTBENCH_OPTIMIZERS"
ENTRY_POINT_GROUP = "rootbench.optimizers"
_loaded_plugins: set[str] = set()


PLUGIN_ERRORS: dict[str, str] = {}  # plugin (file, module or entry point) -> why it failed to import


def _plugin_failed(item: str, error: BaseException, before: set) -> None:
    """One warning per broken plugin; what it registered before failing is withdrawn (a half-run module is
    not trusted), the other optimizers stay usable, and only commands that name its optimizers fail."""
    for name in set(OPTIMIZERS) - before:
        del OPTIMIZERS[name]
    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    PLUGIN_ERRORS[item] = message
    print(
        f"rootbench: warning: optimizer plugin {item} failed to import ({message}); its optimizers are unavailable",
        file=sys.stderr,
    )


def _load_plugins() -> None:
    """Import optimizer files/modules named by the environment and by installed entry points."""
    names = [x.strip() for x in os.environ.get(ENV_PLUGINS, "").replace(",", os.pathsep).split(os.pathsep)]
    for item in filter(None, names):
        if item in _loaded_plugins:
            continue
        _loaded_plugins.add(item)
        before = set(OPTIMIZERS)
        try:
            if item.endswith(".py") or os.path.sep in item:
                if not os.path.isfile(item):
                    raise FileNotFoundError(f"{ENV_PLUGINS} names {item!r}, which is not a file")
                mod_name = "rootbench_plugin_" + os.path.splitext(os.path.basename(item))[0]
                spec = importlib.util.spec_from_file_location(mod_name, item)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not block every other optimizer
            _plugin_failed(item, e, before)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value not in _loaded_plugins:
            _loaded_plugins.add(ep.value)
            before = set(OPTIMIZERS)
            try:
                ep.load()
            except Exception as e:  # noqa: BLE001
                _plugin_failed(f"{ep.value} (entry point {ep.name})", e, before)


def _ensure_loaded() -> None:
    discover(__name__)
    _load_plugins()


def list_optimizers() -> list[str]:
    """Names of all registered optimizers, sorted."""
    _ensure_loaded()
    return sorted(OPTIMIZERS)


def missing_optimizers() -> dict:
    """Optimizers that plugins declare but cannot register here (their package is absent): name -> how to
    install it."""
    _ensure_loaded()
    return {k: v for k, v in sorted(MISSING_OPTIMIZERS.items()) if k not in OPTIMIZERS}


def get_optimizer_spec(name: str) -> OptimizerSpec:
    _ensure_loaded()
    if name not in OPTIMIZERS and name in MISSING_OPTIMIZERS:
        raise RegistryError(f"optimizer {name!r} is not installed: it {MISSING_OPTIMIZERS[name]}")
    if name not in OPTIMIZERS:
        error = unknown_name_error("optimizer", name, sorted(OPTIMIZERS))
        if PLUGIN_ERRORS:
            failed = "; ".join(f"{k}: {v}" for k, v in PLUGIN_ERRORS.items())
            error = RegistryError(f"{error} (optimizer plugins that failed to import: {failed})")
        raise error
    return OPTIMIZERS[name]


def _params_of(model_or_params):
    if isinstance(model_or_params, torch.nn.Module):
        # named parameters let name-based rules (IF-Shampoo's lr_cov discount) see the names
        return [(n, p) for n, p in model_or_params.named_parameters() if p.requires_grad]
    return model_or_params


def create_optimizer(name: str, model_or_params, **hparams) -> torch.optim.Optimizer:
    """Build the registered optimizer ``name`` with its defaults overridden by ``hparams``.

    Unknown or ill-typed hyperparameters raise ``RegistryError``. Root-free methods need
    ``batch_size`` (the number of examples the loss is averaged over); it is never defaulted.
    """
    spec = get_optimizer_spec(name)
    foreign = getattr(spec.factory, "FOREIGN_NAMES", {})  # AdamW/RMSprop names: refused, pointing to ours
    clash = [k for k in hparams if k in foreign and k not in spec.defaults]
    if clash:
        raise RegistryError(
            f"optimizer {name!r} does not take {', '.join(map(repr, clash))}; use "
            + "; ".join(f"{k} -> {foreign[k]}" for k in clash)
        )
    batch_size = hparams.pop("batch_size", None)
    # a 0-d tensor lr (torch.optim accepts one; schedulers update it in place) passes to the optimizer as it is,
    # which checks it: the registry's values are plain numbers
    lr_tensor = hparams.pop("lr") if isinstance(hparams.get("lr"), torch.Tensor) and "lr" in spec.defaults else None
    resolved = resolve_hparams(spec, hparams)
    if lr_tensor is not None:
        resolved["lr"] = lr_tensor
    if spec.needs_batch_size:
        if batch_size is None:
            raise RegistryError(
                f"optimizer {name!r} needs batch_size=B, the number of examples the loss is averaged over "
                "(Lin et al. 2024: the root-free methods scale the squared gradient by B); it has no default"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise RegistryError(f"batch_size must be a positive integer, got {batch_size!r}")
        resolved["batch_size"] = batch_size
    elif batch_size is not None:
        raise RegistryError(f"optimizer {name!r} takes no batch_size")
    return spec.factory(_params_of(model_or_params), **resolved)
