"""Checkpoints: exact round trips, safetensors without pickle, atomic writes, trainer state."""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from ganforge.config import from_dict
from ganforge.training.assemble import assemble
from ganforge.training.checkpoint import atomic_write, atomic_write_text, load_state, save_state
from ganforge.training.trainer import Trainer


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact structural equality, including types and tensor dtypes/shapes/values.

    A module's ``OrderedDict`` state comes back as a plain ``dict`` (same keys, same order).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = dict(a), dict(b)
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, f"{where}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{where}: {tuple(a.shape)} != {tuple(b.shape)}"
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def nested_state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g)
    return {
        "weights": {"w": w, "w_t": w.t(), "same_w": w, "scalar": torch.tensor(2.5)},
        "ints": torch.arange(6, dtype=torch.int64).view(2, 3),
        "bytes": torch.randint(0, 256, (10,), dtype=torch.uint8, generator=g),
        "mask": torch.tensor([True, False, True]),
        "half": torch.randn(3, generator=g).to(torch.float16),
        "double": torch.randn(2, generator=g, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "step": 17,
        "lr": 1e-4,
        "third": 1 / 3,
        "nothing": None,
        "flag": True,
        "name": "ring2d",
        "betas": (0.5, 0.999),
        "hidden": [256, 128, [1, 2]],
        "opt": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}, 1: {"momentum_buffer": None}},
            "param_groups": [{"params": [0, 1], "betas": (0.9, 0.99), "foreach": None}],
        },
        "empty_dict": {},
        "empty_list": [],
    }


def test_round_trip_is_exact(tmp_path):
    state = nested_state()
    path = tmp_path / "ck.safetensors"
    save_state(path, state)
    loaded = load_state(path)
    assert_same(state, loaded)
    # int keys stay ints (optimizer state is keyed by parameter index)
    assert set(loaded["opt"]["state"]) == {0, 1}


def test_round_trip_does_not_alias_the_saved_tensors(tmp_path):
    state = {"w": torch.zeros(3)}
    save_state(tmp_path / "a.safetensors", state)
    state["w"].add_(1)
    assert torch.equal(load_state(tmp_path / "a.safetensors")["w"], torch.zeros(3))


def test_the_file_is_plain_safetensors(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_state(path, nested_state())
    raw = path.read_bytes()
    # safetensors layout: 8-byte little-endian header length, a JSON header, then raw tensor bytes
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert "__metadata__" in header and "ganforge_state" in header["__metadata__"]
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert {"F32", "I64", "U8", "BOOL", "F16", "F64"} <= dtypes
    # not a pickle (protocol 2+ starts with PROTO 0x80) nor a torch zip archive
    assert raw[:1] != b"\x80" and not raw.startswith(b"PK")
    with safe_open(str(path), framework="pt") as f:
        names = list(f.keys())
        assert names
        for name in names:
            f.get_tensor(name)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    save_state(path, nested_state())

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load_state must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert_same(nested_state(), load_state(path))


def test_a_pickle_file_is_rejected(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"step": 1}))
    with pytest.raises(Exception):  # noqa: B017 - any error; the point is nothing gets unpickled
        load_state(path)


def test_a_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a ganforge checkpoint"):
        load_state(path)


def test_unsupported_values_raise_type_error(tmp_path):
    with pytest.raises(TypeError):
        save_state(tmp_path / "x.safetensors", {"obj": object()})
    assert not (tmp_path / "x.safetensors").exists()


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "state.txt"
    target.write_text("old and good")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half writ")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_text() == "old and good"
    assert _leftovers(tmp_path, {"state.txt"}) == []


def test_atomic_write_keeps_the_old_checkpoint_when_saving_fails(tmp_path):
    target = tmp_path / "ck.safetensors"
    save_state(target, {"step": 1, "w": torch.ones(2)})
    with pytest.raises(TypeError):
        save_state(target, {"step": 2, "w": torch.zeros(2), "bad": object()})
    loaded = load_state(target)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.ones(2))
    assert _leftovers(tmp_path, {"ck.safetensors"}) == []


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert _leftovers(target.parent, {"summary.json"}) == []


def _trainer(seed: int, norms: bool = False) -> Trainer:
    cfg = from_dict({
        "model": {"generator": {"hidden": [16], "batch_norm": norms},
                  "discriminator": {"hidden": [16], "spectral_norm": norms}},
        "train": {"steps": 10, "batch_size": 32, "seed": seed, "progress": False, "tensorboard": False},
        "optim_g": {"name": "adam", "lr": 1e-3},
        "optim_d": {"name": "adam", "lr": 1e-3},
    })
    torch.manual_seed(seed)
    return Trainer(assemble(cfg), cfg.train)


@pytest.mark.parametrize("norms", [False, True], ids=["plain", "batchnorm-spectralnorm"])
def test_trainer_state_round_trips_and_resumes_identically(tmp_path, norms):
    a = _trainer(seed=0, norms=norms)
    for _ in range(2):
        a.step()
    state = a.state_dict()
    if norms:  # BN running statistics and spectral norm's power-iteration vectors are part of the state
        assert any(k.endswith("running_mean") for k in state["generator"])
        assert any(k.endswith("_u") for k in state["discriminator"])
    assert state["opt_g"]["state"] and state["opt_d"]["state"]  # Adam has moments and a step count
    path = tmp_path / "last.safetensors"
    save_state(path, state)
    loaded = load_state(path)
    assert_same(state, loaded)

    b = _trainer(seed=1, norms=norms)
    b.load_state_dict(loaded)
    assert b.step_num == 2 and b.updates == {"D": 2, "G": 2}
    assert_same(a.parts.opt_g.state_dict(), b.parts.opt_g.state_dict())
    assert_same(a.parts.opt_d.state_dict(), b.parts.opt_d.state_dict())
    # the restored optimizer keeps working, and the next step is the same as the uninterrupted run's
    out_a, out_b = a.step(), b.step()
    assert float(out_a["d_loss"]) == float(out_b["d_loss"])
    assert float(out_a["g_loss"]) == float(out_b["g_loss"])
    for pa, pb in zip(a.G.parameters(), b.G.parameters(), strict=True):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a.D.parameters(), b.D.parameters(), strict=True):
        assert torch.equal(pa, pb)
    for ba, bb in zip(a.G.buffers(), b.G.buffers(), strict=True):
        assert torch.equal(ba, bb)
