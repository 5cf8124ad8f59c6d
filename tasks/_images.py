"""Image classification plumbing shared by the CIFAR, Tiny-ImageNet, Imagenette and ImageWoof tasks.

Small images (32-64 px) take the fast path, ``ImageTask``: the uint8 images are moved to the training
device once; every batch is gathered there and augmented and normalised there, batched (random
crop with zero padding + horizontal flip as two gathers, optional random erasing), driven by a
``torch.Generator`` seeded from the run seed, so a seed fixes the batches. Large images (224 px)
take ``FolderTask``: torchvision ``ImageFolder`` + timm's transforms in DataLoader worker processes.

Validation is carved from the training set with a fixed seed (``split_train_val``); the test split
(the published 'val' split for Imagenette, Tiny-ImageNet and ImageWoof) is only reported. The test
split is put in a fixed random order once, so that an ``eval_examples`` cap takes a class-mixed subset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rootbench.tasks import ArrayTask, Task, TierConfig
from rootbench.tasks._base import split_train_val
from rootbench.tasks.data import IMAGE_SETS, load_images

EVAL_SEED = 1234  # fixed order of the test split (independent of the run seed)


@dataclass(frozen=True)
class ImageConfig(TierConfig):
    """Data and augmentation of an image task (model fields are added by each family)."""

    dataset: str = "cifar10"  # a data set of tasks.data, or "synthetic" (smoke tiers: generated stand-in)
    image_size: int = 32  # model input; stored images of another size are resized once on load
    n_val: int = 5000  # validation examples carved from the training set (fixed seed)
    n_train: int = 0  # training examples (0: all that remain after the validation split)
    pad: int = 4  # random crop with this zero padding (0: no crop)
    flip: bool = True  # random horizontal flip
    erase_prob: float = 0.0  # random erasing (pixel mode, as timm's RandomErasing)
    label_smoothing: float = 0.0
    classes: int = 10  # number of classes of the synthetic stand-in (real data sets have their own)
    class_subset: int = 0  # keep only labels < class_subset (0: all classes)
    color_jitter: float = 0.0  # folder pipeline (224 px) only
    num_workers: int = 8  # folder pipeline only: DataLoader worker processes


# ---------------------------------------------------------------------------------------------
# on-device augmentation (batched, uint8 until normalisation)


def crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of each image from its ``pad``-zero-padded copy, then a random horizontal flip.

    Same distribution as torchvision's ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip()``;
    done for the whole batch as a row gather and a column gather (any dtype, any device).
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        flipped = torch.rand(b, 1, generator=generator, device=dev) < 0.5
        cols = torch.where(flipped, w - 1 - cols, cols)
    rows = dy + torch.arange(h, device=dev)  # (b, h) source rows, then (b, w) source columns: two gathers
    x = x.gather(2, rows[:, None, :, None].expand(b, c, h, x.shape[3]))
    return x.gather(3, (dx + cols)[:, None, None, :].expand(b, c, h, w))


def random_erase(
    x: torch.Tensor, prob: float, generator: torch.Generator, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), attempts: int = 10
) -> torch.Tensor:
    """timm's ``RandomErasing(prob, mode='pixel')`` batched: per image, with probability ``prob``, one
    rectangle of area fraction in ``scale`` and aspect ratio in ``ratio`` (log-uniform) gets N(0, 1)
    noise (the input is already normalised). Up to ``attempts`` draws to fit, as timm."""
    b, c, h, w = x.shape
    dev = x.device
    area = torch.empty(b, attempts, device=dev).uniform_(*scale, generator=generator) * (h * w)
    log_r = torch.empty(b, attempts, device=dev).uniform_(*np.log(ratio), generator=generator)
    eh = torch.sqrt(area * torch.exp(log_r)).round().long()
    ew = torch.sqrt(area / torch.exp(log_r)).round().long()
    fits = (eh < h) & (ew < w)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(b, dtype=torch.long, device=dev))
    eh, ew = eh.gather(1, first[:, None]), ew.gather(1, first[:, None])
    use = fits.any(1, keepdim=True) & (torch.rand(b, 1, generator=generator, device=dev) < prob)
    top = (torch.rand(b, 1, generator=generator, device=dev) * (h - eh + 1).clamp(min=1)).long()
    left = (torch.rand(b, 1, generator=generator, device=dev) * (w - ew + 1).clamp(min=1)).long()
    r = torch.arange(h, device=dev)[None, :]
    cc = torch.arange(w, device=dev)[None, :]
    mask = (
        ((r >= top) & (r < top + eh))[:, :, None] & ((cc >= left) & (cc < left + ew))[:, None, :] & use[:, :, None]
    )[:, None]
    mask = mask.expand(b, c, h, w)
    if x.is_cuda:  # no host sync on the GPU: draw noise for every pixel
        return torch.where(mask, torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype), x)
    noise = torch.randn(int(mask.sum()), generator=generator, device=dev, dtype=x.dtype)  # erased pixels only
    return x.masked_scatter(mask, noise)


# ---------------------------------------------------------------------------------------------
# the in-memory (on-device) task


class ImageTask(ArrayTask):
    """Classification on uint8 NCHW tensors that live on the training device after the first batch."""

    def __init__(self, spec, tier, config: ImageConfig, data: dict, model_fn, mean, std, source: str):
        super().__init__(spec, tier, config, data, model_fn=model_fn, transform=self.augment)
        self.data_source = source
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self._on_device: dict = {}
        self._stats: dict = {}

    def on(self, device) -> dict:
        """All splits on ``device`` (moved once, then reused by every batch and evaluation)."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device = {key: {k: (x.to(device), y.to(device)) for k, (x, y) in self.data.items()}}
        return self._on_device[key]

    def augment(self, x: torch.Tensor, train: bool, generator) -> torch.Tensor:
        c = self.config
        if train and (c.pad or c.flip):
            x = crop_flip(x, c.pad, c.flip, generator)
        if x.device not in self._stats:  # copied once: a per-batch host-to-device copy would sync the GPU
            self._stats[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        mean, std = self._stats[x.device]
        x = (x.float() - mean) / std
        if train and c.erase_prob > 0:
            x = random_erase(x, c.erase_prob, generator)
        return x

    def train_batches(self, generator, device):
        x_all, y_all = self.on(device)["train"]
        bs = self.config.batch_size
        dev = torch.device(device)
        aug_gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
        aug_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        while True:
            order = torch.randperm(self.n_train, generator=generator).to(dev)
            for i in range(0, self.n_train - bs + 1, bs):  # drop the last partial batch: B is constant
                idx = order[i : i + bs]
                yield self.augment(x_all[idx], True, aug_gen), y_all[idx]

    def eval_batches(self, split, device):
        x_all, y_all = self.on(device)["train_eval" if split == "train" else split]
        n, bs = min(len(x_all), self.config.eval_examples), self.config.eval_batch_size
        for i in range(0, n, bs):
            yield self.augment(x_all[i : min(i + bs, n)], False, None), y_all[i : min(i + bs, n)]

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs.float(), targets, label_smoothing=self.config.label_smoothing, reduction="mean")


