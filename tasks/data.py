"""The data layer: one data root, a plain file first, then the native source, else a clear error.

Every data set is looked up in this order (``$ROOTBENCH_DATA``, see ``tasks.data_root``):

1. a plain file in the data root: ``<name>.npz`` for images (keras convention: ``x_train``,
   ``y_train``, ``x_test``, ``y_test``; uint8 HWC images, integer labels), ``<name>_<split>.txt`` or
   ``<name>.txt`` for text: the way to bring data to a machine without network;
2. the native source: a torchvision folder (``cifar-10-batches-py``, ``cifar-100-python``) or an
   ImageFolder directory (``<root>/imagewoof2-320/{train,val}/<class>/*``) already in the data root,
   else a download when the network is there (torchvision, fastai's archives, Hugging Face
   ``datasets``, raw text). Set ``ROOTBENCH_OFFLINE=1`` to never touch the network;
3. otherwise ``DataMissingError`` (a ``RegistryError``, so the CLI exits 2 and writes nothing), one
   line that names the file to place and the command that produces it.

No silent fallback to synthetic data: only smoke tiers use generated stand-ins, and say so in
``data_source``. For Imagenette and Tiny-ImageNet, ``x_test``/``y_test`` hold the published 'val'
split (neither publishes a labelled test split). The validation split used for tuning is carved from
the training set with a fixed seed (``tasks._base.split_train_val``; WikiText-103 uses its official
validation split), so the test split is only ever reported, never tuned on.
"""

from __future__ import annotations

import os
import socket
import struct
import zipfile
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from rootbench.harness.registry import RegistryError

