"""Image data beyond the embedded MNIST: CIFAR-10, a folder of images, and Stacked MNIST."""
from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganforge.data.image_stream import ImageFolderStream
from ganforge.data.imagefiles import (
    IMAGE_EXTENSIONS,  # noqa: F401 - callers import it from here, where it used to live
    UNREADABLE,
    decode_image,
    list_image_files,
    no_images_error,
    square_image,
)
from ganforge.data.mnist import data_dirs, download_file, embedded_mnist, to_tensor_images
from ganforge.data.streaming import parse_stream, should_stream
from ganforge.data.tensor import TensorData
from ganforge.registry import ConfigError

# -- CIFAR-10 --------------------------------------------------------------------------------------------------------

CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

try:  # numpy >= 2 moved its internals to numpy._core; pickles name either module
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

# The only globals a pickled dict of numpy arrays needs. Anything else (os.system, builtins.eval, ...) is refused,
# so loading a tampered batch file cannot run code.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        # encoding="bytes": the official batches were pickled by Python 2, whose str keys become bytes
        d = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except FileNotFoundError:
        raise ConfigError(f"CIFAR-10 batch not found: {path}") from None
    except Exception as e:  # any unpickling failure, refused globals included
        raise ConfigError(f"{path}: not a CIFAR-10 batch ({e})") from None
    get = (lambda k: d.get(k.encode(), d.get(k))) if isinstance(d, dict) else (lambda k: None)
    data, labels = get("data"), get("labels")
    ok = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
    if not ok or labels is None or len(labels) != len(data):
        raise ConfigError(f"{path}: not a CIFAR-10 batch (expected uint8 data N x 3072 and N labels)")
    # Rows hold the 1024 red, then green, then blue values of a 32 x 32 image in row-major order.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, dtype=np.int64)


