"""In-memory tensor data: shuffled minibatches, each epoch a new permutation."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ganforge.data.spec import DataSpec, Span
from ganforge.data.transform import Standardize


class EpochSampler:
    """Indices of minibatches drawn without replacement: each epoch a new seeded permutation (a
    batch larger than the data draws with replacement). Its position is state, so a resumed run
    draws the same batches as an uninterrupted one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._perm: Tensor | None = None
        self._pos = 0

    def indices(self, n: int, generator: torch.Generator | None) -> Tensor:
        if n > self.size:
            return torch.randint(self.size, (n,), generator=generator)
        if self._perm is None or self._pos + n > len(self._perm):
            self._perm = torch.randperm(self.size, generator=generator)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + n]
        self._pos += n
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._perm, self._pos = state.get("perm"), int(state.get("pos", 0))


class TensorData:
    """Samples minibatches without replacement from a tensor held in memory.

    A batch is ``{"x": samples}`` plus ``"y"`` (int64 labels) when the data has labels. Integer
    tensors (token ids) stay int64; float tensors are float32. With ``standardize`` the data are
    standardized per feature and the fitted :class:`~ganforge.data.transform.Standardize` travels
    with the exported generator, so its samples come back in the data's own units.

    The position in the current permutation is part of the state, so a resumed run draws the
    same batches as an uninterrupted one.
    """

    def __init__(self, x: Tensor, labels: Tensor | None = None, standardize: bool = False,
                 spans: tuple[Span, ...] = (), vocab_size: int = 0) -> None:
        if x.dim() < 2 or len(x) == 0:
            raise ValueError(f"expected a non-empty tensor of shape (n, ...), got {tuple(x.shape)}")
        if labels is not None and len(labels) != len(x):
            raise ValueError(f"{len(labels)} labels for {len(x)} samples")
        integer = not (x.is_floating_point() or x.is_complex())
        if integer and standardize:
            raise ValueError("standardize applies to float data, not integer tokens")
        self.transform = Standardize.fit(x) if standardize else None
        self.x = self.transform.transform(x) if self.transform is not None else (x.long() if integer else x)
        self.labels = labels.long() if labels is not None else None
        self.spans, self.vocab_size = tuple(spans), vocab_size
        self.sampler = EpochSampler(len(self.x))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def spec(self) -> DataSpec:
        classes = int(self.labels.max()) + 1 if self.labels is not None else 0
        return DataSpec(self.shape, str(self.x.dtype).removeprefix("torch."), self.spans, self.vocab_size,
                        classes=classes)

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A minibatch of named tensors: ``x`` and, for labelled data, ``y``."""
        idx = self.sampler.indices(n, generator)
        out = {"x": self.x[idx]}
        if self.labels is not None:
            out["y"] = self.labels[idx]
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.batch(n, generator)["x"]

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A minibatch and its labels (for conditional models)."""
        if self.labels is None:
            raise ValueError("this data set has no labels")
        b = self.batch(n, generator)
        return b["x"], b["y"]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
