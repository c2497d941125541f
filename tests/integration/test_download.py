"""Downloads of MNIST-style IDX files and CIFAR-10 from a local HTTP server: caching, checksums, mirrors."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import socket
import tarfile
from importlib import resources

import numpy as np
import pytest
from procs import Server

from ganforge.data import build_dataset, images, mnist, text
from ganforge.data.mnist import load_idx_dataset
from ganforge.registry import ConfigError

TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def idx_gz(a: np.ndarray) -> bytes:
    dims = b"".join(d.to_bytes(4, "big") for d in a.shape)
    return gzip.compress(bytes([0, 0, 0x08, a.ndim]) + dims + a.astype(np.uint8).tobytes())


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server holding fake train IDX files (7 images), with the MD5 table patched to match them."""
    folder = tmp_path / "www"
    folder.mkdir()
    rng = np.random.default_rng(0)
    blobs = {TRAIN[0]: idx_gz(rng.integers(0, 256, (7, 28, 28))), TRAIN[1]: idx_gz(np.arange(7) % 10)}
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
        monkeypatch.setitem(mnist.IDX_MD5["mnist"], name, hashlib.md5(blob).hexdigest())
    server = Server(folder)
    yield server, folder
    server.close()


def dead_url() -> str:
    """The URL of a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_then_cache(served, tmp_path):
    server, _ = served
    cache = tmp_path / "cache"
    x, y = load_idx_dataset("mnist", "train", root=cache, download=True, mirrors=[server.url])
    assert x.shape == (7, 28, 28) and y.tolist() == [0, 1, 2, 3, 4, 5, 6] and y.dtype == np.int64
    assert sorted(p.name for p in cache.iterdir()) == sorted(TRAIN)
    assert len(server.requests) == 2
    x2, _ = load_idx_dataset("mnist", "train", root=cache, download=True, mirrors=[server.url])
    assert len(server.requests) == 2 and np.array_equal(x, x2)  # the second call never asked the server


def test_checksum_mismatch_leaves_nothing(served, tmp_path, monkeypatch):
    server, _ = served
    monkeypatch.setitem(mnist.IDX_MD5["mnist"], TRAIN[0], "0" * 32)
    cache = tmp_path / "cache"
    expected = f"checksum mismatch for {TRAIN[0]}.*expected md5 0{{32}}, got [0-9a-f]{{32}}"
    with pytest.raises(ConfigError, match=expected):
        load_idx_dataset("mnist", "train", root=cache, download=True, mirrors=[server.url])
    assert list(cache.iterdir()) == []  # neither the file nor its temporary twin


def test_dead_mirror_falls_back(served, tmp_path):
    server, _ = served
    x, _ = load_idx_dataset("mnist", "train", root=tmp_path / "c", download=True, mirrors=[dead_url(), server.url])
    assert len(x) == 7 and len(server.requests) == 2


def test_all_mirrors_dead(tmp_path):
    with pytest.raises(ConfigError, match="could not download train-images"):
        load_idx_dataset("mnist", "train", root=tmp_path / "c", download=True, mirrors=[dead_url()])
    assert list((tmp_path / "c").iterdir()) == []


def test_real_md5_of_embedded_test_set(tmp_path):
    """The shipped test files are the canonical t10k files: the real checksums accept them."""
    www = tmp_path / "www"
    www.mkdir()
    assets = resources.files("ganforge.data.assets").joinpath("mnist")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (www / name).write_bytes(assets.joinpath(name).read_bytes())
    server = Server(www)
    try:
        x, y = load_idx_dataset("mnist", "test", root=tmp_path / "cache", download=True, mirrors=[server.url])
    finally:
        server.close()
    assert mnist.IDX_MD5["mnist"]["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert x.shape == (10000, 28, 28) and np.bincount(y)[0] == 980  # zeros in the MNIST test set


def test_ganforge_data_env(served, tmp_path, monkeypatch):
    server, folder = served
    local = tmp_path / "data" / "mnist"
    local.mkdir(parents=True)
    for name in TRAIN:
        shutil.copy(folder / name, local / name)
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    x, _ = load_idx_dataset("mnist", "train", download=True, mirrors=[server.url])
    assert len(x) == 7 and server.requests == []
    d = build_dataset("mnist", {"split": "train"})
    assert d.shape == (1, 28, 28) and len(d) == 7


def test_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ConfigError, match="download: true.*GANFORGE_DATA") as e:
        load_idx_dataset("fashion-mnist", "test")
    assert str(tmp_path / "xdg" / "ganforge" / "fashion-mnist") in str(e.value)
    with pytest.raises(ConfigError, match="GANFORGE_DATA"):
        build_dataset("fashion-mnist", {"root": str(tmp_path / "none")})


def test_local_files_with_wrong_shapes(tmp_path):
    (tmp_path / TRAIN[0]).write_bytes(idx_gz(np.zeros((3, 28, 28))))
    (tmp_path / TRAIN[1].removesuffix(".gz")).write_bytes(gzip.decompress(idx_gz(np.zeros(4))))  # uncompressed
    with pytest.raises(ConfigError, match="do not match"):
        load_idx_dataset("mnist", "train", root=tmp_path)


def test_cifar10_download(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            d = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [3, 4]}
            blob = pickle.dumps(d)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    www = tmp_path / "www"
    www.mkdir()
    (www / images.CIFAR10_ARCHIVE).write_bytes(buf.getvalue())
    monkeypatch.setattr(images, "CIFAR10_MD5", hashlib.md5(buf.getvalue()).hexdigest())
    server = Server(www)
    try:
        x, y = images.load_cifar10(tmp_path / "c", "train", download=True, mirrors=[server.url])
    finally:
        server.close()
    assert x.shape == (10, 32, 32, 3) and y.tolist() == [3, 4] * 5
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["cifar-10-batches-py"]  # archive removed


def test_coco_download_then_cache(tmp_path, monkeypatch):
    """The COCO captions' download path: fetched once into the first data folder, then found there."""
    no_data_dirs = tmp_path / "gf" / "coco-captions"
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "gf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(text, "_shared_text_dir", lambda: tmp_path / "no-shared")  # not the project's copy
    www = tmp_path / "www"
    www.mkdir()
    blobs = {text.COCO_FILES["train"]: b"a man rides a horse .\na dog on a bed .\na cat .\n",
             text.COCO_FILES["test"]: b"a horse on a bed .\na giraffe .\n"}
    for name, blob in blobs.items():
        (www / name).write_bytes(blob)
    server = Server(www)
    try:
        for name, blob in blobs.items():
            monkeypatch.setitem(text.COCO_URLS, name, server.url + name)
            monkeypatch.setitem(text.COCO_MD5, name, hashlib.md5(blob).hexdigest())
        data = text.coco_captions_data(download=True)
        assert len(data) == 3 and len(data.test_lines) == 2 and len(server.requests) == 2
        assert sorted(p.name for p in no_data_dirs.iterdir()) == sorted(blobs)  # the first data_dirs folder
        text.coco_captions_data(download=True)
        assert len(server.requests) == 2  # found locally the second time

        for p in no_data_dirs.iterdir():
            p.unlink()
        monkeypatch.setitem(text.COCO_MD5, text.COCO_FILES["train"], "0" * 32)
        with pytest.raises(ConfigError, match="checksum mismatch.*expected md5 0{32}, got [0-9a-f]{32}") as e:
            text.coco_captions_data(download=True)
        assert "\n" not in str(e.value)
        assert list(no_data_dirs.iterdir()) == []  # nothing half-trusted left behind
    finally:
        server.close()
