"""The data layer: a plain file first, then the native source (torchvision, ImageFolder, a download,
Hugging Face), else one clear error. Network sources are exercised with monkeypatched clients."""

import io
import os
import socket
import zipfile

import numpy as np
import pytest
import torch

from rootbench.tasks import data
from rootbench.tasks._base import split_train_val
from rootbench.tasks.data import DataMissingError
from tests.task_fakes import write_image_folder, write_image_npz


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    return tmp_path


@pytest.fixture
def online(monkeypatch):
    """Pretend every host answers (no real connection is made)."""
    monkeypatch.delenv("ROOTBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(data, "network_available", lambda url, timeout=3.0: True)


def test_load_npz_memory_maps_stored_members_and_reads_compressed_ones(tmp_path):
    arrays = write_image_npz(tmp_path / "a.npz", 10, 4, 8, 3)
    out = data.load_npz(str(tmp_path / "a.npz"))
    assert set(out) == set(arrays)
    for k, v in arrays.items():
        assert isinstance(out[k], np.memmap) and out[k].dtype == v.dtype
        np.testing.assert_array_equal(out[k], v)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert all(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
    out = data.load_npz(str(tmp_path / "c.npz"), ["x_train", "y_test"])
    np.testing.assert_array_equal(out["x_train"], arrays["x_train"])
    with pytest.raises(DataMissingError, match="no array 'x_val'"):
        data.load_npz(str(tmp_path / "a.npz"), ["x_val"])


def test_split_train_val_reads_numpy_rows_like_tensors(tmp_path):
    arrays = write_image_npz(tmp_path / "a.npz", 50, 4, 4, 5)
    mm = data.load_npz(str(tmp_path / "a.npz"))
    a = split_train_val(mm["x_train"], mm["y_train"], n_val=10, n_train=30, n_train_eval=5)
    b = split_train_val(
        torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]), n_val=10, n_train=30, n_train_eval=5
    )
    for k in ("train", "val", "train_eval"):
        for u, v in zip(a[k], b[k]):
            assert torch.equal(u, v)
    assert len(a["train"][0]) == 30 and len(a["val"][0]) == 10 and len(a["train_eval"][0]) == 5


def test_missing_everything_is_one_line_naming_file_and_command(root):
    with pytest.raises(DataMissingError) as info:
        data.require("cifar10")
    msg = str(info.value)
    assert (
        "\n" not in msg
        and os.path.join(str(root), "cifar10.npz") in msg
        and "torchvision" in msg
        and "../shared" not in msg
    )
    with pytest.raises(DataMissingError, match="CIFAR100"):
        data.require("cifar100")
    with pytest.raises(DataMissingError, match="imagewoof2-320"):
        data.require("imagewoof")
    with pytest.raises(DataMissingError, match="wikitext103_train.txt"):
        data.require("wikitext103")
    with pytest.raises(data.RegistryError, match="unknown data set"):
        data.require("cifar11")


def test_offline_never_touches_the_network(root, monkeypatch):
    def no_socket(*a, **k):
        raise AssertionError("network probed while offline")

    monkeypatch.setattr(socket, "create_connection", no_socket)
    assert data.network_available("https://www.cs.toronto.edu") is False
    assert data.status("cifar10") == "not in the data root (downloadable)"


def test_source_order_file_then_native_then_network(root, online):
    assert data.image_source("cifar10") == "download:torchvision"
    assert data.image_source("imagewoof") == f"download:{data.IMAGE_SETS['imagewoof'].archive}"
    assert data.text_source("wikitext103") == "huggingface"
    assert data.text_source("tinyshakespeare").startswith("download:https://")
    (root / "cifar-10-batches-py").mkdir()
    assert data.image_source("cifar10") == "torchvision"
    write_image_npz(root / "cifar10.npz", 4, 2, 32, 10)
    assert data.image_source("cifar10") == f"file:{root / 'cifar10.npz'}"
    (root / "imagewoof2-320" / "train").mkdir(parents=True)
    (root / "imagewoof2-320" / "val").mkdir()
    assert data.image_source("imagewoof") == f"imagefolder:{root / 'imagewoof2-320'}"


