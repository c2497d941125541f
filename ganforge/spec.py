"""A description of the data that networks are built from (CTGAN's output spans, generalised).

A data source describes itself with a :class:`DataSpec`: the shape and dtype of one sample, the
output spans whose activations drive G's output heads (a table's continuous and one-hot columns),
the vocabulary of token data, the width of a condition vector drawn from the data and the number of
classes of its labels. Builders read the spec, not a bare shape, so a new kind of data is a new
spec, not a new builder signature. It is plain data: it round-trips through JSON with the exported
generator.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("linear", "tanh", "sigmoid", "softmax")


@dataclass(frozen=True)
class Span:
    """``width`` consecutive outputs of G passed through one ``activation`` (softmax: over the span)."""

    width: int
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ValueError(f"a span needs a positive width, got {self.width}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown span activation '{self.activation}' (choices: {', '.join(ACTIVATIONS)})")


@dataclass(frozen=True)
class DataSpec:
    """What one sample of a data source looks like."""

    shape: tuple[int, ...]
    dtype: str = "float32"  # "int64" for token ids, which are never cast to float
    spans: tuple[Span, ...] = ()  # G's output heads; () = one head as configured (e.g. tanh for images)
    vocab_size: int = 0  # token data: the number of distinct ids
    condition_dim: int = 0  # width of the condition vector "c" the data supplies (0 = none)
    classes: int = 0  # number of label values "y" the data supplies (0 = unlabelled)
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a custom builder needs (JSON-able)
    # The data kind (ganforge.kinds) when the source names it: a plug-in's kind; "" = found from the spec.
    kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spans", tuple(s if isinstance(s, Span) else Span(**s) for s in self.spans))
        if self.spans and sum(s.width for s in self.spans) != math.prod(self.shape):
            raise ValueError(f"output spans cover {sum(s.width for s in self.spans)} values, "
                             f"a sample has {math.prod(self.shape)}")

    @property
    def size(self) -> int:
        """Values per sample."""
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3 and self.dtype.startswith("float")

    @property
    def is_text(self) -> bool:
        """Token sequences: int64 ids of one dimension with a vocabulary."""
        return self.dtype == "int64" and len(self.shape) == 1 and self.vocab_size > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        if not self.kind:  # (files of the built-in kinds stay as they were)
            del d["kind"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        d["spans"] = tuple(Span(**s) for s in d.get("spans", ()))
        return cls(**d)
