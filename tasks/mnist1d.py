"""MNIST-1D: a procedurally generated 1-D digit data set, with an MLP and a small 1-D CNN.

Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024, https://arxiv.org/abs/2011.14439.
The ``mnist1d`` package generates it locally, so these tasks need no download and no data files:
they are rootbench's embedded default. Generated sets are cached in the data root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rootbench.tasks import ArrayTask, TierConfig, data_root, register_task
from rootbench.tasks._base import split_train_val

PAPER = "https://arxiv.org/abs/2011.14439"


@dataclass(frozen=True)
class Mnist1dConfig(TierConfig):
    num_samples: int = 10000  # generated examples; 80% train (minus validation), 20% test
    n_val: int = 1000
    width: int = 256  # MLP hidden width / CNN channels


def load_mnist1d(num_samples: int, seed: int = 42) -> dict:
    """Generate (or read the cached) MNIST-1D set; keys x, y, x_test, y_test."""
    path = os.path.join(data_root(), f"mnist1d_{num_samples}_{seed}.npz")
    try:
        with np.load(path) as z:
            return {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, KeyError, ValueError):
        pass
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator; leave it as found
    try:
        ds = make_dataset(args)
    finally:
        np.random.set_state(state)
    out = {k: ds[k] for k in ("x", "y", "x_test", "y_test")}
    try:  # cache atomically; a read-only data root only costs the regeneration next time
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


class Cnn1d(nn.Module):
    """Three strided 1-D convolutions and a linear head (the MNIST-1D paper's ConvNet, widened)."""

    def __init__(self, channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(channels * 5, 10)

    def forward(self, x):
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


def _builder(model: str):
    def build(spec, tier, c: Mnist1dConfig):
        raw = load_mnist1d(c.num_samples)
        x = torch.tensor(raw["x"], dtype=torch.float32)
        y = torch.tensor(raw["y"], dtype=torch.int64)
        data = split_train_val(x, y, n_val=c.n_val)
        data["test"] = (torch.tensor(raw["x_test"], dtype=torch.float32), torch.tensor(raw["y_test"]).long())
        model_fn = (lambda: mlp(c.width)) if model == "mlp" else (lambda: Cnn1d(c.width))
        return ArrayTask(spec, tier, c, data, model_fn=model_fn)

    return build


for _model, _tiers in {
    "mlp": {
        "smoke": Mnist1dConfig(
            steps=40, batch_size=64, eval_every=20, target=0.3, num_samples=2000, n_val=200, width=32, eval_examples=256
        ),
        "quick": Mnist1dConfig(steps=1500, batch_size=128, eval_every=150, target=0.6, width=256),
        "full": Mnist1dConfig(
            steps=12000,
            batch_size=128,
            eval_every=500,
            target=0.7,
            num_samples=40000,
            width=512,
            lr_schedule="cosine",
            eval_examples=8000,
        ),
    },
    "cnn": {
        "smoke": Mnist1dConfig(
            steps=40, batch_size=64, eval_every=20, target=0.3, num_samples=2000, n_val=200, width=8, eval_examples=256
        ),
        "quick": Mnist1dConfig(
            steps=1500, batch_size=128, eval_every=150, target=0.85, width=32, lr_schedule="multistep"
        ),
        "full": Mnist1dConfig(
            steps=12000,
            batch_size=128,
            eval_every=500,
            target=0.95,
            num_samples=40000,
            width=64,
            lr_schedule="cosine",
            eval_examples=8000,
        ),
    },
}.items():
    register_task(
        f"mnist1d-{_model}",
        build=_builder(_model),
        tiers=_tiers,
        metric="accuracy",
        higher_is_better=True,
        family="mnist1d",
        paper=PAPER,
        model_kind=_model,
        description=f"MNIST-1D classification with a {'2-hidden-layer MLP' if _model == 'mlp' else '3-layer 1-D CNN'}"
        " (generated locally, no download)",
    )
