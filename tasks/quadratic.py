"""The noisy quadratic: linear least squares on ill-conditioned Gaussian inputs (unit-test task).

Every mini-batch gives a noisy gradient of one fixed convex quadratic, as in the noisy quadratic
model of Zhang et al., "Which Algorithmic Choices Matter at Which Batch Sizes?", NeurIPS 2019
(https://arxiv.org/abs/1907.04164). Input scales span two decades, so preconditioning matters.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rootbench.tasks import ArrayTask, TierConfig, register_task
from rootbench.tasks._base import split_train_val


@dataclass(frozen=True)
class QuadraticConfig(TierConfig):
    dim_in: int = 32
    dim_out: int = 4
    n_examples: int = 4096
    noise: float = 0.25  # label noise: the loss floor is dim_out * noise**2 / 2


class QuadraticTask(ArrayTask):
    metric_name = "loss"

    def loss(self, outputs, targets):
        return 0.5 * F.mse_loss(outputs.float(), targets.float(), reduction="mean") * targets.shape[-1]

    def metric(self, outputs, targets):
        return 0.5 * ((outputs.float() - targets.float()) ** 2).sum(-1)


def build(spec, tier, c: QuadraticConfig):
    g = torch.Generator().manual_seed(1234)  # the problem is fixed; run seeds change only the order
    scales = torch.logspace(0, -2, c.dim_in)
    w_true = torch.randn(c.dim_in, c.dim_out, generator=g)
    n = c.n_examples + 1024
    x = torch.randn(n, c.dim_in, generator=g) * scales
    y = x @ w_true + c.noise * torch.randn(n, c.dim_out, generator=g)
    data = split_train_val(x[: c.n_examples], y[: c.n_examples], n_val=512)
    data["test"] = (x[c.n_examples :], y[c.n_examples :])
    return QuadraticTask(spec, tier, c, data, model_fn=lambda: torch.nn.Linear(c.dim_in, c.dim_out))


register_task(
    "quadratic",
    build=build,
    metric="loss",
    higher_is_better=False,
    family="quadratic",
    model_kind="linear",
    description="Noisy quadratic: linear least squares, ill-conditioned inputs (unit tests)",
    paper="https://arxiv.org/abs/1907.04164",
    tiers={
        "smoke": QuadraticConfig(steps=60, batch_size=32, eval_every=20, target=0.5, eval_examples=512),
        "quick": QuadraticConfig(steps=500, batch_size=64, eval_every=50, target=0.2),
        "full": QuadraticConfig(steps=5000, batch_size=128, eval_every=250, target=0.15, n_examples=65536),
    },
)
