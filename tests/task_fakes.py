"""Tiny stand-ins of every data set, in the exact on-disk formats the data layer reads.

They let full-tier configurations build and take a training step without the real data (and without
network): keras-style npz files, an ImageFolder tree of JPEGs, and text files.
"""

import os

import numpy as np
import pytest
import torch

WORDS = "the of and in to a was on for as by with he at from his an is that it <unk> = @-@ , .".split()


def write_image_npz(path, n_train, n_test, size, classes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size, 3), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.int64) % classes,
        "x_test": rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.int64) % classes,
    }
    np.savez(path, **arrays)
    return arrays


def write_image_folder(root, classes=10, per_class=2, val_per_class=1, size=(240, 260), seed=0):
    """``root/{train,val}/<class>/<i>.JPEG`` with random RGB images (not square, as real photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            d = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(os.path.join(d, f"{i}.JPEG"), quality=80)
    return root


def word_text(n_lines, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        k = int(rng.integers(0, 12))
        lines.append(" " + " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), k)) + " " if k else "")
    return "\n".join(lines) + "\n"


def write_all(root):
    """Every data set the tasks read, tiny; returns ``root``."""
    os.makedirs(root, exist_ok=True)
    write_image_npz(os.path.join(root, "cifar10.npz"), 64, 16, 32, 10)
    write_image_npz(os.path.join(root, "cifar100.npz"), 64, 16, 32, 100)
    write_image_npz(os.path.join(root, "tinyimagenet32.npz"), 64, 16, 32, 200)
    write_image_npz(os.path.join(root, "imagenette64.npz"), 64, 16, 64, 10)
    write_image_folder(os.path.join(root, "imagewoof2-320"))
    shakespeare = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 200
    with open(os.path.join(root, "tinyshakespeare.txt"), "w") as f:
        f.write(shakespeare)
    for name, n in (
        ("wikitext2_valid", 400),
        ("wikitext2_test", 300),
        ("wikitext103_train", 600),
        ("wikitext103_valid", 200),
        ("wikitext103_test", 200),
    ):
        with open(os.path.join(root, f"{name}.txt"), "w") as f:
            f.write(word_text(n, seed=len(name) + n))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Small ops: one thread is as fast, and immune to OpenMP stalls when the cores are shared.

    Autouse in every module that imports it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
