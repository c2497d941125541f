"""Feature extractors for image metrics, chosen by name.

A metric is a pipeline: images -> features (this module) -> statistics (:mod:`ganforge.metrics.stats`)
-> number. An extractor is identified in every result by its name and the SHA-256 of its weights file, so
two numbers are only compared when they came from the same network (clean-fid's lesson).

Which network suits which images is decided in one place, :func:`choose_extractor` (what ``auto`` means):
the shipped ``digits`` classifier for MNIST-like 1x28x28 images, the FID Inception-v3 (``inception``)
for anything else.

Two extractors run the Inception-v3 of FID papers (the TF graph ``inception-2015-12-05``), from two
translations of it:

* ``inception`` (:class:`InceptionExtractor`): NVIDIA's TorchScript file, as stylegan2-ada-pytorch,
  StyleGAN3, EDM and clean-fid run it. Needs nothing but PyTorch; the file is fetched once where there
  is a network. This is what ``auto`` picks.
* ``inception-v3`` (:class:`InceptionV3Extractor`): torch-fidelity's port (``pip install
  'ganforge[inception]'``), whose resize reproduces TF1's exactly, as the original TTUR FID code ran it.
  Never downloads: its weights file is placed by hand.

Both give the same network's features; their numbers agree closely but not to the last digit (the
resize to 299x299 differs in rounding), so each result names the one it came from.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.metrics import inception as _inception
from ganforge.metrics.inception import ExtractorUnavailable
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


def to_uint8(x: Tensor) -> Tensor:
    """Float images in [-1, 1] as the uint8 pixels 0..255 an Inception network expects (it saw decoded
    JPEG / PNG files): ``(x * 127.5 + 128).clamp(0, 255)`` truncated, stylegan2-ada-pytorch's conversion of
    its generator outputs, i.e. ``(x + 1) * 127.5`` rounded half up. Real images read from uint8 files come
    back as the very same pixels."""
    return (x.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


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
            raise ExtractorUnavailable(
                f"Inception weights not found at {path}: download {INCEPTION_URL} there "
                f"or set {INCEPTION_ENV} to the file (or use the 'inception' extractor, which fetches its own)",
                path,
            )
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ExtractorUnavailable(
                f"the inception-v3 extractor needs torch-fidelity ({e}): pip install 'ganforge[inception]'"
            ) from None
        # Hash before loading: torch-fidelity unpickles the file (torch.load(weights_only=False)), so only
        # the known file may reach it, and the hash also pins which network produced the numbers.
        self.sha256 = file_sha256(path)
        if expected_sha256 and self.sha256 != expected_sha256:
            raise ExtractorUnavailable(
                f"{path} has sha256 {self.sha256}, expected {expected_sha256} ({INCEPTION_FILE}); "
                f"download it again from {INCEPTION_URL}",
                path,
            )
        self.net = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.net.eval()

    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features and unbiased logits (the ones the original IS code uses) of images in [-1, 1]."""
        x = prepare_images(x, None, 3)  # torch-fidelity resizes to 299 itself, TF-compatibly
        x = to_uint8(x)  # torch-fidelity expects uint8 0..255, as the TF graph saw decoded JPEG/PNG pixels
        device = next(self.net.parameters()).device
        features, logits = self.net(x.to(device))
        return features.float(), logits.float()


register_feature_extractor(
    "inception-v3",
    InceptionV3Extractor,
    help=f"the FID Inception-v3 through torch-fidelity (pip install 'ganforge[inception]'; TF1-exact resize, "
         f"as the original FID code): 2048-d + 1008 logits; never downloads, weights file from "
         f"${INCEPTION_ENV} or {INCEPTION_DEFAULT_PATH}",
)


# -- Inception-v3 as stylegan2-ada-pytorch / clean-fid run it (TorchScript, fetched once, SHA-256 pinned) --------