def _extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest`` refusing links, devices and paths that leave ``dest``."""
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without extraction filters (< 3.10.12 / 3.11.4)
                for m in tar.getmembers():
                    if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                        raise tarfile.TarError(f"unsafe member {m.name}")
                tar.extractall(dest)
    except tarfile.TarError as e:
        raise ConfigError(f"{archive}: cannot extract ({e})") from None


def load_cifar10(
    root: str | Path | None = None, split: str = "train", download: bool = False, mirrors: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, N x 32 x 32 x 3) and labels (int64) of CIFAR-10's python batches.

    The batches are read from ``<dir>/cifar-10-batches-py/`` for the first of :func:`data_dirs` ("cifar10") that has
    them; with ``download`` the official archive is fetched (MD5-checked) from ``mirrors`` (base URLs) and unpacked.
    """
    if split not in _CIFAR10_BATCHES:
        raise ConfigError(f"unknown CIFAR-10 split '{split}' (choices: train, test)")
    names = _CIFAR10_BATCHES[split]
    dirs = data_dirs("cifar10", root)
    found = next((d for d in dirs if all((d / CIFAR10_DIR / n).is_file() for n in names)), None)
    if found is None:
        if not download:
            raise ConfigError(
                f"CIFAR-10 {split} batches not found in {' or '.join(str(d / CIFAR10_DIR) for d in dirs)}; "
                "set download: true to fetch them, or set GANFORGE_DATA to a folder holding cifar10/" + CIFAR10_DIR
            )
        found = dirs[0]
        bases = CIFAR10_MIRRORS if mirrors is None else mirrors
        archive = download_file([b.rstrip("/") + "/" + CIFAR10_ARCHIVE for b in bases], found / CIFAR10_ARCHIVE,
                                CIFAR10_MD5)
        _extract(archive, found)
        archive.unlink()  # the unpacked batches are all that is read
    parts = [_load_batch(found / CIFAR10_DIR / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar10_data(split: str = "train", root: str | Path | None = None, download: bool = False) -> TensorData:
    """CIFAR-10 (3 x 32 x 32), split train (50k) or test (10k); from GANFORGE_DATA, the cache or a download."""
    x, y = load_cifar10(root, split, download)
    return TensorData(to_tensor_images(x), labels=torch.from_numpy(y))


# -- a folder of images ----------------------------------------------------------------------------------------------

_square = square_image  # its old name: caption_files.py imports it from here


def _read_folder(path: str | Path, size: int, channels: int) -> tuple[np.ndarray, list[Path]]:
    """uint8 images (N, size, size[, 3]) of every readable image under ``path`` (sorted), and their paths."""
    folder, files = list_image_files(path, size, channels)
    return _decode_files(folder, files, size, channels)


def _decode_files(folder: Path, files: list[Path], size: int, channels: int) -> tuple[np.ndarray, list[Path]]:
    """uint8 images of the readable ``files`` (unreadable ones skipped with one warning), and their paths."""
    images, kept, skipped = [], [], []
    for f in files:
        try:
            images.append(decode_image(f, size, channels))
            kept.append(f)
        except UNREADABLE:
            skipped.append(f)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable files in {folder}, e.g. {skipped[0].name}", stacklevel=3)
    if not images:
        raise no_images_error(folder)
    return np.stack(images), kept


def load_image_folder(path: str | Path, size: int, channels: int) -> Tensor:
    """Every image under ``path`` (recursively, sorted) as float (N, channels, size, size) in [-1, 1].

    Any size and mode is accepted: converted to grey (1 channel) or RGB (3), the shorter side scaled to ``size``
    and centre-cropped. Unreadable files are skipped with one warning; no images at all is a :class:`ConfigError`.
    """
    return to_tensor_images(_read_folder(path, size, channels)[0])


def load_image_folder_with_labels(path: str | Path, size: int, channels: int) -> tuple[Tensor, Tensor, list[str]]:
    """Like :func:`load_image_folder` for ``path/<class>/...``: images, labels (int64) and the sorted class names."""
    x, files = _read_folder(path, size, channels)
    folder = Path(path).expanduser()
    parts = [f.relative_to(folder).parts for f in files]
    if any(len(p) < 2 for p in parts):
        raise ConfigError(f"{folder}: images must sit in class subfolders to have labels")
    classes = sorted({p[0] for p in parts})
    labels = torch.tensor([classes.index(p[0]) for p in parts], dtype=torch.int64)
    return to_tensor_images(x), labels, classes


# Sizes the DCGAN networks build (ganforge.nn.dcgan); a folder's own size is kept when it is one of them.
NET_SIZES = (28, 32, 64)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SPLITS = ("train", "heldout", "all")


def folder_image_shape(files: list[Path], probe: int = 200) -> tuple[int, int, str]:
    """(size, channels, why) that suit the images in ``files``, read from at most ``probe`` headers.

    Channels: 1 when every probed image is grey (modes 1, L, LA, I, I;16, F), else 3. Size: the median
    shorter side when a DCGAN can take it (28, 32, 64), else the nearest of those (64 for anything
    larger): what ``size`` and ``channels`` default to for an image folder.
    """
    from PIL import Image

    step = max(1, len(files) // probe)
    sides, grey = [], True
    for f in files[::step][:probe]:
        try:
            with Image.open(f) as img:  # the header only: nothing is decoded
                sides.append(min(img.size))
                grey = grey and img.mode in _GREY_MODES
        except UNREADABLE:
            continue
    if not sides:
        return 28, 1, "no readable image among the probed files"
    side = int(np.median(sides))
    size = side if side in NET_SIZES else (64 if side > 64 else min(NET_SIZES, key=lambda s: abs(s - side)))
    channels = 1 if grey else 3
    kind = "grey" if grey else "colour"
    why = f"{kind} images of {side} px" + ("" if size == side else f", resized to {size} px")
    return size, channels, why


def split_files(files: list[Path], holdout: float, split: str, seed: int = 0) -> list[Path]:
    """The files of one split: a seeded shuffle of the sorted list, the last ``holdout`` share held out
    (at least one image, when there are 10 or more), the rest for training; ``all`` is every file."""
    if split not in SPLITS:
        raise ConfigError(f"image folder: unknown split '{split}' (choices: {', '.join(SPLITS)})")
    if not 0 <= holdout < 1:
        raise ConfigError(f"image folder: holdout must be a fraction in [0, 1), got {holdout!r}")
    if split == "all" or holdout == 0 or len(files) < 10:
        if split == "heldout":
            raise ConfigError(f"image folder: no held-out images (holdout {holdout}, {len(files)} files; "
                              "at least 10 files and holdout > 0 are needed)")
        return list(files)
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(files))
    n_held = max(1, int(round(holdout * len(files))))
    chosen = order[len(files) - n_held:] if split == "heldout" else order[:len(files) - n_held]
    return [files[i] for i in sorted(chosen)]


def image_folder_data(path: str, size: int | None = None, channels: int | None = None, split: str = "train",
                      holdout: float = 0.1, stream: str | bool = "auto", workers: int | None = None,
                      memory_limit: int | None = None) -> TensorData | ImageFolderStream:
    """Images from a folder (recursive), resized and centre-cropped to channels x size x size.

    ``size`` and ``channels`` default to what the folder holds (:func:`folder_image_shape`). A seeded
    ``holdout`` share of the files (10%) is kept out of ``split: train`` for evaluation
    (``split: heldout``: what a run on the folder is measured against); ``split: all`` takes every file.
    Small folders are decoded into memory (:class:`TensorData`); with ``stream: auto`` a folder whose
    decoded images (files x channels x size x size float32) would exceed ``memory_limit`` bytes (default
    a quarter of RAM) is streamed instead (:class:`~ganforge.data.image_stream.ImageFolderStream`, decoded
    by ``workers`` processes); ``stream: true`` / ``false`` force either.
    """
    choice = parse_stream(stream, "image folder")
    folder, files = list_image_files(path, size or 28, channels or 1)
    if size is None or channels is None:
        s, c, why = folder_image_shape(files)
        size, channels = size or s, channels or c
        if not _SHAPE_NOTED.get(str(folder)):
            _SHAPE_NOTED[str(folder)] = True
            warnings.warn(f"image folder {folder}: {why}; training at {channels} x {size} x {size} "
                          "(set data.options.size / channels to choose)", stacklevel=2)
        list_image_files(path, size, channels)  # the options as chosen are valid
    files = split_files(files, holdout, split)
    if not files:
        raise no_images_error(folder)
    if choice != "false" and should_stream(choice, len(files) * channels * size * size * 4, memory_limit,
                                           "image folder"):
        return ImageFolderStream(path, size, channels, workers=workers, files=files)
    return TensorData(to_tensor_images(_decode_files(folder, files, size, channels)[0]))


_SHAPE_NOTED: dict[str, bool] = {}


# -- Stacked MNIST ---------------------------------------------------------------------------------------------------


def stacked_mnist(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stacked MNIST (Srivastava et al. 2017; PacGAN): ``n`` RGB images whose channels are three random digits.

    Returns uint8 (n, 28, 28, 3) and int64 labels ``100 * d_R + 10 * d_G + d_B``: 1,000 modes. The digits are drawn
    independently and uniformly from ``images`` with a PCG64 generator seeded by ``seed``.
    """
    if n < 1:
        raise ConfigError(f"stacked MNIST: n must be positive, got {n}")
    idx = np.random.Generator(np.random.PCG64(seed)).integers(0, len(images), size=(n, 3))
    x = np.ascontiguousarray(images[idx].transpose(0, 2, 3, 1))  # (n, 3, 28, 28) -> (n, 28, 28, 3)
    y = np.asarray(labels, dtype=np.int64)[idx] @ np.array([100, 10, 1], dtype=np.int64)
    return x, y


def stacked_mnist_data(n: int = 50000, split: str = "fit", seed: int = 0) -> TensorData:
    """Stacked MNIST (3 x 28 x 28, 1,000 modes) built from an embedded MNIST split."""
    x, y = stacked_mnist(*embedded_mnist(split), n=n, seed=seed)
    return TensorData(to_tensor_images(x), labels=torch.from_numpy(y))