def _nchw(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return (x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)).contiguous()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 NCHW images once (box filter for integer factors, else antialiased bilinear), in chunks."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    h, w = x.shape[-2:]
    if h == w and h % size == 0:  # an integer factor: the box filter (mean of each k x k block)

        def resize(chunk):
            return F.avg_pool2d(chunk.float(), h // size)
    else:

        def resize(chunk):
            return F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    return torch.cat([resize(x[i : i + 4096]).round_().clamp_(0, 255).to(torch.uint8) for i in range(0, len(x), 4096)])


def synthetic_images(c: ImageConfig, n_train: int = 256, n_test: int = 64) -> tuple[dict, int]:
    """Generated stand-in data of the right shapes (smoke tiers only): class-dependent colour + noise."""
    g = torch.Generator().manual_seed(0)
    n = n_train + n_test
    y = torch.randint(0, c.classes, (n,), generator=g)
    tint = torch.randint(0, 256, (c.classes, 3, 1, 1), generator=g).float()
    x = 0.5 * tint[y] + 0.5 * torch.randint(0, 256, (n, 3, c.image_size, c.image_size), generator=g).float()
    x = x.to(torch.uint8).permute(0, 2, 3, 1).numpy()  # NHWC, as the plain files store images
    y = y.numpy()
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}, c.classes


