"""Checkpoints that are safe to write and safe to load.

One checkpoint is one safetensors file: every tensor of the nested state (weights, optimizer
moments, RNG states) is stored as a tensor, and the rest of the structure (numbers, strings, lists,
dict keys) as JSON in the file's metadata. Loading never unpickles anything, and writing goes to a
temporary file that is renamed over the target, so a crash never leaves a half-written checkpoint.

Loading takes a path a user gave (``ganforge train --resume DIR``), so any file that is not a
ganforge checkpoint, a damaged one, or one of a run whose modules cannot be rebuilt from its config
is a :class:`~ganforge.registry.ConfigError` of one line naming the file.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ganforge.io import atomic_write, atomic_write_text
from ganforge.registry import ConfigError
from ganforge.tensorfile import one_line, read_tensor_file

__all__ = ["ModuleOrigin", "atomic_write", "atomic_write_text", "check_origin", "load_state", "model_mismatch",
           "save_state", "save_tensors"]


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        # safetensors refuses shared or non-contiguous storage; a copy is cheap next to a step.
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors) for k, v in obj.items()}}
        return {"__items__": [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    return obj


_OS_ERROR = re.compile(r"os error (\d+)")


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """safetensors' ``save_file``, whose I/O failures (a full disk) come as a ``SafetensorError`` whose text
    ends in ``(os error 28)``: re-raised as the :class:`OSError` they are."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError:
        raise
    except Exception as e:
        found = _OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from e


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a nested dict of tensors and plain values as one safetensors file.

    A write that fails (a full disk, a folder turned read-only) leaves the previous file as it was and no
    temporary file behind, and is a :class:`ConfigError` of one line saying so.
    """
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, tensors)
    meta = {"ganforge_state": json.dumps(structure)}
    try:
        atomic_write(path, lambda tmp: save_tensors(tensors, tmp, meta))
    except OSError as e:
        kept = "the previous checkpoint is intact" if Path(path).is_file() else "no checkpoint was written before"
        raise ConfigError(f"cannot write checkpoint {path}: {e.strerror or one_line(e)} ({kept})") from None


def load_state(path: str | Path) -> dict[str, Any]:
    """Load what :func:`save_state` wrote (no code is executed); any other file is a :class:`ConfigError`."""
    structure, tensors = read_tensor_file(path, "ganforge_state", "ganforge checkpoint")
    try:
        state = _unflatten(structure, tensors)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:  # metadata naming absent tensors
        raise ConfigError(f"{path}: a ganforge checkpoint with corrupted metadata ({type(e).__name__}: "
                          f"{one_line(e)})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: a ganforge checkpoint with corrupted metadata (not a dict of training state)")
    return state


class ModuleOrigin:
    """A callback that only records, in every checkpoint, whether G and D were the user's own modules.

    A run trained with ``train(..., generator=MyModule())`` has a config that names the default
    network, not the user's; ``ganforge train --resume`` would rebuild the wrong one. With this
    record (the checkpoint's ``callbacks/modules``) it says so in one line instead.
    """

    state_key = "modules"

    def __init__(self, generator: bool, discriminator: bool) -> None:
        self.generator, self.discriminator = generator, discriminator

    def state_dict(self) -> dict[str, bool]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass  # what this run is given decides; check_origin compares it with the record before loading


def _custom_generator_file(run_dir: Path) -> bool:
    """Whether the run's exported generator says it is a user-defined module (runs without the record)."""
    path = run_dir / "generator.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("ganforge", "{}"))
        return isinstance(meta, dict) and bool(meta.get("custom"))
    except Exception:  # no generator file, or a damaged one: it says nothing about the modules
        return False


def check_origin(path: str | Path, state: dict[str, Any], run_dir: str | Path, generator: bool,
                 discriminator: bool) -> None:
    """Refuse to resume a run trained with user-defined modules unless they are given again (``generator``,
    ``discriminator``: whether this process was given its own), as one line saying how to resume it."""
    records = state.get("callbacks")
    saved = records.get(ModuleOrigin.state_key) if isinstance(records, dict) else None
    saved = saved if isinstance(saved, dict) else {}
    missing = []
    if (saved.get("generator") or (not saved and _custom_generator_file(Path(run_dir)))) and not generator:
        missing.append("generator")
    if saved.get("discriminator") and not discriminator:
        missing.append("discriminator")
    if missing:
        args = ", ".join(f"{m}=YourModule()" for m in missing)
        raise ConfigError(f"{path}: this run was trained with a user-defined {' and '.join(missing)} module, which "
                          f"its config cannot rebuild; resume it from Python with ganforge.training.run.train("
                          f"load_run_config('{run_dir}'), '{run_dir}', resume=True, {args})")


def model_mismatch(path: str | Path, e: BaseException) -> ConfigError:
    """The one-line error for a checkpoint whose tensors do not fit the model built from the config."""
    what = f"it has no entry {e}" if isinstance(e, KeyError) else one_line(e)
    return ConfigError(f"{path} was written for a different model: {what} (a run trained with your own "
                       "modules resumes from Python with generator= / discriminator=)")
