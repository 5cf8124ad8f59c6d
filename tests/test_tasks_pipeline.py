"""The input pipelines: on-device augmentation matches its reference definition and is fixed by the
seed; normalisation is exact; text batches are next-token windows."""

import pytest
import torch
import torch.nn.functional as F

from rootbench.tasks import create_task
from rootbench.tasks._images import crop_flip, random_erase
from rootbench.tasks.text import build_vocab, char_streams, encode_words, text_lines, word_lines
from tests.task_fakes import one_thread, write_all  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_all(str(tmp_path_factory.mktemp("fake_data")))


def reference_crops(x, pad):
    """Every (dy, dx, flip) crop of torchvision's RandomCrop(padding=pad) + RandomHorizontalFlip."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad,) * 4)
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = xp[..., dy : dy + h, dx : dx + w]
            out += [crop, crop.flip(-1)]
    return torch.stack(out, 1)  # (B, 2 * (2 pad + 1)^2, C, H, W)


def test_crop_flip_draws_exactly_the_padded_crops_and_flips_uniformly():
    x = torch.randint(1, 256, (1000, 2, 5, 5), dtype=torch.uint8)
    out = crop_flip(x, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    cands = reference_crops(x, 2)
    match = (cands == out[:, None]).flatten(2).all(-1)  # (B, 50)
    assert match.any(1).all(), "every output is one of the reference crops"
    first = match.float().argmax(1)
    counts = torch.bincount(first, minlength=50)
    assert (counts > 0).all(), "all 25 offsets x 2 flips occur"
    flipped = (cands[:, 1::2] == out[:, None]).flatten(2).all(-1).any(1) & ~(cands[:, 0::2] == out[:, None]).flatten(
        2
    ).all(-1).any(1)
    assert 0.4 < flipped.float().mean() < 0.6


def test_augmentation_is_fixed_by_the_seed():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    a = crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    b = crop_flip(x, 4, True, torch.Generator().manual_seed(3))
    c = crop_flip(x, 4, True, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    xf = x.float()
    assert torch.equal(
        random_erase(xf, 0.5, torch.Generator().manual_seed(1)), random_erase(xf, 0.5, torch.Generator().manual_seed(1))
    )


def test_random_erasing_puts_one_noise_rectangle_of_bounded_area_and_ratio():
    x = torch.zeros(400, 1, 24, 24)
    out = random_erase(x, 1.0, torch.Generator().manual_seed(0))
    erased = out[:, 0] != 0
    assert erased.any((1, 2)).float().mean() > 0.95  # (a draw that never fits leaves the image as is)
    for m in erased[erased.any((1, 2))]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert m.sum() == h * w, "a filled rectangle"
        assert 0.02 * 576 * 0.5 <= h * w <= 576 / 3 * 1.3
        assert 0.3 / 2 <= h / w <= 3.3 * 2
    assert torch.equal(random_erase(x + 1, 0.0, torch.Generator().manual_seed(0)), x + 1)
    frac = (random_erase(x, 0.25, torch.Generator().manual_seed(1))[:, 0] != 0).any((1, 2)).float().mean()
    assert 0.17 < frac < 0.33


def test_image_task_batches_are_seeded_normalised_and_stay_on_the_device(fake_root, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", fake_root)
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    task = create_task("cifar10-resnet", "quick", n_val=8, batch_size=8, eval_examples=16)
    assert task.data_source.startswith("file:")
    first = [next(task.train_batches(torch.Generator().manual_seed(s), "cpu")) for s in (0, 0, 1)]
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][0], first[2][0])
    assert task.on("cpu") is task.on("cpu"), "moved once, reused"
    x_stored, y_stored = task.data["val"]
    xe, ye = next(iter(task.eval_batches("val", "cpu")))
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    assert torch.allclose(xe, (x_stored.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(ye, y_stored)


def test_text_batches_are_next_token_windows(fake_root, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", fake_root)
    task = create_task("shakespeare-char-gpt", "quick", block_size=16, batch_size=4, eval_examples=5, eval_batch_size=2)
    g = torch.Generator().manual_seed(0)
    x, y = next(task.train_batches(g, "cpu"))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = next(task.train_batches(torch.Generator().manual_seed(0), "cpu"))
    assert torch.equal(x, x2)
    evals = list(task.eval_batches("val", "cpu"))
    xs = torch.cat([e[0] for e in evals])
    assert xs.shape == (5, 16)
    stream = task.streams["val"].long()
    assert torch.equal(xs.flatten(), stream[:80]), "consecutive, non-overlapping windows"


def test_char_splits_and_word_tokens():
    text = "".join(chr(97 + i % 7) for i in range(1000))
    streams, vocab = char_streams(text)
    assert vocab == 7 and [len(streams[k]) for k in ("train", "val", "test")] == [850, 54, 96]
    # train is the first 85 %; the held-out 150 characters are dealt in 12-character blocks, every third
    # to validation, so val and test interleave over the same stretch of text
    held = text[850:]
    blocks = [held[i : i + 12] for i in range(0, 150, 12)]
    decode = lambda ids: "".join(chr(97 + int(i)) for i in ids)  # noqa: E731
    assert decode(streams["train"]) == text[:850]
    assert decode(streams["val"]) == "".join(blocks[0::3])
    assert decode(streams["test"]) == "".join(b for i, b in enumerate(blocks) if i % 3)
    lines = text_lines(" a b\n\n a c a \n")
    assert lines == [" a b", "", " a c a "]
    assert sum(len(w) for w in word_lines(lines)) == 2 + 0 + 3 + 3, "every line ends with <eos>"
    vocab = build_vocab(word_lines(lines), 3)
    assert list(vocab) == ["<unk>", "a", "<eos>"]
    assert list(encode_words([" b a"], vocab)) == [0, 1, 2]