def image_data(c: ImageConfig) -> tuple[dict, int, tuple, tuple, str]:
    """Splits ``{train, val, train_eval, test}`` (uint8 NCHW at ``c.image_size``), classes, mean, std, source."""
    if c.dataset == "synthetic":
        raw, classes = synthetic_images(c)
        mean, std, source = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "synthetic stand-in"
        n_val = min(c.n_val, len(raw["x_train"]) // 4)
    else:
        if c.dataset not in IMAGE_SETS or not IMAGE_SETS[c.dataset].image_size:
            raise ValueError(
                f"data set {c.dataset!r} has no in-memory form; use one of "
                f"{', '.join(k for k, v in IMAGE_SETS.items() if v.image_size)} or synthetic"
            )
        arrays, source = load_images(c.dataset)
        s = IMAGE_SETS[c.dataset]
        raw, classes, mean, std, n_val = arrays, s.num_classes, s.mean, s.std, c.n_val
        if c.class_subset:  # e.g. Tiny-ImageNet's first 100 classes: CIFAR-100's shape (500 train images each)
            if not 0 < c.class_subset <= classes:
                raise ValueError(f"class_subset={c.class_subset} must lie in 1..{classes} for {c.dataset!r}")
            raw, classes = {}, c.class_subset
            for split in ("train", "test"):
                keep = np.flatnonzero(np.asarray(arrays[f"y_{split}"]) < classes)
                raw[f"x_{split}"], raw[f"y_{split}"] = (
                    arrays[f"x_{split}"][keep],
                    np.asarray(arrays[f"y_{split}"])[keep],
                )
    splits = split_train_val(
        raw["x_train"], raw["y_train"], n_val=n_val, n_train=c.n_train or None, n_train_eval=c.eval_examples
    )
    order = torch.randperm(len(raw["y_test"]), generator=torch.Generator().manual_seed(EVAL_SEED))
    n_test = min(len(order), c.eval_examples)
    idx = order[:n_test].numpy()
    splits["test"] = (raw["x_test"][idx], np.asarray(raw["y_test"])[idx])  # numpy: reads only these rows
    out = {}
    for k, (x, y) in splits.items():
        out[k] = (
            _resize(_nchw(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x), c.image_size),
            torch.as_tensor(y).long(),
        )
    ymax = int(max(int(v[1].max()) for v in out.values() if len(v[1])))
    if ymax >= classes:
        raise ValueError(f"data set {c.dataset!r}: label {ymax} out of range for {classes} classes")
    return out, classes, mean, std, source


def build_image_task(spec, tier, c: ImageConfig, model_for) -> ImageTask:
    """``model_for(num_classes, config) -> nn.Module``; data from ``image_data`` (on-device pipeline)."""
    data, classes, mean, std, source = image_data(c)
    return ImageTask(spec, tier, c, data, model_fn=lambda: model_for(classes, c), mean=mean, std=std, source=source)


# ---------------------------------------------------------------------------------------------
# the folder (DataLoader) task, for 224-px training


class FolderTask(Task):
    """ImageFolder train/ and val/ read by DataLoader workers with timm's train and eval transforms.

    The validation split is carved from train/ with a fixed seed; val/ is the test split.
    """

    def __init__(self, spec, tier, config: ImageConfig, folder: str, model_fn, mean, std):
        super().__init__(spec, tier, config)
        from timm.data import create_transform
        from torchvision.datasets import ImageFolder

        c = config
        self.model_fn, self.folder = model_fn, folder
        self.data_source = f"imagefolder:{folder}"
        self.train_tf = create_transform(
            c.image_size,
            is_training=True,
            hflip=0.5 if c.flip else 0.0,
            color_jitter=c.color_jitter or None,
            auto_augment=None,
            interpolation="bicubic",
            re_prob=c.erase_prob,
            re_mode="pixel",
            re_count=1,
            mean=mean,
            std=std,
        )
        self.eval_tf = create_transform(
            c.image_size, is_training=False, interpolation="bicubic", crop_pct=0.875, mean=mean, std=std
        )
        self.train_set = ImageFolder(os.path.join(folder, "train"), transform=self.train_tf)
        self.train_eval_set = ImageFolder(os.path.join(folder, "train"), transform=self.eval_tf)
        self.test_set = ImageFolder(os.path.join(folder, "val"), transform=self.eval_tf)
        self.num_classes = len(self.train_set.classes)
        order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(0))
        self.val_idx, self.train_idx = order[: c.n_val].tolist(), order[c.n_val :].tolist()
        if c.n_train:
            self.train_idx = self.train_idx[: c.n_train]
        self.n_train = len(self.train_idx)
        test_order = torch.randperm(len(self.test_set), generator=torch.Generator().manual_seed(EVAL_SEED))
        self.test_idx = test_order.tolist()
        self._eval_loaders: dict = {}
        if self.n_train < c.batch_size:
            raise ValueError(f"task {spec.name}: batch_size {c.batch_size} exceeds the {self.n_train} training images")

    def build_model(self):
        return self.model_fn(self.num_classes)

    def _loader(self, dataset, indices, batch_size, generator=None, shuffle=False, device="cpu"):
        from torch.utils.data import DataLoader, Subset, SubsetRandomSampler

        w = self.config.num_workers
        kwargs = dict(num_workers=w, pin_memory=torch.device(device).type == "cuda", persistent_workers=w > 0)
        if w:
            kwargs["prefetch_factor"] = 4
        if shuffle:
            return DataLoader(
                dataset,
                batch_size=batch_size,
                sampler=SubsetRandomSampler(indices, generator=generator),
                drop_last=True,
                generator=generator,
                **kwargs,
            )
        return DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, **kwargs)

    def train_batches(self, generator, device):
        loader_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        loader = self._loader(self.train_set, self.train_idx, self.config.batch_size, loader_gen, True, device)
        while True:  # worker seeds come from loader_gen: a run seed fixes order and augmentation
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def eval_batches(self, split, device):
        n = self.config.eval_examples
        dataset, idx = {
            "train": (self.train_eval_set, self.train_idx[:n]),
            "val": (self.train_eval_set, self.val_idx[:n]),
            "test": (self.test_set, self.test_idx[:n]),
        }[split]
        if split not in self._eval_loaders:  # persistent workers: started once per split
            self._eval_loaders[split] = self._loader(dataset, idx, self.config.eval_batch_size, device=device)
        for x, y in self._eval_loaders[split]:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs.float(), targets, label_smoothing=self.config.label_smoothing, reduction="mean")
