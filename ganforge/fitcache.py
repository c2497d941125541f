"""Networks fitted once per data set, kept in a safetensors file keyed by the data's fingerprint.

Some parts of a run are networks trained on the data before (or beside) the GAN: the attribute
classifier of the text-to-image metrics, the caption encoder of captioned data. Fitting them again
in every process and on every resume costs minutes and, where another thread count or torch build
gives other bits, changes what the run conditions on. So each is saved once with the fingerprint of
what it was fitted on (the data's bytes and the fitting settings), and loaded instead of refitted
while the fingerprint matches. A leaf (it imports only the file helpers and the registry's error).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from ganforge.io import atomic_write
from ganforge.registry import ConfigError


def fingerprint(tensors: Iterable[Tensor], settings: dict[str, Any]) -> str:
    """The sha256 of the tensors' bytes (in order) and of ``settings`` as sorted JSON: what a fitted
    network was fitted on. Equal data and settings give equal keys in any process."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def save_fitted(path: str | Path, tensors: dict[str, Tensor], config: dict[str, Any], key: str) -> None:
    """``tensors`` as safetensors, with ``config`` (JSON) and the data fingerprint ``key`` in the metadata."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {"config": json.dumps(config), "data": key}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_fitted(path: str | Path, key: str | None, kind: str) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """The config and tensors saved by :func:`save_fitted`; None when ``key`` is given and the file was
    fitted on other data (or settings). Nothing is unpickled; a file that is not one is a one-line
    :class:`ConfigError` naming ``kind``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = json.loads(meta["config"])
        if key is not None and meta.get("data") != key:
            return None
        return config, load_file(str(path))
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{path} is not {kind} file ({type(e).__name__}: {e})") from None
