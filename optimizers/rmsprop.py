"""RMSProp, wrapped from ``torch.optim.RMSprop`` with rootbench's common names.

Tieleman & Hinton, "Lecture 6.5 - RMSProp", COURSERA: Neural Networks for Machine Learning, 2012.
The paper's root-based diagonal baseline ("PyTorch's built-in RMSProp"; Lin et al. 2024):
alpha = 1 - lr_cov, eps = damping (outside the square root), heavy-ball momentum, coupled L2 weight
decay, v0 = 0, no bias correction, state in the parameter dtype. The root-based partner of ``rfrmsprop``.

What differs from AdamW: no first-moment EMA (heavy-ball momentum on g / (sqrt(v) + eps) instead), no
bias correction, and weight decay is coupled L2 (added to the gradient before preconditioning).
"""

import torch

from rootbench.optimizers import register_optimizer
from rootbench.optimizers._torch_impl import impl_kwargs, materialize


def rmsprop(
    params,
    lr: float = 1e-2,
    lr_cov: float = 1e-2,
    damping: float = 1e-8,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    impl: str = "auto",
) -> torch.optim.RMSprop:
    """RMSProp (torch.optim.RMSprop): alpha=1-lr_cov, eps=damping, coupled L2 weight decay."""
    params = materialize(params)
    # torch's RMSprop has no fused kernel: auto picks foreach, and impl=fused is refused. foreach is also
    # the faster of the two on CPU: 2.2-3.2x fused AdamW vs 2.6-4.2x for the for-loop on the quick-tier
    # models (one thread, CPU time, momentum 0.9)
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=1.0 - lr_cov,
        eps=damping,
        momentum=momentum,
        weight_decay=weight_decay,
        **impl_kwargs(impl, params, fused_ok=False),
    )


register_optimizer(
    "rmsprop",
    rmsprop,
    description="RMSProp: square-root diagonal preconditioner, coupled L2 weight decay (torch.optim.RMSprop)",
    paper="https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf",
    family="rmsprop",
    root_free=False,
    pair="rfrmsprop",
    wd_kind="l2",
    test_lr=0.01,
    preconditioner="diagonal",
    # lr: four decades (no published RMSProp run; centred as AdamW's); lr_cov = 1 - alpha: time constant from
    # 10 steps to half the run; momentum with 1 - m log-uniform
    search_space={
        "lr": ("log", 1e-5, 1e-1),
        "lr_cov": ("horizon", 10, 0.5),
        "damping": ("log", 1e-10, 5e-4),
        "momentum": ("log1m", 1e-2, 1.0),
        "weight_decay": ("log", 1e-5, 5e-2),
    },
    ema_rates=("lr_cov",),
)