class InceptionExtractor:
    """The FID Inception-v3 of stylegan2-ada-pytorch, StyleGAN3, EDM and clean-fid: NVIDIA's TorchScript file
    ``inception-2015-12-05.pt`` (see :mod:`ganforge.metrics.inception` for where it comes from).

    Called as those code bases call it: ``net(images_uint8_NCHW, return_features=True)`` gives the 2048-d
    pool features, and the network resizes to 299x299 itself. Logits for the Inception Score are the
    unbiased ones (``no_output_bias=True`` there, matching the original IS code), taken from the features
    with the network's own output weights when it exposes them, so one forward pass serves both.
    """

    name = "inception"
    feature_dim = 2048
    num_classes = 1008
    resize = ("quantized to uint8 0..255, grey repeated to RGB, resized to 299x299 inside the TorchScript "
              "network (bilinear, TF1-aligned; stylegan2-ada-pytorch's protocol)")
    # Images per forward pass: 299x299 activations of a 500-image evaluation batch would need gigabytes;
    # 64 is stylegan2-ada-pytorch's batch.
    chunk = 64

    def __init__(self, weights_path: str | Path | None = None, expected_sha256: str | None = None,
                 urls: list[str] | None = None, device: str | torch.device | None = None) -> None:
        # The pin is read here, not bound as a default, so it is the module's value at build time.
        pinned = expected_sha256 or _inception.INCEPTION_TS_SHA256
        path, self.sha256 = _inception.inception_weights(weights_path, pinned, urls)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            net = torch.jit.load(str(path), map_location=self.device)
        except (RuntimeError, ValueError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExtractorUnavailable(
                f"{path} is not a loadable TorchScript file ({first}); delete it and run again", path) from None
        self.net = net.eval()
        self._head = self._output_weights()

    def _output_weights(self) -> Tensor | None:
        """The (1008, 2048) weights of the network's ``output`` layer (stylegan2-ada-pytorch's file has
        one), or None: then logits come from a second pass with ``no_output_bias=True``."""
        w = getattr(getattr(self.net, "output", None), "weight", None)
        if isinstance(w, Tensor) and tuple(w.shape) == (self.num_classes, self.feature_dim):
            return w.detach().float()
        return None

    @torch.no_grad()
    def extract(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """2048-d features and 1008 unbiased logits of images in [-1, 1] (any size; 1 or 3 channels)."""
        x = to_uint8(prepare_images(x, None, 3))  # decoded-image pixels, as stylegan2-ada-pytorch feeds it
        features, logits = [], []
        for part in x.split(self.chunk):
            part = part.to(self.device)
            f = self.net(part, return_features=True).float()
            if self._head is not None:
                z = f @ self._head.T
            else:
                # Softmax probabilities without the output bias; their log is a logit vector with the same
                # softmax, which is all the Inception Score reads.
                z = self.net(part, no_output_bias=True).float().clamp_min(1e-30).log()
            features.append(f.cpu())
            logits.append(z.cpu())
        return torch.cat(features), torch.cat(logits)


register_feature_extractor(
    "inception",
    InceptionExtractor,
    help=f"the FID Inception-v3 as stylegan2-ada-pytorch / clean-fid run it (NVIDIA's TorchScript "
         f"{_inception.INCEPTION_TS_FILE}, PyTorch only): 2048-d + 1008 logits; fetched once into "
         f"~/.cache/ganforge/ (or ${_inception.INCEPTION_TS_ENV}), SHA-256 pinned; what auto picks for "
         "anything but 1x28x28 grey images",
)


# -- which extractor suits which images ------------------------------------------------------------------------

DIGIT_SHAPE = (1, 28, 28)


def shape_text(shape: Sequence[int]) -> str:
    """``(3, 32, 32)`` -> ``"3x32x32"``."""
    return "x".join(str(int(d)) for d in shape)


def choose_extractor(*shapes: Sequence[int]) -> str:
    """The extractor ``auto`` stands for, from the image shapes (C, H, W) to be compared (a leading batch
    dimension is ignored): ``digits`` only when every one is MNIST's 1x28x28, otherwise ``inception``.

    The digit classifier knows 28x28 grey digits and nothing else: on colour or larger images its features
    say little about realism (a colour run once scored FID 1,609 against MNIST through it, unremarked).
    """
    dims = [tuple(int(d) for d in s)[-3:] for s in shapes]
    return "digits" if dims and all(d == DIGIT_SHAPE for d in dims) else "inception"


def resolve_extractor(requested: str, *shapes: Sequence[int]) -> tuple[str, str]:
    """``(extractor name, why)`` for an ``eval.extractor`` setting and the image shapes it will see.

    ``auto`` is decided by :func:`choose_extractor`; ``why`` goes into the result's protocol, e.g.
    ``"auto: 3x32x32 images -> inception"``. Any other name is taken as asked.
    """
    if requested != "auto":
        return requested, f"requested: {requested}"
    name = choose_extractor(*shapes)
    seen = list(dict.fromkeys(shape_text(tuple(s)[-3:]) for s in shapes))
    return name, f"auto: {' and '.join(seen) or 'unknown'} images -> {name}"
