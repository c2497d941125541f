"""MNIST: the embedded default (no download needed) and its fixed splits.

The package ships the 10,000-image MNIST test set and a 5,000-image sample of the training set
(500 per class). Splits, fixed once for every metric and preset in ganforge:

- ``fit``: the 5,000 training images plus the even-indexed half of the test set (10,000 images);
  what the digit classifier and the MNIST presets train on.
- ``heldout``: the odd-indexed half of the test set (5,000 images); the reference for FID and
  friends. (The test set's first 5,000 images come from cleaner writers than its last 5,000, so an
  interleaved split keeps both halves alike.)
- ``train5k``, ``test``: the shipped files as they are.

The full 60,000-image training set, and Fashion-MNIST, come from their canonical IDX files through
:func:`load_idx_dataset` (local copies, or an MD5-checked download).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ganforge.data.idx import parse_idx, read_idx
from ganforge.data.tensor import TensorData
from ganforge.registry import ConfigError

EMBEDDED_SPLITS = ("fit", "heldout", "train5k", "test")


def _asset(name: str) -> np.ndarray:
    raw = resources.files("ganforge.data.assets").joinpath("mnist", name).read_bytes()
    return parse_idx(raw, name)


def embedded_mnist(split: str = "fit") -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, N x 28 x 28) and labels (int64) of an embedded split."""
    if split not in EMBEDDED_SPLITS:
        raise ConfigError(f"unknown embedded MNIST split '{split}' (choices: {', '.join(EMBEDDED_SPLITS)})")
    if split in ("train5k", "fit"):
        tx, ty = _asset("train5k-images-idx3-ubyte.gz"), _asset("train5k-labels-idx1-ubyte.gz")
    if split in ("test", "fit", "heldout"):
        sx, sy = _asset("t10k-images-idx3-ubyte.gz"), _asset("t10k-labels-idx1-ubyte.gz")
    if split == "train5k":
        x, y = tx, ty
    elif split == "test":
        x, y = sx, sy
    elif split == "heldout":
        x, y = sx[1::2], sy[1::2]
    else:
        x, y = np.concatenate([tx, sx[0::2]]), np.concatenate([ty, sy[0::2]])
    return np.ascontiguousarray(x), y.astype(np.int64)


def to_tensor_images(x: np.ndarray) -> Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [-1, 1], ganforge's image convention."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(127.5).sub_(1.0).contiguous()


# -- full MNIST and Fashion-MNIST from their canonical files ---------------------------------------------------------

IDX_MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
IDX_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
TIMEOUT = 60.0  # seconds without an answer before a mirror counts as dead
# Some mirrors answer urllib's default User-Agent with 403.
_HEADERS = {"User-Agent": "ganforge (+https://pypi.org/project/ganforge/)"}


def data_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """Folders searched for data set ``name``, in order; downloads go to the first.

    ``root`` if given (and nothing else); otherwise ``$GANFORGE_DATA/<name>`` when that variable is set, then
    ``$XDG_CACHE_HOME/ganforge/<name>`` (default ``~/.cache/ganforge/<name>``).
    """
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get("GANFORGE_DATA"):
        dirs.append(Path(os.environ["GANFORGE_DATA"]).expanduser() / name)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    dirs.append(Path(cache) / "ganforge" / name)
    return dirs


def _fetch(url: str, out: BinaryIO, label: str) -> tuple[str, str]:
    """Stream ``url`` into ``out``; return the MD5 and SHA-256 of what was written.

    Both digests are taken in the one pass: older canonical files publish MD5, newer ones SHA-256.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    with urllib.request.urlopen(urllib.request.Request(url, headers=_HEADERS), timeout=TIMEOUT) as resp:
        length = resp.headers.get("Content-Length", "")
        bar = tqdm(total=int(length), unit="B", unit_scale=True, desc=label, leave=False) if length.isdigit() else None
        try:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return md5.hexdigest(), sha256.hexdigest()


class DownloadError(ConfigError):
    """No mirror could be reached. A ConfigError like the rest, but its own type, so a caller can
    replace it with advice about putting the file in place by hand (a checksum mismatch is not this);
    ``errors`` holds one ``"url: reason"`` per mirror tried."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors or [])