OFFLINE_ENV = "ROOTBENCH_OFFLINE"
NPZ = (
    "or place {name}.npz in $ROOTBENCH_DATA (arrays x_train, y_train, x_test, y_test; uint8 images N x H x W "
    "[x C] at {size} px, integer labels)"
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DataMissingError(RegistryError):
    """A data set is in none of its places and cannot be downloaded; the message says what to do."""


def data_root() -> str:
    from rootbench.tasks import data_root as root

    return root()


# ---------------------------------------------------------------------------------------------
# the catalogue


@dataclass(frozen=True)
class ImageSet:
    """An image classification set: stats for normalisation and where its native copy lives."""

    name: str
    num_classes: int
    image_size: int  # stored size of the plain file (0: variable-size images, read from folders)
    mean: tuple
    std: tuple
    torchvision: str = ""  # torchvision dataset class whose folder / download is the native source
    torchvision_dir: str = ""
    folders: tuple = ()  # ImageFolder roots under the data root, each with train/ and val/
    archive: str = ""  # URL of an archive that unpacks into one of ``folders``
    produce: str = ""  # how to get it: a download command, or which plain file to place
    test_is_val: bool = False  # the published split used as test is called 'val'


IMAGE_SETS = {
    s.name: s
    for s in [
        ImageSet(
            "cifar10",
            10,
            32,
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            torchvision="CIFAR10",
            torchvision_dir="cifar-10-batches-py",
            produce='let torchvision download it (needs network: python -c "import torchvision; '
            "torchvision.datasets.CIFAR10('$ROOTBENCH_DATA', download=True)\"), " + NPZ.format(name="cifar10", size=32),
        ),
        # CIFAR-100 is not in the offline pack: torchvision's download is its source
        ImageSet(
            "cifar100",
            100,
            32,
            (0.5071, 0.4867, 0.4408),
            (0.2675, 0.2565, 0.2761),
            torchvision="CIFAR100",
            torchvision_dir="cifar-100-python",
            produce="python -c \"import torchvision; torchvision.datasets.CIFAR100('$ROOTBENCH_DATA', download=True)\"",
        ),
        ImageSet(
            "mnist",
            10,
            28,
            (0.1307,),
            (0.3081,),
            torchvision="MNIST",
            torchvision_dir="MNIST",
            produce="let torchvision download it (needs network), " + NPZ.format(name="mnist", size=28),
        ),
        ImageSet(
            "tinyimagenet32",
            200,
            32,
            (0.4806, 0.4486, 0.3983),
            (0.2521, 0.2448, 0.2590),
            folders=("tinyimagenet",),
            test_is_val=True,  # val/ sorted into <wnid>/ folders
            produce="unpack Tiny-ImageNet-200 (http://cs231n.stanford.edu/tiny-imagenet-200.zip) as "
            "$ROOTBENCH_DATA/tinyimagenet/{train,val}/<wnid>/*.JPEG (val sorted into class folders), "
            + NPZ.format(name="tinyimagenet32", size=32),
        ),
        ImageSet(
            "imagenette64",
            10,
            64,
            (0.4624, 0.4579, 0.4300),
            (0.2728, 0.2696, 0.2927),
            folders=("imagenette2-160", "imagenette2-320", "imagenette2", "imagenette"),
            test_is_val=True,
            archive="https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
            produce="let rootbench download fastai's imagenette2-160.tgz (needs network), "
            + NPZ.format(name="imagenette64", size=64),
        ),
        # ImageWoof (fastai, 10 dog breeds) at 224 px is read from its folder with worker processes
        ImageSet(
            "imagewoof",
            10,
            0,
            IMAGENET_MEAN,
            IMAGENET_STD,
            folders=("imagewoof2-320", "imagewoof2", "imagewoof2-160", "imagewoof"),
            test_is_val=True,
            archive="https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-320.tgz",
            produce="download and unpack https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-320.tgz "
            "into $ROOTBENCH_DATA (gives imagewoof2-320/train and /val)",
        ),
    ]
}


@dataclass(frozen=True)
class TextSet:
    """A text corpus: ``<name>_<split>.txt`` files (or ``<name>.txt`` for a single file)."""

    name: str
    splits: tuple  # file splits; ("",) for a single file <name>.txt
    hf: tuple = ()  # (path, config) for Hugging Face datasets
    hf_splits: tuple = ()  # Hugging Face split name for each of ``splits``
    url: str = ""  # raw download of a single-file corpus
    produce: str = ""


TEXT_SETS = {
    s.name: s
    for s in [
        TextSet(
            "tinyshakespeare",
            ("",),
            url="https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
            "data/tinyshakespeare/input.txt",
            produce="let rootbench download it (needs network), or place tinyshakespeare.txt (karpathy's "
            "char-rnn input.txt) in $ROOTBENCH_DATA",
        ),
        TextSet(
            "wikitext2",
            ("valid", "test"),
            hf=("Salesforce/wikitext", "wikitext-2-v1"),
            hf_splits=("validation", "test"),
            produce="let Hugging Face `datasets` download it (needs network), or place wikitext2_valid.txt and "
            "wikitext2_test.txt (wiki.valid.tokens, wiki.test.tokens of WikiText-2 v1) in $ROOTBENCH_DATA",
        ),
        TextSet(
            "wikitext103",
            ("train", "valid", "test"),
            hf=("Salesforce/wikitext", "wikitext-103-v1"),
            hf_splits=("train", "validation", "test"),
            produce="let Hugging Face `datasets` download it (needs network), or place wikitext103_train.txt, "
            "wikitext103_valid.txt and wikitext103_test.txt (wiki.*.tokens of WikiText-103 v1)",
        ),
        TextSet(
            "tinystories",
            ("train", "valid"),
            hf=("roneneldan/TinyStories", None),
            hf_splits=("train", "validation"),
            produce="let Hugging Face `datasets` download it (needs network), or place tinystories_train.txt "
            "and tinystories_valid.txt",
        ),
    ]
}


# ---------------------------------------------------------------------------------------------
# network


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE", "") == "1"


_REACHABLE: dict = {}


def network_available(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` accepts a connection (cached per host; False when offline)."""
    if offline():
        return False
    host = urlparse(url).hostname or url
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


TORCHVISION_HOSTS = {
    "CIFAR10": "https://www.cs.toronto.edu",
    "CIFAR100": "https://www.cs.toronto.edu",
    "MNIST": "https://ossci-datasets.s3.amazonaws.com",
}
HF_HOST = "https://huggingface.co"


# ---------------------------------------------------------------------------------------------
# plain files


def load_npz(path: str, keys=None) -> dict:
    """The arrays of an npz file; members stored uncompressed are memory-mapped (read on access)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        for key in keys if keys is not None else names:
            if key not in names:
                raise DataMissingError(
                    f"{path} has no array {key!r} (has {', '.join(names)}); "
                    f"rewrite it with x_train, y_train, x_test, y_test"
                )
            info = zf.getinfo(key + ".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                out[key] = np.load(zf.open(info), allow_pickle=False)
                continue
            f.seek(info.header_offset)
            local = f.read(30)  # zip local file header: name and extra-field lengths at bytes 26..29
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            if dtype.hasobject:
                raise DataMissingError(f"{path}:{key} holds Python objects; store plain arrays")
            out[key] = (
                np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
                if int(np.prod(shape))
                else np.empty(shape, dtype)
            )
    return out


def write_npz(path: str, **arrays) -> None:
    """Write an uncompressed npz atomically (a half-written file never carries the final name)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# images


def image_folder(name: str, root: str | None = None) -> str | None:
    """The ImageFolder root (with train/ and val/) of ``name`` in the data root, if there is one."""
    root = root or data_root()
    for folder in IMAGE_SETS[name].folders:
        path = os.path.join(root, folder)
        if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "val")):
            return path
    return None


def image_source(name: str, network: bool = True) -> str:
    """Where ``name`` would be read from ("file:...", "torchvision", "imagefolder:...", "download:...").

    Cheap (no data is read); raises ``DataMissingError`` when there is no source. ``network=False``
    only looks in the data root.
    """
    if name not in IMAGE_SETS:
        raise RegistryError(f"unknown image data set {name!r}; known: {', '.join(sorted(IMAGE_SETS))}")
    s, root = IMAGE_SETS[name], data_root()
    npz = os.path.join(root, f"{name}.npz")
    if s.image_size and os.path.isfile(npz):
        return f"file:{npz}"
    if s.torchvision and os.path.isdir(os.path.join(root, s.torchvision_dir)):
        return "torchvision"
    folder = image_folder(name, root)
    if folder:
        return f"imagefolder:{folder}"
    if network and s.torchvision and network_available(TORCHVISION_HOSTS[s.torchvision]):
        return "download:torchvision"
    if network and s.archive and network_available(s.archive):
        return f"download:{s.archive}"
    place = (
        f"place {npz} (keras-style npz: uint8 x_train/x_test HWC, integer y_train/y_test)"
        if s.image_size
        else f"place an ImageFolder tree {os.path.join(root, s.folders[0])}/{{train,val}}/<class>/*.JPEG"
    )
    raise DataMissingError(
        f"data set {name!r} not found in the data root {root} ($ROOTBENCH_DATA) and not "
        f"downloadable here: {place}; to produce it: {s.produce}"
    )


def load_images(name: str) -> tuple[dict, str]:
    """``({x_train, y_train, x_test, y_test}, data_source)``; images uint8 NHWC (memory-mapped if plain)."""
    s, root = IMAGE_SETS[name], data_root()
    source = image_source(name)
    if source.startswith("file:"):
        arrays = load_npz(source[5:], ["x_train", "y_train", "x_test", "y_test"])
        return _checked(name, arrays, source[5:]), source
    if source in ("torchvision", "download:torchvision"):
        return _from_torchvision(s, root, download=source.startswith("download")), "torchvision"
    if source.startswith("download:"):
        _download_archive(s, root)
        source = f"imagefolder:{image_folder(name, root)}"
    folder = source.split(":", 1)[1]
    arrays = decode_image_folder(folder, s.image_size)
    try:  # cache the decoded arrays as the plain file; a read-only data root only costs a re-decode
        write_npz(os.path.join(root, f"{name}.npz"), **arrays)
    except OSError:
        pass
    return arrays, source


def image_folder_path(name: str) -> str:
    """The ImageFolder root of ``name`` (train/, val/), downloaded first when that is its source."""
    source = image_source(name)
    if source.startswith("download:") and not source.endswith(":torchvision"):
        _download_archive(IMAGE_SETS[name], data_root())
        source = f"imagefolder:{image_folder(name)}"
    if not source.startswith("imagefolder:"):
        raise DataMissingError(
            f"data set {name!r} is read from an ImageFolder tree, found {source}; "
            f"to produce it: {IMAGE_SETS[name].produce}"
        )
    return source.split(":", 1)[1]


def _checked(name: str, arrays: dict, path: str) -> dict:
    s = IMAGE_SETS[name]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) != len(y):
            raise DataMissingError(
                f"{path}: x_{split} must be uint8 (N,H,W[,C]) with one label per image, got "
                f"{x.dtype} {x.shape} and {len(y)} labels; rebuild it with: {s.produce}"
            )
    return arrays


def _from_torchvision(s: ImageSet, root: str, download: bool) -> dict:
    import torchvision

    cls = getattr(torchvision.datasets, s.torchvision)
    out = {}
    try:
        for split, train in (("train", True), ("test", False)):
            ds = cls(root, train=train, download=download)
            x = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
            out[f"x_{split}"], out[f"y_{split}"] = x.astype(np.uint8), np.asarray(ds.targets, dtype=np.int64)
    except (RuntimeError, OSError) as e:  # torchvision raises RuntimeError for missing/corrupt files
        raise DataMissingError(
            f"torchvision could not read {s.name!r} from {root} ({e}); to produce it: {s.produce}"
        ) from None
    return out


def _download_archive(s: ImageSet, root: str) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(s.archive, download_root=root)
    except Exception as e:  # noqa: BLE001 - any network or archive failure means: data missing
        raise DataMissingError(
            f"downloading {s.archive} into {root} failed ({type(e).__name__}: {e}); to produce it: {s.produce}"
        ) from None
    if image_folder(s.name, root) is None:
        raise DataMissingError(f"{s.archive} did not unpack into one of {s.folders} under {root}")


def decode_image_folder(folder: str, size: int) -> dict:
    """Decode an ImageFolder tree (train/, val/) into uint8 arrays: shorter side to ``size``, centre crop.

    Class indices follow ImageFolder's convention (sorted class folder names); 'val' becomes x_test.
    """
    from PIL import Image
    from torchvision.datasets import ImageFolder

    out = {}
    for split, key in (("train", "train"), ("val", "test")):
        ds = ImageFolder(os.path.join(folder, split))
        xs = np.empty((len(ds.samples), size, size, 3), np.uint8)
        for i, (path, _) in enumerate(ds.samples):
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                scale = size / min(w, h)
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                xs[i] = np.asarray(im.crop((left, top, left + size, top + size)))
        out[f"x_{key}"], out[f"y_{key}"] = xs, np.asarray(ds.targets, dtype=np.int64)
    return out


# ---------------------------------------------------------------------------------------------
# text


def text_files(name: str, root: str | None = None) -> list[str]:
    s, root = TEXT_SETS[name], root or data_root()
    return [os.path.join(root, f"{name}_{split}.txt" if split else f"{name}.txt") for split in s.splits]


def text_source(name: str, network: bool = True) -> str:
    """Where corpus ``name`` would be read from; raises ``DataMissingError`` when nowhere."""
    if name not in TEXT_SETS:
        raise RegistryError(f"unknown text corpus {name!r}; known: {', '.join(sorted(TEXT_SETS))}")
    s, files = TEXT_SETS[name], text_files(name)
    if all(os.path.isfile(f) for f in files):
        return "file:" + ",".join(files)
    if network and s.hf and network_available(HF_HOST):
        return "huggingface"
    if network and s.url and network_available(s.url):
        return f"download:{s.url}"
    missing = [f for f in files if not os.path.isfile(f)]
    raise DataMissingError(
        f"text corpus {name!r} not found in the data root {data_root()} ($ROOTBENCH_DATA) and "
        f"not downloadable here: place {', '.join(missing)}; to produce it: {s.produce}"
    )


def load_text(name: str) -> tuple[dict, str]:
    """``({split: text}, data_source)``; a single-file corpus has the one split ""."""
    s, files = TEXT_SETS[name], text_files(name)
    source = text_source(name)
    if source == "huggingface":
        texts = _from_huggingface(s)
    elif source.startswith("download:"):
        texts = {"": _fetch_url(s.url)}
    else:
        texts = {}
        for split, path in zip(s.splits, files):
            with open(path, encoding="utf-8") as f:
                texts[split] = f.read()
        return texts, source
    try:  # keep the plain files: next time the corpus is read offline from the data root
        for split, path in zip(s.splits, files):
            _write_text(path, texts[split])
    except OSError:
        pass
    return texts, source


def _from_huggingface(s: TextSet) -> dict:
    import datasets

    path, config = s.hf
    out = {}
    try:
        for split, hf_split in zip(s.splits, s.hf_splits):
            ds = datasets.load_dataset(path, config, split=hf_split, cache_dir=os.path.join(data_root(), "huggingface"))
            # wikitext rows are lines that keep their "\n"; story corpora get one blank line between rows
            sep = "" if path.endswith("wikitext") else "\n\n"
            out[split] = sep.join(ds["text"])
    except Exception as e:  # noqa: BLE001 - any hub failure means: data missing
        raise DataMissingError(
            f"Hugging Face datasets could not load {path} {config or ''} "
            f"({type(e).__name__}: {e}); to produce it: {s.produce}"
        ) from None
    return out


def _fetch_url(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read().decode("utf-8")
    except Exception as e:  # noqa: BLE001
        raise DataMissingError(
            f"downloading {url} failed ({type(e).__name__}: {e}); place the file in {data_root()} instead"
        ) from None


# ---------------------------------------------------------------------------------------------
# the hook the CLI calls before a run (cheap: nothing is read)


def require(dataset: str, network: bool = True) -> str:
    """The source ``dataset`` would be read from; raises ``DataMissingError`` when it has none.

    ``dataset`` names an image set, a text corpus, or "synthetic" (generated stand-in data).
    """
    if dataset in ("", "synthetic"):
        return "synthetic stand-in"
    if dataset in IMAGE_SETS:
        return image_source(dataset, network)
    if dataset in TEXT_SETS:
        return text_source(dataset, network)
    known = sorted(IMAGE_SETS) + sorted(TEXT_SETS) + ["synthetic"]
    raise RegistryError(f"unknown data set {dataset!r}; choose one of {', '.join(known)}")


def status(dataset: str) -> str:
    """A one-line, never-raising status for listings: the local source, or what is missing (no network)."""
    try:
        return require(dataset, network=False)
    except DataMissingError:
        s = IMAGE_SETS.get(dataset) or TEXT_SETS.get(dataset)
        can = (
            getattr(s, "torchvision", "") or getattr(s, "archive", "") or getattr(s, "hf", ()) or getattr(s, "url", "")
        )
        return "not in the data root" + (" (downloadable)" if can else "")
    except RegistryError as e:
        return f"invalid: {e}"
