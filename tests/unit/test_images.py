"""Image data: IDX files, the embedded MNIST splits, image folders, CIFAR-10 batches and Stacked MNIST."""
from __future__ import annotations

import gzip
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import build_dataset
from ganforge.data.idx import parse_idx, read_idx
from ganforge.data.images import load_cifar10, load_image_folder, load_image_folder_with_labels, stacked_mnist
from ganforge.data.mnist import embedded_mnist
from ganforge.registry import ConfigError


def idx_bytes(a: np.ndarray) -> bytes:
    """An IDX file of a uint8 array: magic (0, 0, 0x08, ndim), big-endian sizes, the data."""
    dims = b"".join(d.to_bytes(4, "big") for d in a.shape)
    return bytes([0, 0, 0x08, a.ndim]) + dims + a.astype(np.uint8).tobytes()


# -- IDX -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_plain_and_gzip(tmp_path, gz):
    a = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    raw = idx_bytes(a)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(read_idx(path), a)


def test_corrupt_idx_is_config_error(tmp_path):
    raw = idx_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(ConfigError, match="truncated"):
        parse_idx(raw[:-1])
    with pytest.raises(ConfigError, match="magic"):
        parse_idx(b"\x01\x02" + raw[2:])
    with pytest.raises(ConfigError, match="not found"):
        read_idx(tmp_path / "missing.gz")


# -- embedded MNIST ----------------------------------------------------------------------------------------------------


def test_embedded_split_sizes_and_disjoint_halves():
    sizes = {s: len(embedded_mnist(s)[0]) for s in ("fit", "heldout", "train5k", "test")}
    assert sizes == {"fit": 10000, "heldout": 5000, "train5k": 5000, "test": 10000}
    test_x, test_y = embedded_mnist("test")
    fit_x, _ = embedded_mnist("fit")
    held_x, held_y = embedded_mnist("heldout")
    # fit holds the even test images, heldout the odd ones: together the whole test set, no image in both
    np.testing.assert_array_equal(fit_x[5000:], test_x[0::2])
    np.testing.assert_array_equal(held_x, test_x[1::2])
    np.testing.assert_array_equal(held_y, test_y[1::2])
    assert not {x.tobytes() for x in fit_x[5000:]} & {x.tobytes() for x in held_x}


def test_mnist_dataset_builder():
    d = build_dataset("mnist", {"split": "heldout"})
    assert d.shape == (1, 28, 28) and len(d) == 5000 and d.labels.dtype == torch.int64
    assert d.x.min() == -1.0 and d.x.max() == 1.0
    assert build_dataset("mnist", {"split": "train5k", "labels": False}).labels is None
    with pytest.raises(ConfigError, match="split"):
        build_dataset("mnist", {"split": "validation"})


# -- image folder ------------------------------------------------------------------------------------------------------


def make_folder(root):
    rng = np.random.default_rng(0)
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8), "L").save(root / "a" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8), "RGB").save(root / "a" / "deep" / "rgb.jpg")
    Image.fromarray(rng.integers(0, 256, (28, 28, 4), dtype=np.uint8), "RGBA").save(root / "b" / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (10, 64, 3), dtype=np.uint8), "RGB").convert("P")
    pal.info["transparency"] = 0
    pal.save(root / "b" / "pal.png", transparency=0)
    (root / "b" / "garbage.png").write_bytes(b"this is not an image")
    (root / "notes.txt").write_text("not an image, not counted")


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder(tmp_path, channels):
    make_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_image_folder(tmp_path, size=16, channels=channels)
    assert x.shape == (4, channels, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.1
    assert len(caught) == 1 and "skipped 1 unreadable files" in str(caught[0].message)
    assert "garbage.png" in str(caught[0].message)


def test_image_folder_labels_and_builder(tmp_path):
    make_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        x, labels, classes = load_image_folder_with_labels(tmp_path, size=8, channels=3)
    assert classes == ["a", "b"] and labels.tolist() == [0, 0, 1, 1] and x.shape == (4, 3, 8, 8)
    with pytest.warns(UserWarning, match="skipped 1"):
        d = build_dataset("image-folder", {"path": str(tmp_path)})
    assert d.shape == (3, 28, 28) and len(d) == 4  # colour files: 3 channels by default


def test_image_folder_empty_or_missing(tmp_path):
    with pytest.raises(ConfigError, match="no readable images"):
        load_image_folder(tmp_path, 28, 1)
    with pytest.raises(ConfigError, match="not found"):
        load_image_folder(tmp_path / "nope", 28, 1)
    with pytest.raises(ConfigError, match="channels"):
        load_image_folder(tmp_path, 28, 2)


# -- CIFAR-10 ----------------------------------------------------------------------------------------------------------


def fake_cifar(root, n=4):
    """A tiny cifar-10-batches-py: five training batches and a test batch of ``n`` images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"batch_label": name.encode(), b"labels": [(i + j) % 10 for j in range(n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2 if i % 2 else 4))
    return folder


def test_cifar10_batches(tmp_path):
    folder = fake_cifar(tmp_path)
    x, y = load_cifar10(tmp_path, "train")
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64 and len(y) == 20
    x, y = load_cifar10(tmp_path, "test")
    raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"]
    # rows are 1024 red, 1024 green, 1024 blue values
    assert (x[0, 0, 0].tolist(), x[0, 0, 1, 0]) == ([raw[0, 0], raw[0, 1024], raw[0, 2048]], raw[0, 1])
    d = build_dataset("cifar10", {"split": "test", "root": str(tmp_path)})
    assert d.shape == (3, 32, 32) and len(d) == 4 and d.labels.tolist() == y.tolist()
    with pytest.raises(ConfigError, match="GANFORGE_DATA"):
        load_cifar10(tmp_path / "elsewhere", "test")


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_malicious_pickle(tmp_path):
    folder = fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(marker), b"labels": []}))
    with pytest.raises(ConfigError, match="refusing to load global"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}))
    with pytest.raises(ConfigError, match="not a CIFAR-10 batch"):
        load_cifar10(tmp_path, "test")


# -- Stacked MNIST -----------------------------------------------------------------------------------------------------


def test_stacked_mnist_labels_match_channels():
    labels = np.arange(50) % 10
    images = np.repeat((labels * 20).astype(np.uint8), 28 * 28).reshape(50, 28, 28)  # pixel value = 20 * digit
    x, y = stacked_mnist(images, labels, n=300, seed=3)
    assert x.shape == (300, 28, 28, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    digits = x[:, 0, 0, :].astype(np.int64) // 20  # (R, G, B) digits
    np.testing.assert_array_equal(y, digits @ np.array([100, 10, 1]))


def test_stacked_mnist_deterministic_and_uniform():
    images, labels = embedded_mnist("fit")
    a, ya = stacked_mnist(images, labels, n=20000, seed=7)
    b, yb = stacked_mnist(images, labels, n=20000, seed=7)
    _, yc = stacked_mnist(images, labels, n=20000, seed=8)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(ya, yc)
    counts = np.bincount(ya, minlength=1000)
    assert len(counts) == 1000 and counts.min() > 0 and counts.max() < 3 * counts.mean()  # ~20 per mode


def test_stacked_mnist_dataset():
    d = build_dataset("stacked-mnist", {"n": 500, "split": "heldout", "seed": 1})
    assert d.shape == (3, 28, 28) and len(d) == 500 and d.labels.max() < 1000
    assert d.x.min() >= -1.0 and d.x.max() <= 1.0
