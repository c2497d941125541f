"""Fitted output transforms: what maps a generator's raw output back to the user's data.

A transform is fitted on the training data, applied before training (``transform``) and inverted at
sampling time (``inverse_transform``). It is saved with the exported generator as JSON (``config``)
plus tensors (``tensors``), never as a pickle, and rebuilt by name from :data:`TRANSFORMS`. The
tabular data transformer of a later issue is one more registered kind.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from ganforge.registry import Registry


class OutputTransform(Protocol):
    """The protocol every transform speaks (no base class needed)."""

    kind: str

    def transform(self, data: Any) -> Tensor: ...

    def inverse_transform(self, x: Tensor) -> Any: ...

    def config(self) -> dict[str, Any]: ...

    def tensors(self) -> dict[str, Tensor]: ...


TransformLoader = Callable[[dict[str, Any], dict[str, Tensor]], OutputTransform]
TRANSFORMS: Registry[TransformLoader] = Registry("output transform")


def register_transform(kind: str, loader: TransformLoader, help: str = "") -> None:
    """Register ``loader(config, tensors) -> transform`` for transforms whose ``kind`` is ``kind``."""
    TRANSFORMS.register(kind, loader, help=help)


def load_transform(kind: str, config: dict[str, Any], tensors: dict[str, Tensor]) -> OutputTransform:
    """Rebuild a saved transform."""
    return TRANSFORMS.get(kind)(config, tensors)


class Standardize:
    """Per-feature standardization: G learns (x - mean) / std; samples come back as mean + std * out.

    Features with (near) zero spread keep scale 1, so a constant feature is reproduced exactly.
    """

    kind = "standardize"

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean, self.std = mean.float(), std.float()

    @classmethod
    def fit(cls, x: Tensor) -> Standardize:
        x = x.float()
        std = x.std(0, unbiased=False)
        return cls(x.mean(0), torch.where(std > 1e-12, std, torch.ones_like(std)))

    def transform(self, data: Any) -> Tensor:
        return (torch.as_tensor(data).float() - self.mean) / self.std

    def inverse_transform(self, x: Tensor) -> Tensor:
        return x.float() * self.std.to(x.device) + self.mean.to(x.device)

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.mean.shape)}

    def tensors(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "std": self.std}


register_transform("standardize", lambda config, t: Standardize(t["mean"], t["std"]),
                   "per-feature (x - mean) / std, inverted at sampling time")
