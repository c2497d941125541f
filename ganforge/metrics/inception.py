"""The weights file of the FID Inception-v3 that stylegan2-ada-pytorch and clean-fid run: where it lives,
fetching it once, and checking it is the published file.

The network is NVIDIA's TorchScript translation of the TF graph ``inception-2015-12-05`` (the one behind
published FID / IS numbers). The file is not shipped (95 MB, NVIDIA's licence); it is downloaded on first
use into ``$XDG_CACHE_HOME/ganforge/`` (default ``~/.cache/ganforge/``), or read from
``$GANFORGE_INCEPTION_TS``. Its SHA-256 is checked at download and at every load: it is what says
"these numbers came from that network". The extractor that runs it is
:class:`ganforge.metrics.features.InceptionExtractor`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ganforge.data.mnist import DownloadError, download_file
from ganforge.registry import ConfigError

INCEPTION_TS_FILE = "inception-2015-12-05.pt"
INCEPTION_TS_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_TS_FILE}"
INCEPTION_TS_URLS = [INCEPTION_TS_URL]  # a list, so tests (and mirrors) can point elsewhere
# NVIDIA publishes no checksum beside the file. This is the value crowsonkb/k-diffusion pins for the same
# URL and verifies after download (k_diffusion/evaluation.py, InceptionV3FeatureExtractor); a file that
# does not match it is a different network, and its numbers would not be FIDs anyone else reports.
INCEPTION_TS_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
INCEPTION_TS_ENV = "GANFORGE_INCEPTION_TS"


def default_inception_path() -> Path:
    """``$GANFORGE_INCEPTION_TS`` if set, else ``$XDG_CACHE_HOME/ganforge/inception-2015-12-05.pt``
    (``~/.cache/ganforge/...`` by default, next to the data sets' cache)."""
    if os.environ.get(INCEPTION_TS_ENV):
        return Path(os.environ[INCEPTION_TS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ganforge" / INCEPTION_TS_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ExtractorUnavailable(ConfigError):
    """A feature extractor that cannot be built here: its weights file is missing and cannot be fetched, is not
    the pinned file, or a package it needs is not installed. A one-line :class:`ConfigError` like the rest, but
    its own type, so a training run can skip its image metrics and finish instead of losing the run at an
    evaluation; ``path`` is the file that would fix it (None when the fix is not a file), so a later attempt
    can tell whether anything changed."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def inception_weights(path: str | Path | None = None, sha256: str = INCEPTION_TS_SHA256,
                      urls: list[str] | None = None) -> tuple[Path, str]:
    """The verified TorchScript file and its SHA-256, downloaded first when it is not there yet.

    ``path`` defaults to :func:`default_inception_path`; ``urls`` to :data:`INCEPTION_TS_URLS`. Where no
    mirror answers (no network), the error is one line naming the file, the URL, where to put it and the
    environment variable. A local file whose hash differs is refused rather than used: it would give
    numbers that look like FIDs and are not comparable with any. Every failure is an
    :class:`ExtractorUnavailable` (a one-line ConfigError).
    """
    dest = Path(path).expanduser() if path else default_inception_path()
    by_hand = (f"fetch {INCEPTION_TS_URL} by hand and put it at {dest}, "
               f"or set {INCEPTION_TS_ENV} to the path of a copy")
    if not dest.is_file():
        try:
            # download_file checks the hash before the file gets its name, so nothing unverified stays behind.
            download_file(INCEPTION_TS_URLS if urls is None else urls, dest, sha256=sha256)
        except DownloadError as e:
            reason = _one_line("; ".join(e.errors)) or "no mirrors"  # one line, whatever urllib said
            raise ExtractorUnavailable(
                f"the 'inception' extractor needs {INCEPTION_TS_FILE} and it could not be downloaded ({reason}); "
                f"{by_hand}", dest) from None
        except ConfigError as e:  # a mirror served another file: its checksum differs
            raise ExtractorUnavailable(f"{_one_line(str(e))}; {by_hand}", dest) from None
        except OSError as e:  # the destination folder cannot be written (read-only cache, full disk)
            raise ExtractorUnavailable(
                f"the 'inception' extractor needs {INCEPTION_TS_FILE} and it cannot be saved at {dest} "
                f"({_one_line(str(e))}); {by_hand}", dest) from None
        return dest, sha256
    digest = _sha256(dest)
    if digest != sha256:
        raise ExtractorUnavailable(
            f"{dest} has sha256 {digest}, expected {sha256} ({INCEPTION_TS_FILE}); delete it to download it "
            f"again from {INCEPTION_TS_URL}, or point {INCEPTION_TS_ENV} at the right file", dest)
    return dest, digest


def _one_line(text: str) -> str:
    return " ".join(text.split())
