"""Streamed data (ganforge.data.streaming, image_stream, table_stream): image folders and tables read by
DataLoader workers.

Each test builds tiny files in a temporary folder (8 x 8 PNGs, a few hundred table rows) and checks
what a broken stream would get wrong: the pixels (the same decode as the in-memory folder), skipped
files, disjoint shards, the resumed position, the automatic choice and the option errors.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganforge.data import build_dataset
from ganforge.data.image_stream import ImageFolderStream, _ShardOrder
from ganforge.data.images import image_folder_data, load_image_folder
from ganforge.data.table import TableData, table_source
from ganforge.data.table_io import read_table
from ganforge.data.table_stream import TableStream, _conform
from ganforge.data.tensor import TensorData
from ganforge.registry import ConfigError

N_GOOD = 40


def make_images(root: Path, n: int = N_GOOD, bad: int = 2, seed: int = 0) -> Path:
    """``n`` distinct random 8 x 8 RGB PNGs (some in a subfolder) and ``bad`` corrupt files."""
    rng = np.random.default_rng(seed)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        where = root / "sub" if i % 3 else root
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(where / f"img{i:02d}.png")
    for i in range(bad):
        (root / f"bad{i}.png").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("not an image, not listed")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("clean"), bad=0)


def rows(x: torch.Tensor) -> list[bytes]:
    """Each image as bytes, sorted: images compared as a set (with multiplicity)."""
    return sorted(r.numpy().tobytes() for r in x.flatten(1))


# -- image folders ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_image_batches_have_the_shape_dtype_and_range(folder, workers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ImageFolderStream(folder, size=8, channels=3, workers=workers) as s:
            assert s.shape == (3, 8, 8) and s.spec.shape == (3, 8, 8) and s.spec.is_image
            for n in (16, 16, 5):  # a different n is served from the same workers
                x = s.batch(n)["x"]
                assert x.shape == (n, 3, 8, 8) and x.dtype == torch.float32
                assert x.min() >= -1 and x.max() <= 1
            assert s.sample(3).shape == (3, 3, 8, 8)


@pytest.mark.parametrize("channels", [1, 3])
def test_streamed_images_are_the_in_memory_images(folder, channels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = load_image_folder(folder, 8, channels)
        with ImageFolderStream(folder, size=8, channels=channels, workers=0) as s:
            # One epoch of 42 files (2 unreadable) is exactly the 40 images, each once.
            got = torch.cat([s.batch(16)["x"], s.batch(16)["x"], s.batch(8)["x"]])
    assert len(expected) == N_GOOD
    assert rows(got) == rows(expected)  # bit for bit: the same decode and the same arithmetic


def test_unreadable_files_are_counted_and_skipped_with_one_warning(folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = ImageFolderStream(folder, size=8, channels=3, workers=2)
        batches = [s.batch(16)["x"] for _ in range(6)]  # more than two epochs
        s.close()
    assert all(len(b) == 16 for b in batches)  # every batch refilled past the bad files
    assert s.skipped == 2 and len(s) == N_GOOD
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "skipped 2 unreadable files" in messages[0] and "bad0.png" in messages[0]


def test_the_warning_comes_at_close_when_the_first_epoch_did_not_end(folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = ImageFolderStream(folder, size=8, channels=1, workers=0)
        bad = {i for i, f in enumerate(s.files) if f.name.startswith("bad")}
        # A seed whose epoch order meets an unreadable file among its first 4 files.
        seed = next(k for k in range(1000) if bad & set(_ShardOrder(len(s.files), 0, 1, k).files(0, 4)))
        s.set_shard(0, 1, seed)
        assert s.batch(4)["x"].shape == (4, 1, 8, 8)
        assert s.skipped >= 1 and not caught  # not yet: more may follow in this epoch
        s.close()
    assert len(caught) == 1 and f"skipped {s.skipped} unreadable" in str(caught[0].message)


def test_a_folder_of_unreadable_files_or_none_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as memory_error:
        load_image_folder(tmp_path / "empty", 8, 1)
    with pytest.raises(ConfigError) as stream_error:
        ImageFolderStream(tmp_path / "empty", 8, 1)
    assert str(stream_error.value) == str(memory_error.value)
    broken = make_images(tmp_path / "broken", n=0, bad=3)
    s = ImageFolderStream(broken, 8, 1, workers=0)
    with pytest.raises(ConfigError, match="no readable images") as e:
        s.batch(4)
    assert "\n" not in str(e.value) and "3 image files" in str(e.value)
    with pytest.raises(ConfigError, match="not found"):
        ImageFolderStream(tmp_path / "nope", 8, 1)
    with pytest.raises(ConfigError, match="channels"):
        ImageFolderStream(broken, 8, 2)


def test_two_shards_are_disjoint_and_cover_the_epoch(clean_folder):
    parts = []
    for index in (0, 1):
        with ImageFolderStream(clean_folder, size=8, channels=3, workers=0) as s:
            s.set_shard(index, 2, seed=7)
            parts.append(s.batch(N_GOOD // 2)["x"])  # one epoch of this shard
            next_epoch = s.batch(N_GOOD // 2)["x"]
        assert not torch.equal(parts[-1], next_epoch)  # a new permutation (and a new split) each epoch
    a, b = (set(rows(p)) for p in parts)
    assert len(a) == len(b) == N_GOOD // 2 and not a & b
    assert sorted(a | b) == rows(load_image_folder(clean_folder, 8, 3))


def test_the_order_depends_on_the_seed_not_on_the_generator(clean_folder):
    def first(seed: int, gen_seed: int) -> torch.Tensor:
        with ImageFolderStream(clean_folder, size=8, channels=1, workers=0) as s:
            s.set_shard(0, 1, seed)
            return s.batch(8, torch.Generator().manual_seed(gen_seed))["x"]

    assert torch.equal(first(3, 0), first(3, 1))
    assert not torch.equal(first(3, 0), first(4, 0))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_continues_where_it_was(folder, workers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ImageFolderStream(folder, size=8, channels=3, workers=workers) as s:
            s.set_shard(0, 1, seed=5)
            s.batch(16)
            s.batch(16)
            state = s.state_dict()
            expected = [s.batch(16)["x"], s.batch(16)["x"]]  # across the end of the first epoch
        state = json.loads(json.dumps(state))  # plain values: the checkpoint keeps it as JSON
        assert state["epoch"] == 0 and state["offset"] >= 32  # past the unreadable files met so far
        with ImageFolderStream(folder, size=8, channels=3, workers=workers) as r:
            r.load_state_dict(state)
            r.set_shard(0, 1, seed=5)  # the trainer may shard after loading: the position is kept
            got = [r.batch(16)["x"], r.batch(16)["x"]]
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


def test_a_position_saved_under_another_shard_starts_a_fresh_epoch(clean_folder):
    with ImageFolderStream(clean_folder, size=8, channels=1, workers=0) as s:
        s.batch(10)
        state = s.state_dict()
    with ImageFolderStream(clean_folder, size=8, channels=1, workers=0) as r:
        r.set_shard(1, 2, seed=0)
        r.load_state_dict(state)
        assert r.state_dict()["epoch"] == 1 and r.state_dict()["offset"] == 0
        assert r.batch(4)["x"].shape == (4, 1, 8, 8)
        r.load_state_dict({"perm": None, "pos": 3})  # an in-memory run's state: start from the beginning
        assert r.state_dict()["epoch"] == 0


def test_stream_auto_follows_the_memory_limit(clean_folder):
    assert isinstance(image_folder_data(str(clean_folder), size=8), TensorData)
    # split="all": the default keeps a held-out tenth of the files back for evaluation
    streamed = image_folder_data(str(clean_folder), size=8, channels=1, memory_limit=1000,  # 40x1x8x8x4 B
                                 split="all")
    assert isinstance(streamed, ImageFolderStream) and len(streamed) == N_GOOD
    in_memory = image_folder_data(str(clean_folder), size=8, channels=1, memory_limit=40 * 64 * 4)
    assert isinstance(in_memory, TensorData)
    assert isinstance(image_folder_data(str(clean_folder), size=8, channels=1, stream=True), ImageFolderStream)
    forced = image_folder_data(str(clean_folder), size=8, channels=1, stream="false", memory_limit=1)
    assert isinstance(forced, TensorData)
    d = build_dataset("image-folder", {"size": 8, "memory_limit": 1, "workers": 0}, path=str(clean_folder))
    assert isinstance(d, ImageFolderStream) and d.workers == 0


def test_bad_stream_options_are_one_line_config_errors(clean_folder, tmp_path):
    with pytest.raises(ConfigError, match="auto, true, false") as e:
        build_dataset("image-folder", {"stream": "maybe"}, path=str(clean_folder))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="memory_limit"):
        image_folder_data(str(clean_folder), memory_limit="1GB")
    with pytest.raises(ConfigError, match="workers"):
        ImageFolderStream(clean_folder, 8, 1, workers=-1)
    csv = tmp_path / "t.csv"
    small_table().to_csv(csv, index=False)
    with pytest.raises(ConfigError, match="auto, true, false") as e:
        build_dataset("table", {"stream": "yes please"}, path=str(csv))
    assert "\n" not in str(e.value)


# -- tables ----------------------------------------------------------------------------------------------------------


def small_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": np.where(rng.random(n) < 0.5, rng.normal(-3, 0.3, n), rng.normal(4, 0.5, n)).round(3),
        "count": rng.integers(0, 1000, n),
        "kind": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
        "flag": rng.choice(["true", "false"], n),
    })
    df.loc[5, "x"] = np.nan
    return df


@pytest.fixture(scope="module")
def table_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tables")
    df = small_table()
    df.to_csv(root / "t.csv", index=False)
    df.to_parquet(root / "t.parquet")
    return {"csv": root / "t.csv", "parquet": root / "t.parquet"}


OPTS = dict(sample_rows=1000, chunk_rows=40, buffer_chunks=2)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_stream_matches_the_in_memory_layout_and_batches(table_files, fmt):
    memory = table_source(read_table(table_files[fmt]), conditional=True)
    with TableStream(table_files[fmt], conditional=True, workers=0, **OPTS) as s:
        # With a sample holding every row, the transformer is the one fitted in memory.
        assert s.transform.config() == memory.transform.config()
        assert s.spec == memory.spec and len(s) == 300
        g = torch.Generator().manual_seed(0)
        b = s.batch(64, g)
        assert b["x"].shape == (64, s.transform.width) and b["x"].dtype == torch.float32
        assert b["c"].shape == (64, s.spec.condition_dim) and torch.equal(b["c"].sum(1), torch.ones(64))
        # The condition names a category the row holds: its one-hot is set in x at the same place.
        for offset, width, c_offset in s.spec.extra["condition_spans"]:
            chosen = b["c"][:, c_offset:c_offset + width]
            hit = chosen.sum(1) > 0
            assert torch.equal(b["x"][hit, offset:offset + width], chosen[hit])
        assert s.fake_conditions(9, g)["c"].shape == (9, s.spec.condition_dim)


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The same rows in any order: numbers up to float32's error (the encoding's), missing as missing."""
    a, b = (d.fillna({"x": -999}).sort_values(["count", "x"]).reset_index(drop=True) for d in (a, b))
    assert len(a) == len(b)
    np.testing.assert_allclose(a["x"], b["x"], atol=1e-3)
    for name in ("count", "kind", "flag"):
        assert a[name].tolist() == b[name].tolist(), name


