"""The digit classifier that ships with ganforge: features for FID/KID/PR/DC on digits, logits for IS.

Trained by ``python -m ganforge.metrics.train_feature_net`` (deterministic) on the embedded MNIST
``fit`` split and evaluated on the ``heldout`` split; its weights file is pinned by SHA-256 below and
checked at every load, so a number computed with it means the same thing everywhere.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import torch
from torch import Tensor, nn

from ganforge.registry import ConfigError

WEIGHTS_FILE = "digit-classifier.safetensors"
# Written by train_feature_net; a changed file is a different metric, so it must change here too.
WEIGHTS_SHA256 = "faf253d3dd96d17c8ccc8bf5c3454f9c2beeb379541b147110e88a64864c2e04"
FEATURE_DIM = 128


class DigitNet(nn.Module):
    """A small CNN for 28x28 grey digits in [-1, 1]: three conv-BN-ReLU stages with max pooling
    (28 -> 14 -> 7 -> 3), a 128-unit layer, ten logits. About 8 MFLOP per image, so a metric over
    10,000 samples costs seconds on a CPU.

    ``features`` are the 128 pre-activation units of the penultimate layer: pre-activations are
    closer to Gaussian than ReLU outputs (no mass piled at zero), which suits the Fréchet distance.
    """

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, num_classes: int = 10) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.trunk = nn.Sequential(*stage(1, width), *stage(width, 2 * width), *stage(2 * width, 4 * width),
                                   nn.Flatten())
        self.fc = nn.Linear(4 * width * 3 * 3, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return f, self.head(f)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_digit_net(expected_sha256: str | None = None) -> DigitNet:
    """The shipped classifier in eval mode; its weights' SHA-256 is checked before they are read."""
    from safetensors.torch import load as load_safetensors

    expected = expected_sha256 or WEIGHTS_SHA256
    res = resources.files("ganforge.metrics.weights").joinpath(WEIGHTS_FILE)
    if not res.is_file():
        raise ConfigError(f"the digit classifier's weights ({WEIGHTS_FILE}) are missing from the package; "
                          "run `python -m ganforge.metrics.train_feature_net`")
    raw = res.read_bytes()
    digest = sha256_bytes(raw)
    if digest != expected:
        raise ConfigError(f"{WEIGHTS_FILE}: SHA-256 {digest[:16]}... does not match the pinned "
                          f"{expected[:16]}...; the metric would not be comparable")
    net = DigitNet()
    net.load_state_dict(load_safetensors(raw))
    return net.eval()


class DigitExtractor:
    """The shipped classifier as a :class:`~ganforge.metrics.features.FeatureExtractor`:
    128-d penultimate features and 10 class logits of 28x28 grey images."""

    name = "digits"
    feature_dim = FEATURE_DIM
    num_classes = 10
    resize = "bilinear (antialiased) to 28x28 when the size differs; channel mean when C != 1"

    def __init__(self) -> None:
        self.net = load_digit_net()
        self.sha256 = WEIGHTS_SHA256

    @torch.no_grad()
    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        from ganforge.metrics.features import prepare_images

        f, logits = self.net.features_and_logits(prepare_images(x.float(), 28, 1))
        return f.float(), logits.float()

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """Class logits of grey 28x28 images in [-1, 1]."""
        return self.extract(x)[1]  # type: ignore[return-value]


def _register() -> None:
    from ganforge.metrics.features import FEATURE_EXTRACTORS, register_feature_extractor

    if "digits" not in FEATURE_EXTRACTORS:
        register_feature_extractor("digits", DigitExtractor, "ganforge's shipped MNIST classifier (SHA-256 pinned)")


_register()
