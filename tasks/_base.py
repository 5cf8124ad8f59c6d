"""What a task is: a tier config, a model builder, batches, a mean-reduced loss and a metric.

The runner owns the loop; a task only answers "which model", "which batches" and "how good".
``ArrayTask`` covers every task whose splits fit in memory as tensors (all of rootbench's tasks):
the train order is a seeded permutation per epoch, evaluation walks fixed subsets in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "val", "test")  # "train" = a fixed training subset evaluated in eval mode


@dataclass(frozen=True)
class TierConfig:
    """Budget and protocol of one tier; families subclass it to add model/data fields.

    Every field can be overridden on the command line (``steps=200``) and is part of the run id.
    """

    steps: int  # optimizer steps (the budget)
    batch_size: int  # B: examples the loss is averaged over per step
    eval_every: int  # evaluate every this many steps (and at the last step)
    target: float | None = None  # validation metric that counts as "reached" for time-to-target
    lr_schedule: str = "constant"  # constant | cosine | multistep (applied by the runner to lr only)
    warmup_steps: int = 0  # linear learning-rate warm-up
    eval_examples: int = 2048  # cap on the examples of each eval split (val, test, train subset)
    eval_batch_size: int = 512

    def __post_init__(self):
        """Nonsense budgets fail here, before any work: steps=0 or batch_size=0 is no benchmark."""
        from rootbench.harness.config import LR_SCHEDULES
        from rootbench.harness.registry import UsageError

        for name in ("steps", "batch_size", "eval_every", "eval_examples", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"task setting {name}={value!r} must be a positive integer")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise UsageError(f"task setting warmup_steps={self.warmup_steps!r} must be a non-negative integer")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"task setting lr_schedule={self.lr_schedule!r} is unknown; use {', '.join(LR_SCHEDULES)}")


def replace_config(config, overrides: dict):
    from rootbench.harness.registry import check_keys, dataclass_defaults

    checked = check_keys("task setting", overrides, dataclass_defaults(config))
    return dataclasses.replace(config, **checked)


class Task:
    """Base class; subclasses implement ``build_model``, ``train_batches`` and ``eval_batches``."""

    metric_name = "accuracy"

    def __init__(self, spec, tier: str, config: TierConfig):
        self.spec, self.tier, self.config = spec, tier, config

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    n_train: int = 0  # examples per epoch, for the epoch column
    data_source: str = "generated"  # recorded with every run: "file:<path>", "torchvision", "synthetic stand-in", ...

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def train_batches(self, generator: torch.Generator, device) -> Iterator[tuple]:
        raise NotImplementedError

    def eval_batches(self, split: str, device) -> Iterator[tuple]:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (mean reduction: the root-free methods' B assumes it)."""
        return F.cross_entropy(outputs.float().flatten(0, -2), targets.flatten(), reduction="mean")

    def metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example metric values (summed over the split, then divided by the count)."""
        return (outputs.argmax(-1) == targets).float().flatten()


class ArrayTask(Task):
    """A task whose splits are in-memory tensors ``{split: (x, y)}``.

    ``transform(x, train, generator)`` turns a stored batch (e.g. uint8 images) into model input
    on the target device; training batches are drawn epoch by epoch from a seeded permutation.
    """

    def __init__(
        self, spec, tier, config, data: dict, model_fn: Callable[[], torch.nn.Module], transform: Callable | None = None
    ):
        super().__init__(spec, tier, config)
        self.data, self.model_fn, self.transform = data, model_fn, transform
        self.n_train = len(data["train"][0])
        if self.n_train < config.batch_size:
            raise ValueError(
                f"task {spec.name}: batch_size {config.batch_size} exceeds the {self.n_train} training examples"
            )

    def build_model(self):
        return self.model_fn()

    def _prepare(self, x, y, device, train, generator):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.transform is not None:
            x = self.transform(x, train, generator)
        return x, y

    def train_batches(self, generator, device):
        x_all, y_all = self.data["train"]
        bs = self.config.batch_size
        aug_gen = torch.Generator(device=device if torch.device(device).type == "cuda" else "cpu")
        aug_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        while True:
            order = torch.randperm(self.n_train, generator=generator)
            for i in range(0, self.n_train - bs + 1, bs):  # drop the last partial batch: B is constant
                idx = order[i : i + bs]
                yield self._prepare(x_all[idx], y_all[idx], device, True, aug_gen)

    def eval_batches(self, split, device):
        key = "train_eval" if split == "train" else split
        x_all, y_all = self.data[key]
        n = min(len(x_all), self.config.eval_examples)
        bs = self.config.eval_batch_size
        for i in range(0, n, bs):
            yield self._prepare(x_all[i : min(i + bs, n)], y_all[i : min(i + bs, n)], device, False, None)


def split_train_val(x, y, n_val: int, seed: int = 0, n_train: int | None = None, n_train_eval: int = 2048):
    """Carve a validation split from the training set with a fixed seed (never the test set).

    Returns ``{"train", "val", "train_eval"}``: ``train_eval`` is a fixed subset of the training
    examples, evaluated in eval mode for the train-test generalisation gap.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if n_train is not None:
        train_idx = train_idx[:n_train]

    def take(a, idx):  # numpy (e.g. memory-mapped) arrays: read only the selected rows
        if isinstance(a, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(a[idx.numpy()]))
        return torch.as_tensor(a)[idx]

    return {
        "train": (take(x, train_idx), take(y, train_idx)),
        "val": (take(x, val_idx), take(y, val_idx)),
        "train_eval": (take(x, train_idx[:n_train_eval]), take(y, train_idx[:n_train_eval])),
    }
