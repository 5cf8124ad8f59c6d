"""SGD with heavy-ball momentum, wrapped from ``torch.optim.SGD``.

Robbins & Monro (1951); Polyak (1964). Weight decay is coupled L2 (g + wd*mu before momentum), as in
the paper's SGD baseline (Lin et al. 2024). The paper's generalisation reference for CNNs.
"""
import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._torch_impl import impl_kwargs, materialize


def sgd(params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False,
        impl: str = "auto") -> torch.optim.SGD:
    """SGD with heavy-ball momentum (torch.optim.SGD, coupled L2 weight decay)."""
    params = materialize(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                           dampening=0.0, **impl_kwargs(impl, params))


register_optimizer(
    "sgd", sgd,
    description="SGD with heavy-ball momentum and coupled L2 weight decay (torch.optim.SGD)",
    paper="https://doi.org/10.1016/0041-5553(64)90137-5",
    family="sgd", root_free=None, wd_kind="l2", test_lr=0.05, preconditioner="none",
    search_space={"lr": ("log", 1e-3, 1.0), "momentum": ("log", 0.1, 0.99),
                  "weight_decay": ("log", 1e-6, 1e-2)},
)
