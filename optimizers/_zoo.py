"""The optimizers researchers compare against today, from their maintained packages, as a plugin.

Loaded through the public plugin path, the entry point ``zoo`` in the group ``rootbench.optimizers``
(pyproject.toml), exactly as an outside package registers its optimizers; this module is never imported by
the registry's own discovery (its name starts with ``_``). The packages come with ``pip install
'rootbench[zoo]'``; an entry whose package is missing is listed as not installed, with that command.

Each entry maps the library's knobs onto rootbench's names (``lr``, ``momentum`` = beta1, ``lr_cov`` = 1 -
beta2 for the preconditioner's EMA, ``damping`` = eps, ``weight_decay``), declares its family, whether it is
root-free, its preconditioner and period, and a search space whose EMA rates are time constants relative to
the run's length (``("horizon", 10, 0.5)``). State dtypes are the libraries' own: the tests count the bytes.

- ``muon``: Newton-Schulz orthogonalised momentum for every parameter with 2 or more dimensions (a conv filter
  as its flattened matrix) and no axis above ``MUON_MAX_DIM``, AdamW for the rest (biases, norms' gains,
  vocabulary-sized embeddings and heads): Jordan et al. 2024, ``pytorch_optimizer``.
- ``adafactor``: factored second moments, relative step off (torch.optim.Adafactor; Shazeer & Stern 2018).
- ``psgd_kron``: PSGD with Kronecker factors fitted by matrix products, no roots or inverses
  (Li 2018; ``pytorch_optimizer.Kron``, a port of kron_torch).
- ``soap``: Adam in the eigenbasis of Shampoo's factors, refreshed every T steps (Vyas et al. 2024;
  ``pytorch_optimizer.SOAP``).
- ``lion``: the sign of an interpolated momentum (Chen et al. 2023; ``pytorch_optimizer.Lion``).
- ``sfadamw``: schedule-free AdamW (Defazio et al. 2024; ``schedulefree``, the authors' package): evaluation
  needs the averaged weights, so the entry declares ``eval_mode`` and the runner calls ``optimizer.eval()``
  before evaluating and ``optimizer.train()`` after.
"""

from __future__ import annotations

import importlib.util

import torch

from rootbench.optimizers import register_missing_optimizer, register_optimizer
from rootbench.optimizers._common import StateDtypeOptimizer, check_below_one, check_nonnegative

INSTALL = "pip install 'rootbench[zoo]'"


def _groups(params) -> list:
    """Parameter groups of plain tensors: (name, tensor) pairs lose their names (these libraries take none),
    a group's own settings (its ``lr``) are kept."""
    params = list(params)
    if params and isinstance(params[0], dict):
        return [{**g, "params": [p[1] if isinstance(p, tuple) else p for p in g["params"]]} for g in params]
    return [{"params": [p[1] if isinstance(p, tuple) else p for p in params]}]


def _float_lr(lr):
    """These libraries take a number: a 0-d tensor lr becomes one (schedulers then update the float)."""
    return float(lr) if isinstance(lr, torch.Tensor) and lr.numel() == 1 else lr


def _keeping_state_dtypes(cls):
    """``cls`` whose ``load_state_dict`` keeps each state tensor's dtype (torch casts them to the parameter's,
    which turns PSGD's fp32 factors of a bf16 parameter into bf16 and breaks the resumed step)."""
    return type(cls.__name__, (StateDtypeOptimizer, cls), {"__module__": cls.__module__})