def test_torchvision_source_and_its_failure(root, online, monkeypatch):
    import torchvision

    calls = []

    class FakeCIFAR100:
        def __init__(self, path, train, download):
            calls.append((path, train, download))
            n = 6 if train else 3
            self.data = np.full((n, 32, 32, 3), 7 if train else 9, np.uint8)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    arrays, source = data.load_images("cifar100")
    assert source == "torchvision"
    assert calls == [(str(root), True, True), (str(root), False, True)]
    assert arrays["x_train"].shape == (6, 32, 32, 3) and int(arrays["x_test"][0, 0, 0, 0]) == 9
    assert arrays["y_test"].dtype == np.int64 and list(arrays["y_test"]) == [0, 1, 2]

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Broken)
    with pytest.raises(DataMissingError, match="torchvision could not read 'cifar100'"):
        data.load_images("cifar100")


def test_image_folder_is_decoded_centre_cropped_and_cached(root):
    from PIL import Image

    folder = root / "imagenette2-160"
    for split in ("train", "val"):
        for c, wnid in enumerate(["n01", "n02"]):  # sorted folder names give the labels
            d = folder / split / wnid
            d.mkdir(parents=True)
            img = np.zeros((64, 100, 3), np.uint8)  # 100 wide, 64 high: the centre crop drops 18 px a side
            img[:, :18] = img[:, 82:] = (255, 0, 0)
            img[:, 18:82] = (0, 40 + 100 * c, 0)
            Image.fromarray(img).save(d / "0.png")
    arrays, source = data.load_images("imagenette64")
    assert source == f"imagefolder:{folder}"
    assert arrays["x_train"].shape == (2, 64, 64, 3) and arrays["x_test"].shape == (2, 64, 64, 3)
    assert list(arrays["y_train"]) == [0, 1]
    assert (arrays["x_train"][:, :, :, 0] == 0).all(), "the red margins are cropped away"
    assert list(arrays["x_train"][:, 32, 32, 1]) == [40, 140]
    arrays2, source2 = data.load_images("imagenette64")  # cached as the plain file
    assert source2 == f"file:{root / 'imagenette64.npz'}"
    np.testing.assert_array_equal(arrays2["x_test"], arrays["x_test"])


def test_archive_download_unpacks_an_image_folder(root, online, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    urls = []

    def fake_download(url, download_root, **kw):
        urls.append(url)
        write_image_folder(os.path.join(download_root, "imagewoof2-320"), classes=2, per_class=1, size=(40, 30))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert data.image_folder_path("imagewoof") == str(root / "imagewoof2-320")
    assert urls == [data.IMAGE_SETS["imagewoof"].archive]
    assert data.image_source("imagewoof").startswith("imagefolder:")


def test_archive_download_failure_is_a_data_error(root, online, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def fail(url, download_root, **kw):
        raise OSError("connection reset")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fail)
    with pytest.raises(DataMissingError, match="connection reset"):
        data.image_folder_path("imagewoof")


def test_huggingface_source_writes_plain_files(root, online, monkeypatch):
    import datasets

    seen = []

    def fake_load(path, config, split, cache_dir):
        seen.append((path, config, split))
        return {"text": [f" = {split} = \n", " a b <unk> \n", ""]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    texts, source = data.load_text("wikitext103")
    assert source == "huggingface"
    assert seen == [("Salesforce/wikitext", "wikitext-103-v1", s) for s in ("train", "validation", "test")]
    assert texts["valid"] == " = validation = \n a b <unk> \n"
    assert data.text_source("wikitext103").startswith("file:")
    with open(root / "wikitext103_test.txt") as f:
        assert f.read() == texts["test"]

    def fail(*a, **k):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataMissingError, match="hub unreachable"):
        data.load_text("tinystories")


def test_raw_text_download(root, online, monkeypatch):
    import urllib.request

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"First Citizen:\n"))
    texts, source = data.load_text("tinyshakespeare")
    assert texts == {"": "First Citizen:\n"} and source.startswith("download:")
    assert (root / "tinyshakespeare.txt").read_text() == "First Citizen:\n"
