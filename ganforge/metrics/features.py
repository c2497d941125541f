"""Feature extractors for image metrics, chosen by name.

A metric is a pipeline: images -> features (this module) -> statistics (:mod:`ganforge.metrics.stats`)
-> number. An extractor is identified in every result by its name and the SHA-256 of its weights file, so
two numbers are only compared when they came from the same network (clean-fid's lesson).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.registry import ConfigError, Registry


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metric pipeline needs from a feature network.

    ``extract`` takes images (N, C, H, W) in [-1, 1] with any C and size (the extractor converts them, see
    :func:`prepare_images`) and returns ``(features (N, feature_dim) float32, logits (N, num_classes) or
    None)``; ``num_classes`` is 0 when there is no classifier head.
    """

    name: str
    sha256: str
    feature_dim: int
    num_classes: int
    resize: str

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]: ...


FEATURE_EXTRACTORS: Registry[Callable[[], FeatureExtractor]] = Registry("feature extractor")
_INSTANCES: dict[str, FeatureExtractor] = {}


def register_feature_extractor(
    name: str, builder: Callable[[], FeatureExtractor], help: str = ""
) -> Callable[[], FeatureExtractor]:
    """Register ``builder`` (called with no arguments, once, on first use) under ``name``."""
    FEATURE_EXTRACTORS.register(name, builder, help=help)
    return builder


def get_extractor(name: str) -> FeatureExtractor:
    """The extractor registered as ``name``, built on first use and then reused (weights load once)."""
    if name not in _INSTANCES:
        # A builder that raises (missing weights, missing package) caches nothing, so a fixed setup works
        # on the next call in the same process.
        _INSTANCES[name] = FEATURE_EXTRACTORS.get(name)()
    return _INSTANCES[name]


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_images(x: Tensor, size: int | tuple[int, int] | None, channels: int) -> Tensor:
    """Convert float images (N, C, H, W) in [-1, 1] to ``channels`` channels and ``size`` pixels.

    1 -> ``channels`` repeats the grey channel, 3 -> 1 averages the colour channels; any other mismatch is a
    ConfigError. Resizing (skipped when ``size`` is None or already matches) is bilinear with antialiasing,
    so downscaling does not alias (clean-fid's point) and values stay in [-1, 1].
    """
    if x.ndim != 4:
        raise ConfigError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError(f"expected float images in [-1, 1], got dtype {x.dtype}")
    c = x.shape[1]
    if c != channels:
        if c == 1:
            x = x.repeat(1, channels, 1, 1)
        elif c == 3 and channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ConfigError(f"cannot convert {c}-channel images to {channels} channels")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return x


# -- Inception-v3 (torch-fidelity port of the TF 2015-12-05 graph used by published FID / IS numbers) --------

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
# The file name carries the hash prefix (torch.hub convention); the full value is the one independent
# evaluation scripts pin for this release asset.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_ENV = "GANFORGE_INCEPTION_WEIGHTS"
INCEPTION_DEFAULT_PATH = f"~/.cache/ganforge/{INCEPTION_FILE}"


class InceptionV3Extractor:
    """Inception-v3 pool3 features (2048) and 1008-way logits, via torch-fidelity, from a local weights file."""

    name = "inception-v3"
    feature_dim = 2048
    num_classes = 1008
    resize = "quantized to uint8, grey repeated to RGB, TF1-compatible bilinear resize to 299x299 (torch-fidelity)"

    def __init__(self, weights_path: str | Path | None = None, expected_sha256: str | None = INCEPTION_SHA256) -> None:
        path = Path(weights_path or os.environ.get(INCEPTION_ENV) or INCEPTION_DEFAULT_PATH).expanduser()
        # Checked before anything else so the message names the one thing to fix; nothing is downloaded
        # here, on purpose: evaluation must not depend on the network.
        if not path.is_file():
            raise ConfigError(
                f"Inception weights not found at {path}: download {INCEPTION_URL} there "
                f"or set {INCEPTION_ENV} to the file"
            )
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ConfigError(
                f"the inception-v3 extractor needs torch-fidelity ({e}): pip install 'ganforge[inception]'"
            ) from None
        # Hash before loading: torch-fidelity unpickles the file (torch.load(weights_only=False)), so only
        # the known file may reach it, and the hash also pins which network produced the numbers.
        self.sha256 = file_sha256(path)
        if expected_sha256 and self.sha256 != expected_sha256:
            raise ConfigError(
                f"{path} has sha256 {self.sha256}, expected {expected_sha256} ({INCEPTION_FILE}); "
                f"download it again from {INCEPTION_URL}"
            )
        self.net = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.net.eval()

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features and unbiased logits (the ones the original IS code uses) of images in [-1, 1]."""
        x = prepare_images(x, None, 3)  # torch-fidelity resizes to 299 itself, TF-compatibly
        # torch-fidelity expects uint8 0..255, as the TF graph saw decoded JPEG/PNG pixels.
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        device = next(self.net.parameters()).device
        features, logits = self.net(x.to(device))
        return features.float(), logits.float()


register_feature_extractor(
    "inception-v3",
    InceptionV3Extractor,
    help=f"Inception-v3 pool3 (2048-d) + 1008 logits via torch-fidelity; weights from ${INCEPTION_ENV}",
)