@pytest.mark.parametrize("workers", [0, 2])
def test_table_shards_serve_their_own_rows_once_an_epoch(table_files, workers):
    table = read_table(table_files["csv"])
    for index in (0, 1):
        with TableStream(table_files["csv"], conditional=False, workers=workers, **OPTS) as s:
            s.set_shard(index, 2, seed=1)
            x = torch.cat([s.batch(10)["x"] for _ in range(15)])  # 150 rows: this shard's epoch
            assert s.state_dict()["epoch"] == 0
            # Decoded, the rows served are exactly this shard's rows of the file (every 2nd from index),
            # each once: no row lost, repeated or taken from the other shard.
            back = s.transform.inverse_transform(x)
        assert_same_rows(back, table.iloc[index::2])


def test_table_stream_resumes_where_it_was(table_files):
    for conditional in (True, False):
        g = torch.Generator().manual_seed(3)
        with TableStream(table_files["parquet"], conditional=conditional, workers=1, **OPTS) as s:
            for _ in range(5):
                s.batch(32, g)
            state, rng = json.loads(json.dumps(s.state_dict())), g.get_state()
            expected = [s.batch(32, g) for _ in range(4)]  # across blocks and an epoch's end
        g.set_state(rng)
        with TableStream(table_files["parquet"], conditional=conditional, workers=0, **OPTS) as r:
            r.load_state_dict(state)
            got = [r.batch(32, g) for _ in range(4)]
        for e, o in zip(expected, got, strict=True):
            assert e.keys() == o.keys() and all(torch.equal(e[k], o[k]) for k in e)
    with TableStream(table_files["parquet"], conditional=False, workers=0, **OPTS) as other:
        other.set_shard(1, 2, seed=0)
        other.load_state_dict(state)  # saved by a single process: this layout starts a fresh epoch
        assert (other.state_dict()["epoch"], other.state_dict()["offset"]) == (state["epoch"] + 1, 0)
        assert other.batch(8)["x"].shape == (8, other.transform.width)


