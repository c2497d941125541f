"""Checkpoints that are safe to write and safe to load.

One checkpoint is one safetensors file: every tensor of the nested state (weights, optimizer
moments, RNG states) is stored as a tensor, and the rest of the structure (numbers, strings, lists,
dict keys) as JSON in the file's metadata. Loading never unpickles anything, and writing goes to a
temporary file that is renamed over the target, so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ganforge.io import atomic_write, atomic_write_text

__all__ = ["atomic_write", "atomic_write_text", "load_state", "save_state"]


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


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a nested dict of tensors and plain values as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, tensors)
    meta = {"ganforge_state": json.dumps(structure)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_state(path: str | Path) -> dict[str, Any]:
    """Load what :func:`save_state` wrote (no code is executed)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "ganforge_state" not in meta:
        raise ValueError(f"{path} is not a ganforge checkpoint")
    return _unflatten(json.loads(meta["ganforge_state"]), load_file(str(path)))