def _has(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a broken installation
        return False


# ---------------------------------------------------------------------------------------------
# factories


MUON_MAX_DIM = 8192  # larger axes are a vocabulary's (embeddings, output heads): AdamW, as Muon's authors advise


def _hidden_matrix(p) -> bool:
    """Muon's share: parameters of 2+ dimensions whose flattened matrix has no axis above ``MUON_MAX_DIM`` (the
    Newton-Schulz products are as large as the longer axis squared: 10 GB for a 50,257-word embedding)."""
    return p.ndim >= 2 and max(p.shape[0], p[0].numel()) <= MUON_MAX_DIM


def muon(
    params,
    lr: float = 0.02,
    momentum: float = 0.95,
    weight_decay: float = 0.0,
    adamw_lr: float = 3e-4,
    adamw_momentum: float = 0.9,
    adamw_lr_cov: float = 0.05,
    damping: float = 1e-10,
    ns_steps: int = 5,
):
    """Muon on hidden matrices (``_hidden_matrix``), AdamW (``adamw_*``, ``damping``) on the others."""
    lr = _float_lr(lr)
    from pytorch_optimizer import Muon

    check_nonnegative(lr=lr, weight_decay=weight_decay, adamw_lr=adamw_lr, damping=damping)
    check_below_one(momentum=momentum, adamw_momentum=adamw_momentum, adamw_lr_cov=adamw_lr_cov)
    groups = []
    for g in _groups(params):
        settings = {k: v for k, v in g.items() if k != "params"}
        matrices = [p for p in g["params"] if _hidden_matrix(p)]
        others = [p for p in g["params"] if not _hidden_matrix(p)]
        if matrices:
            groups.append({**settings, "params": matrices, "use_muon": True})
        if others:
            groups.append({**settings, "params": others, "use_muon": False})
    return Muon(
        groups,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        ns_steps=ns_steps,
        adamw_lr=adamw_lr,
        adamw_betas=(adamw_momentum, 1.0 - adamw_lr_cov),
        adamw_wd=weight_decay,
        adamw_eps=damping,
    )


def adafactor(params, lr: float = 1e-2, beta2_decay: float = -0.8, damping: float = 1e-3, weight_decay: float = 0.0):
    """torch.optim.Adafactor; ``damping`` is its eps2 (the floor of the update's RMS scale)."""
    lr = _float_lr(lr)
    check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
    if not isinstance(beta2_decay, (int, float)) or isinstance(beta2_decay, bool) or not beta2_decay <= 0:
        raise ValueError(f"beta2_decay must be a number <= 0, got {beta2_decay!r}")
    return torch.optim.Adafactor(
        _groups(params), lr=lr, beta2_decay=beta2_decay, eps=(None, damping), weight_decay=weight_decay
    )


def psgd_kron(
    params,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    precond_lr: float = 0.1,
    precond_update_probability: float = 1.0,
):
    """PSGD-Kron: Kronecker factors fitted to the gradient by matrix products (no roots, no inverses)."""
    lr = _float_lr(lr)
    from pytorch_optimizer import Kron

    check_nonnegative(lr=lr, weight_decay=weight_decay, precond_lr=precond_lr)
    check_below_one(momentum=momentum)
    if not 0 < precond_update_probability <= 1:
        raise ValueError(f"precond_update_probability must lie in (0, 1], got {precond_update_probability!r}")
    return _keeping_state_dtypes(Kron)(
        _groups(params),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        precond_lr=precond_lr,
        preconditioner_update_probability=precond_update_probability,
    )


def soap(
    params,
    lr: float = 3e-3,
    momentum: float = 0.95,
    lr_cov: float = 0.05,
    shampoo_lr_cov: float = 0.05,
    damping: float = 1e-8,
    weight_decay: float = 0.01,
    T: int = 10,
):
    """SOAP: Adam in the eigenbasis of Shampoo's factors, the basis refreshed every T steps."""
    lr = _float_lr(lr)
    from pytorch_optimizer import SOAP

    check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
    check_below_one(momentum=momentum, lr_cov=lr_cov, shampoo_lr_cov=shampoo_lr_cov)
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    return SOAP(
        _groups(params),
        lr=lr,
        betas=(momentum, 1.0 - lr_cov),
        shampoo_beta=1.0 - shampoo_lr_cov,
        eps=damping,
        weight_decay=weight_decay,
        precondition_frequency=T,
    )


def lion(params, lr: float = 1e-4, momentum: float = 0.9, momentum2: float = 0.99, weight_decay: float = 0.0):
    """Lion: the update is the sign of momentum interpolated at ``momentum``, tracked at ``momentum2``."""
    lr = _float_lr(lr)
    from pytorch_optimizer import Lion

    check_nonnegative(lr=lr, weight_decay=weight_decay)
    check_below_one(momentum=momentum, momentum2=momentum2)
    return Lion(_groups(params), lr=lr, betas=(momentum, momentum2), weight_decay=weight_decay)


def sfadamw(
    params,
    lr: float = 2.5e-3,
    momentum: float = 0.9,
    lr_cov: float = 1e-3,
    damping: float = 1e-8,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
):
    """Schedule-free AdamW, started in training mode (its ``eval()`` swaps in the averaged weights)."""
    lr = _float_lr(lr)
    from schedulefree import AdamWScheduleFree

    check_nonnegative(lr=lr, damping=damping, weight_decay=weight_decay)
    check_below_one(momentum=momentum, lr_cov=lr_cov)
    if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    opt = AdamWScheduleFree(
        _groups(params),
        lr=lr,
        betas=(momentum, 1.0 - lr_cov),
        eps=damping,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
    )
    opt.train()
    return opt


# ---------------------------------------------------------------------------------------------
# registrations: what each one declares

MOMENTUM = ("log1m", 1e-2, 0.5)  # 1 - momentum log-uniform: momenta 0.5-0.99
HORIZON = ("horizon", 10, 0.5)  # an EMA rate as a time constant from 10 steps to half the run
ENTRIES = [
    dict(
        name="muon",
        factory=muon,
        package="pytorch_optimizer",
        description="Muon: Newton-Schulz orthogonalised momentum on matrices, AdamW on the rest (pytorch_optimizer)",
        paper="https://kellerjordan.github.io/posts/muon/",
        family="muon",
        root_free=True,
        preconditioner="kronecker",
        wd_kind="decoupled",
        test_lr=0.02,
        ema_rates=("adamw_lr_cov",),
        search_space={
            "lr": ("log", 1e-3, 1e-1),
            "momentum": MOMENTUM,
            "adamw_lr": ("log", 1e-5, 1e-2),
            "adamw_lr_cov": HORIZON,
            "weight_decay": ("log", 1e-5, 1e-1),
        },
    ),
    dict(
        name="adafactor",
        factory=adafactor,
        package="torch",
        description="Adafactor: factored second moments, square root, no first moment (torch.optim.Adafactor)",
        paper="https://arxiv.org/abs/1804.04235",
        family="adafactor",
        root_free=False,
        preconditioner="diagonal",
        wd_kind="decoupled",
        test_lr=0.01,
        search_space={"lr": ("log", 1e-4, 1e-1), "weight_decay": ("log", 1e-5, 1e-1)},
    ),
    dict(
        name="psgd_kron",
        factory=psgd_kron,
        # without opt_einsum torch contracts the preconditioner's einsums left to right: 24 GB intermediates on a
        # FocalNet (measured); with it, under 1 GB
        package=("pytorch_optimizer", "opt_einsum"),
        description="PSGD-Kron: Kronecker preconditioner fitted without roots or inverses (pytorch_optimizer.Kron)",
        paper="https://arxiv.org/abs/1512.04202",
        family="psgd",
        root_free=True,
        preconditioner="kronecker",
        wd_kind="decoupled",
        test_lr=1e-3,
        search_space={
            "lr": ("log", 1e-5, 1e-2),
            "momentum": MOMENTUM,
            "precond_lr": ("log", 1e-2, 0.5),
            "weight_decay": ("log", 1e-5, 1e-1),
        },
    ),
    dict(
        name="soap",
        factory=soap,
        package="pytorch_optimizer",
        description="SOAP: Adam in the eigenbasis of Shampoo's Kronecker factors (pytorch_optimizer.SOAP)",
        paper="https://arxiv.org/abs/2409.11321",
        family="shampoo",
        root_free=False,
        preconditioner="kronecker",
        period_hparam="T",
        wd_kind="decoupled",
        test_lr=3e-3,
        ema_rates=("lr_cov", "shampoo_lr_cov"),
        search_space={
            "lr": ("log", 1e-4, 1e-1),
            "momentum": MOMENTUM,
            "lr_cov": HORIZON,
            "shampoo_lr_cov": HORIZON,
            "weight_decay": ("log", 1e-5, 1e-1),
        },
    ),
    dict(
        name="lion",
        factory=lion,
        package="pytorch_optimizer",
        description="Lion: sign of interpolated momentum, no preconditioner (pytorch_optimizer.Lion)",
        paper="https://arxiv.org/abs/2302.06675",
        family="lion",
        root_free=None,
        preconditioner="none",
        wd_kind="decoupled",
        test_lr=1e-3,
        search_space={
            "lr": ("log", 1e-5, 1e-2),
            "momentum": MOMENTUM,
            "momentum2": ("log1m", 1e-3, 0.1),
            "weight_decay": ("log", 1e-5, 1.0),
        },
    ),
    dict(
        name="sfadamw",
        factory=sfadamw,
        package="schedulefree",
        description="Schedule-free AdamW: iterate averaging instead of a schedule (schedulefree, the authors')",
        paper="https://arxiv.org/abs/2405.15682",
        family="adam",
        root_free=False,
        preconditioner="diagonal",
        wd_kind="decoupled",
        test_lr=2.5e-3,
        eval_mode=True,
        ema_rates=("lr_cov",),
        search_space={
            "lr": ("log", 1e-4, 1e-1),
            "momentum": MOMENTUM,
            "lr_cov": HORIZON,
            "weight_decay": ("log", 1e-5, 1e-1),
        },
    ),
]

for _entry in ENTRIES:
    _meta = dict(_entry)
    _name, _factory, _packages = _meta.pop("name"), _meta.pop("factory"), _meta.pop("package")
    _packages = (_packages,) if isinstance(_packages, str) else _packages
    _missing = [p for p in _packages if not _has(p)]
    if not _missing:
        register_optimizer(_name, _factory, **_meta)
    else:
        register_missing_optimizer(_name, f"needs {', '.join(_missing)}: {INSTALL}")
