"""AdamW, wrapped from ``torch.optim.AdamW`` with rootbench's common names.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, https://arxiv.org/abs/1711.05101.
Mapping (Lin et al. 2024): betas = (momentum, 1 - lr_cov), eps = damping; bias correction on,
decoupled weight decay, state in the parameter dtype. The root-based partner of ``rfadamw``.
"""
import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._torch_impl import impl_kwargs, materialize


def adamw(params, lr: float = 1e-3, momentum: float = 0.9, lr_cov: float = 1e-3, damping: float = 1e-8,
          weight_decay: float = 1e-2, impl: str = "auto") -> torch.optim.AdamW:
    """AdamW (torch.optim.AdamW): betas=(momentum, 1-lr_cov), eps=damping, decoupled weight decay."""
    params = materialize(params)
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 1.0 - lr_cov), eps=damping,
                             weight_decay=weight_decay, **impl_kwargs(impl, params))


register_optimizer(
    "adamw", adamw,
    description="AdamW: Adam with decoupled weight decay, square-root preconditioner (torch.optim.AdamW)",
    paper="https://arxiv.org/abs/1711.05101",
    family="adam", root_free=False, pair="rfadamw", wd_kind="decoupled", test_lr=0.05, preconditioner="diagonal",
    search_space={"lr": ("log", 1e-5, 1e-2), "momentum": ("log", 0.1, 0.99), "lr_cov": ("log", 1e-4, 1e-1),
                  "damping": ("log", 1e-12, 1e-6), "weight_decay": ("log", 1e-4, 1e-1)},
)