def test_table_stream_auto_choice_and_sampling(table_files):
    assert isinstance(build_dataset("table", {}, path=str(table_files["csv"])), TableData)
    s = build_dataset("table", {"memory_limit": 100, "workers": 0, "sample_rows": 50, "conditional": False},
                      path=str(table_files["csv"]))
    assert isinstance(s, TableStream) and len(s) == 300
    assert s.batch(20)["x"].shape == (20, s.transform.width)  # a transformer fitted on 50 rows encodes all
    s.close()
    forced = build_dataset("table", {"stream": "false", "memory_limit": 1}, path=str(table_files["csv"]))
    assert isinstance(forced, TableData)


def test_chunks_are_given_the_types_the_sample_decided():
    # A chunk sees other values than the sample did: a stray word in a number column, flags in capitals.
    raw = pd.DataFrame({"n": ["1", "x", "y", "2"], "b": ["true", None, "FALSE", "true"], "t": ["1", "2", "3", "4"]})
    out = _conform(raw, ["number", "bool", "other"])
    assert out["n"].tolist()[:1] == [1.0] and out["n"].isna().sum() == 2
    assert out["b"].dtype == "boolean" and out["b"].tolist()[0] is True and out["b"].isna().sum() == 1
    assert out["t"].tolist() == ["1", "2", "3", "4"]  # text in the sample stays text (ids like "007")


def test_table_stream_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TableStream(tmp_path / "missing.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="no rows"):
        TableStream(tmp_path / "header.csv")
    with pytest.raises(ConfigError, match="chunk_rows"):
        TableStream(tmp_path / "header.csv", chunk_rows=0)
