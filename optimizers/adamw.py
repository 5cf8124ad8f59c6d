"""AdamW, wrapped from ``torch.optim.AdamW`` with rootbench's common names.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, https://arxiv.org/abs/1711.05101.
Mapping (Lin et al. 2024): betas = (momentum, 1 - lr_cov), eps = damping; bias correction on,
decoupled weight decay, state in the parameter dtype. The root-based partner of ``rfadamw``.
"""

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._torch_impl import impl_kwargs, materialize


def adamw(
    params,
    lr: float = 1e-3,
    momentum: float = 0.9,
    lr_cov: float = 1e-3,
    damping: float = 1e-8,
    weight_decay: float = 1e-2,
    impl: str = "auto",
) -> torch.optim.AdamW:
    """AdamW (torch.optim.AdamW): betas=(momentum, 1-lr_cov), eps=damping, decoupled weight decay."""
    params = materialize(params)
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=(momentum, 1.0 - lr_cov),
        eps=damping,
        weight_decay=weight_decay,
        **impl_kwargs(impl, params),
    )


register_optimizer(
    "adamw",
    adamw,
    description="AdamW: Adam with decoupled weight decay, square-root preconditioner (torch.optim.AdamW)",
    paper="https://arxiv.org/abs/1711.05101",
    family="adam",
    root_free=False,
    pair="rfadamw",
    wd_kind="decoupled",
    test_lr=0.05,
    preconditioner="diagonal",
    # lr: four decades around the paper's region (2.4e-4 to 2.7e-3); lr_cov = 1 - beta2, its time constant from
    # 10 steps to half the run; momentum = beta1 with 1 - beta1 log-uniform
    search_space={
        "lr": ("log", 1e-5, 1e-1),
        "momentum": ("log1m", 1e-2, 1.0),
        "lr_cov": ("horizon", 10, 0.5),
        "damping": ("log", 1e-12, 1e-6),
        "weight_decay": ("log", 1e-4, 1e-1),
    },
    published={
        "cnn": {
            "lr": 2.43e-4,
            "lr_cov": 5.14e-4,
            "damping": 5.43e-11,
            "momentum": 0.277,
            "weight_decay": 4.47e-2,
        },  # ResNet-34 on CIFAR-100
        "vit": {"lr": 4.43e-4, "lr_cov": 1.62e-3, "damping": 3.01e-9, "momentum": 0.736, "weight_decay": 3.44e-2},
    },  # GC-ViT on ImageWoof
    ema_rates=("lr_cov",),
)
