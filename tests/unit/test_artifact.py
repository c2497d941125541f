"""The generator artifact: one module samples, exports and loads, with the data's transform."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import ganforge
from ganforge.config import NetConfig
from ganforge.generator import GeneratorArtifact, Prior, load, sample, sampling_mode
from ganforge.nn import build_generator
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec, Span

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "sample_every": 0, "checkpoint_every": 0}


def test_a_saved_generator_returns_data_in_the_users_units(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4000, 2) * torch.tensor([5.0, 0.01]) + torch.tensor([100.0, -3.0])
    gan = ganforge.GAN({"model": {"z_dim": 2, "generator": {"hidden": [32]}, "discriminator": {"hidden": [32]}},
                        "optim_g": {"lr": 1e-3}, "optim_d": {"lr": 1e-3},
                        "train": {"steps": 300, "batch_size": 256, **QUIET}})
    gan.fit(x, standardize=True)
    gan.save(tmp_path / "g.safetensors")
    restored = ganforge.load(tmp_path / "g.safetensors")
    s, raw = restored.sample(2000, seed=3), restored.sample(2000, seed=3, raw=True)
    # The network learned standardized data; the artifact maps it back with the fitted transform.
    assert raw.mean(0).abs().max() < 2.0 and raw.std(0).max() < 3.0
    assert s.mean(0)[0] == pytest.approx(100.0, abs=10.0) and s.mean(0)[1] == pytest.approx(-3.0, abs=0.02)
    assert s.std(0)[0] > 1.0 and s.std(0)[1] < 0.05  # each feature back at its own scale
    torch.testing.assert_close(s, raw * restored.transform.std + restored.transform.mean)
    torch.testing.assert_close(s, gan.sample(2000, seed=3))  # the loaded artifact samples what the trained one does
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["ganforge"])
        assert {"transform/mean", "transform/std"} <= set(f.keys())
    assert meta["transform"] == {"kind": "standardize", "config": {"shape": [2]}}
    assert meta["spec"]["shape"] == [2] and meta["prior"]["z_dim"] == 2
    assert json.loads((tmp_path / "g.json").read_text()) == meta


def test_sampling_restores_the_train_mode_even_when_the_forward_fails():
    class Breaks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, v):
            assert not self.training and not torch.is_grad_enabled()
            raise RuntimeError("boom")

    g = Breaks().train()
    with pytest.raises(RuntimeError, match="boom"):
        sample(g, Prior("normal", 2), 10)
    assert g.training
    with sampling_mode(g):
        assert not g.training
    assert g.training


def test_sampling_is_seeded_and_labels_fix_the_class():
    prior = Prior("normal", 3, classes=4)
    g = nn.Linear(prior.dim, prior.dim)
    a, b = sample(g, prior, 50, seed=1, batch=7), sample(g, prior, 50, seed=1, batch=7)
    assert torch.equal(a, b) and not torch.equal(a, sample(g, prior, 50, seed=2, batch=7))
    art = GeneratorArtifact(nn.Identity(), prior, DataSpec((prior.dim,)), {})
    one_hot = art.sample(20, label=2)[:, 3:]
    assert torch.equal(one_hot.argmax(1), torch.full((20,), 2)) and torch.equal(one_hot.sum(1), torch.ones(20))
    with pytest.raises(ConfigError, match="0..3"):
        art.sample(5, label=4)


def test_output_spans_drive_the_generators_heads():
    spec = DataSpec((6,), spans=(Span(1, "tanh"), Span(3, "softmax"), Span(2, "linear")))
    g = build_generator(NetConfig(hidden=[16]), spec, 4)
    with torch.no_grad():
        out = g(torch.randn(200, 4) * 10)
    assert out[:, 0].abs().max() <= 1.0
    torch.testing.assert_close(out[:, 1:4].sum(1), torch.ones(200))
    assert (out[:, 1:4] >= 0).all() and (out[:, 4:].abs() > 1).any()  # the linear span is not squashed
    with pytest.raises(ValueError, match="cover 5 values"):
        DataSpec((6,), spans=(Span(5),))
    assert DataSpec.from_dict(spec.to_dict()) == spec


def test_loading_refuses_what_is_not_a_generator(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ConfigError, match="not a ganforge generator"):
        load(bad)
    with pytest.raises(ConfigError, match="no generator"):
        load(tmp_path / "missing.safetensors")