def download_file(urls: list[str], dest: str | Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``dest`` from the first of ``urls`` that answers, checking its MD5 and/or SHA-256.

    The file is written next to ``dest`` under a temporary name and renamed only once complete and verified, so an
    interrupted or corrupt download never leaves a file that a later run would trust. A mirror that cannot be
    reached is skipped, and when none can be, :class:`DownloadError` is raised; a checksum mismatch is a
    :class:`ConfigError` (a mirror serving wrong data is worth hearing about, not papering over).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    got_md5, got_sha256 = _fetch(url, out, dest.name)
            except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError and timeouts are OSErrors
                errors.append(f"{url}: {e}")
                continue
            if md5 is not None and got_md5 != md5:
                raise ConfigError(f"checksum mismatch for {dest.name} from {url}: expected md5 {md5}, got {got_md5}")
            if sha256 is not None and got_sha256 != sha256:
                raise ConfigError(f"checksum mismatch for {dest.name} from {url}: "
                                  f"expected sha256 {sha256}, got {got_sha256}")
            os.replace(tmp, dest)
            return dest
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DownloadError(f"could not download {dest.name} ({'; '.join(errors) or 'no mirrors'})", errors)


def _local(folder: Path, name: str) -> Path | None:
    """``folder/name``, or its gunzipped twin: users may keep their own uncompressed copies."""
    for p in (folder / name, folder / name.removesuffix(".gz")):
        if p.is_file():
            return p
    return None


def load_idx_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
    mirrors: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, N x 28 x 28) and labels (int64) of full MNIST or Fashion-MNIST.

    ``name`` is ``"mnist"`` or ``"fashion-mnist"``, ``split`` ``"train"`` (60,000) or ``"test"`` (10,000). Files are
    looked for in :func:`data_dirs`; missing ones are downloaded (MD5-checked) when ``download`` is true, from
    ``mirrors`` (base URLs) or the canonical ones. Local copies are not checksummed, only checked for consistent
    shapes, so users may point at their own files.
    """
    if name not in IDX_MD5:
        raise ConfigError(f"unknown IDX data set '{name}' (choices: {', '.join(IDX_MD5)})")
    if split not in ("train", "test"):
        raise ConfigError(f"{name}: unknown split '{split}' (choices: train, test)")
    prefix = "train" if split == "train" else "t10k"
    files = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    dirs = data_dirs(name, root)
    found = next((d for d in dirs if all(_local(d, f) for f in files)), None)
    if found is None:
        if not download:
            raise ConfigError(
                f"{name} {split} files ({', '.join(files)}) not found in {' or '.join(map(str, dirs))}; "
                f"set download: true to fetch them, or set GANFORGE_DATA to a folder holding {name}/<these files>"
            )
        found = dirs[0]
        for f in files:
            if _local(found, f) is None:
                bases = IDX_MIRRORS[name] if mirrors is None else mirrors
                download_file([b.rstrip("/") + "/" + f for b in bases], found / f, IDX_MD5[name][f])
    x, y = read_idx(_local(found, files[0])), read_idx(_local(found, files[1]))
    if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y) or x.dtype != np.uint8:
        raise ConfigError(
            f"{name} {split} in {found}: images {x.dtype} {x.shape} and labels {y.shape} do not match "
            "(expected uint8 N x 28 x 28 and N)"
        )
    return x, y.astype(np.int64)


def mnist_data(
    split: str = "fit", root: str | Path | None = None, download: bool = False, labels: bool = True
) -> TensorData:
    """MNIST digits (1 x 28 x 28): embedded splits fit/heldout/train5k/test, or the full 60k 'train' (download)."""
    if split in EMBEDDED_SPLITS:
        x, y = embedded_mnist(split)
    elif split == "train":
        x, y = load_idx_dataset("mnist", "train", root, download)
    else:
        raise ConfigError(f"unknown MNIST split '{split}' (choices: {', '.join((*EMBEDDED_SPLITS, 'train'))})")
    return TensorData(to_tensor_images(x), labels=torch.from_numpy(y) if labels else None)


def fashion_mnist_data(split: str = "train", root: str | Path | None = None, download: bool = False) -> TensorData:
    """Fashion-MNIST (1 x 28 x 28), split train (60k) or test (10k); files from GANFORGE_DATA, cache or download."""
    x, y = load_idx_dataset("fashion-mnist", split, root, download)
    return TensorData(to_tensor_images(x), labels=torch.from_numpy(y))
