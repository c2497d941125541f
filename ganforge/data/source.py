"""What the trainer asks of data: named-tensor batches and a spec (see :class:`DataSource`)."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ganforge.registry import ConfigError
from ganforge.spec import DataSpec


@runtime_checkable
class DataSource(Protocol):
    """A data source: ``spec`` describes one sample, ``batch(n, generator)`` draws ``n`` of them as
    named tensors (``x``; ``y`` labels; ``c`` a condition vector; ``tokens`` and ``lengths`` for text).

    Optional: ``fake_conditions(n, generator) -> {"y": ..., "c": ...}`` draws the conditions G's
    samples get from the data (training-by-sampling, captions) instead of the prior, and
    ``state_dict`` / ``load_state_dict`` make the position in the data resumable.
    """

    @property
    def spec(self) -> DataSpec: ...

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]: ...


class SampleSource:
    """Adapts any object with ``shape`` and ``sample(n, generator) -> Tensor`` to a data source."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def spec(self) -> DataSpec:
        return DataSpec(tuple(self.inner.shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.inner.shape)

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return {"x": self.inner.sample(n, generator)}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.inner.sample(n, generator)

    def __getattr__(self, name: str) -> Any:  # modes, stds, prob... of toy data stay reachable
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict() if hasattr(self.inner, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.inner, "load_state_dict"):
            self.inner.load_state_dict(state)


def as_source(data: Any) -> Any:
    """A data source from a source, a tensor, or an object with ``shape`` and ``sample``."""
    from ganforge.data.tensor import TensorData

    if isinstance(data, Tensor):
        return TensorData(data)
    if hasattr(data, "batch") and hasattr(data, "spec"):
        return data
    if hasattr(data, "sample") and hasattr(data, "shape"):
        return SampleSource(data)
    raise ConfigError(f"cannot train on a {type(data).__name__}: pass a tensor, a data set name, or an object "
                      "with .spec and .batch(n, generator) (or .shape and .sample(n, generator))")
