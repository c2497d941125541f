"""The feature-extractor registry, image preparation, the metric pipeline end to end, and Inception-v3's errors."""
from __future__ import annotations

import sys
import types
import uuid

import pytest
import torch
from torch import nn

from ganforge.metrics import (
    FEATURE_EXTRACTORS,
    FeatureExtractor,
    InceptionV3Extractor,
    collect,
    compute_image_metrics,
    file_sha256,
    get_extractor,
    prepare_images,
    register_feature_extractor,
)
from ganforge.metrics.features import INCEPTION_ENV
from ganforge.registry import ConfigError


class TinyConvExtractor:
    """A random-init conv net with a fixed seed: 1x16x16 inputs, 8 features, 5 classes."""

    feature_dim, num_classes, resize = 8, 5, "bilinear antialias to 16x16, channel mean"

    def __init__(self, name: str) -> None:
        torch.manual_seed(0)
        self.name, self.sha256 = name, "0" * 64
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 7, 8))
        self.head = nn.Linear(8, 5)

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.body(prepare_images(x, 16, 1))
        return f, self.head(f)


@pytest.fixture(scope="module")
def tiny_name() -> str:
    name = f"tiny-test-{uuid.uuid4().hex[:8]}"  # unique: the registry is process-wide
    register_feature_extractor(name, lambda: TinyConvExtractor(name), help="test stand-in")
    return name


def test_register_and_get(tiny_name):
    ext = get_extractor(tiny_name)
    assert isinstance(ext, FeatureExtractor) and ext.name == tiny_name
    assert get_extractor(tiny_name) is ext  # built once
    assert tiny_name in FEATURE_EXTRACTORS.keys() and FEATURE_EXTRACTORS.describe(tiny_name) == "test stand-in"
    with pytest.raises(ValueError, match="already registered"):
        register_feature_extractor(tiny_name, lambda: TinyConvExtractor(tiny_name))
    with pytest.raises(ConfigError, match="did you mean 'inception-v3'"):
        get_extractor("inception-v4")


def test_end_to_end_protocol(tiny_name):
    ext = get_extractor(tiny_name)
    g = torch.Generator().manual_seed(1)
    fake = torch.rand(60, 3, 20, 20, generator=g) * 2 - 1  # colour, other size: the extractor converts
    real = torch.rand(50, 1, 16, 16, generator=g) * 2 - 1
    labels = torch.zeros(50)
    fs = collect(fake.split(16), ext, max_keep=40, progress=False)
    rs = collect(zip(real.split(16), labels.split(16), strict=True), ext, max_keep=40, progress=False)  # (x, y)
    out = compute_image_metrics(fs, rs, ["fid", "kid", "is", "pr", "dc"], ext, "random-test",
                                kid_subsets=5, kid_subset_size=20)
    for key in ("fid", "kid", "kid_std", "inception_score", "precision", "recall", "density", "coverage"):
        assert isinstance(out[key], float) and out[key] == out[key], key
    assert 1.0 <= out["inception_score"] <= 5.0
    p = out["protocol"]
    assert (p["extractor"], p["extractor_sha256"], p["feature_dim"]) == (tiny_name, "0" * 64, 8)
    assert (p["n_fake"], p["n_real"], p["n_fake_kept"], p["n_real_kept"]) == (60, 50, 40, 40)
    assert p["reference"] == "random-test" and p["resize"] == ext.resize
    assert p["kid"] == {"subsets": 5, "subset_size": 20, "kernel": "cubic polynomial", "seed": 0}
    assert (p["pr_k"], p["dc_k"]) == (3, 5)


def test_prepare_images():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    rgb = prepare_images(x, None, 3)
    assert rgb.shape == (2, 3, 8, 8) and torch.equal(rgb[:, 2], x[:, 0])
    assert torch.allclose(prepare_images(rgb, 8, 1), x)
    assert prepare_images(x, 8, 1) is x  # nothing to do, nothing done
    small = prepare_images(torch.ones(2, 3, 32, 32) * 0.5, (4, 6), 3)
    assert small.shape == (2, 3, 4, 6) and torch.allclose(small, torch.full_like(small, 0.5))
    big = prepare_images(x, 28, 1)
    assert big.shape == (2, 1, 28, 28) and big.min() >= -1 and big.max() <= 1
    with pytest.raises(ConfigError, match="2-channel"):
        prepare_images(torch.zeros(1, 2, 4, 4), 4, 3)
    with pytest.raises(ConfigError, match="float"):
        prepare_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 4, 1)


# -- inception-v3: errors name the fix; the wrapper feeds torch-fidelity uint8 RGB ---------------------


def test_inception_missing_weights(monkeypatch, tmp_path):
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match=INCEPTION_ENV):
        get_extractor("inception-v3")
    with pytest.raises(ConfigError, match=INCEPTION_ENV):  # a failed build is not cached
        get_extractor("inception-v3")


def test_inception_without_torch_fidelity(monkeypatch, tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really weights")
    monkeypatch.setenv(INCEPTION_ENV, str(weights))
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # makes the import fail, installed or not
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(ConfigError, match=r"pip install 'ganforge\[inception\]'"):
        InceptionV3Extractor()


class FakeInception(nn.Module):
    """Stands in for torch-fidelity's FeatureExtractorInceptionV3 and records what it was given."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None):
        super().__init__()
        self.args = (name, features_list, feature_extractor_weights_path)
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        self.seen = x
        return torch.ones(len(x), 2048), torch.zeros(len(x), 1008)


@pytest.fixture
def fake_torch_fidelity(monkeypatch, tmp_path):
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really weights")
    return weights


def test_inception_hash_mismatch(monkeypatch, fake_torch_fidelity):
    monkeypatch.setenv(INCEPTION_ENV, str(fake_torch_fidelity))
    with pytest.raises(ConfigError, match="expected 6726825d"):
        InceptionV3Extractor()


def test_inception_wrapper(fake_torch_fidelity):
    digest = file_sha256(fake_torch_fidelity)
    ext = InceptionV3Extractor(fake_torch_fidelity, expected_sha256=digest)
    assert isinstance(ext, FeatureExtractor) and ext.sha256 == digest
    assert ext.net.args == ("inception-v3", ["2048", "logits_unbiased"], str(fake_torch_fidelity))
    features, logits = ext.extract(torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2))
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert ext.net.seen.dtype == torch.uint8 and ext.net.seen.shape == (1, 3, 2, 2)
    assert ext.net.seen[0, 0].flatten().tolist() == [0, 128, 255, 255]
