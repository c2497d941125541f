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
    draws the same batches as an uninterrupted one.

    In a multi-process run each process samples its own shard (:meth:`set_shard`): every
    ``count``-th index from ``index``, so the processes' batches never overlap within an epoch.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.shard = (0, 1)
        self._members: Tensor | None = None  # the shard's indices (None: all)
        self._perm: Tensor | None = None
        self._pos = 0

    def set_shard(self, index: int, count: int) -> None:
        """Sample only indices ``index, index + count, ...`` (at least one each: a data set smaller
        than the number of processes shares its samples)."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index} of {count}")
        self.shard = (index, count)
        members = torch.arange(index % self.size if self.size < count else index, self.size, count)
        self._members = None if count == 1 else members
        self._perm, self._pos = None, 0

    def indices(self, n: int, generator: torch.Generator | None) -> Tensor:
        size = self.size if self._members is None else len(self._members)
        if n > size:
            idx = torch.randint(size, (n,), generator=generator)
        else:
            if self._perm is None or self._pos + n > len(self._perm):
                self._perm = torch.randperm(size, generator=generator)
                self._pos = 0
            idx = self._perm[self._pos:self._pos + n]
            self._pos += n
        return idx if self._members is None else self._members[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self._perm, "pos": self._pos, "shard": list(self.shard)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state.get("shard", (0, 1))) != self.shard:
            self._perm, self._pos = None, 0  # another layout of processes: a fresh epoch of this shard
            return
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

    def nbytes(self) -> int:
        """Memory the samples (and labels) take."""
        return self.x.numel() * self.x.element_size() + (self.labels.numel() * 8 if self.labels is not None else 0)

    def to_device(self, device: torch.device | str) -> None:
        """Keep the samples on ``device`` (a GPU), so a minibatch is gathered there without a copy."""
        self.x = self.x.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A minibatch of named tensors: ``x`` and, for labelled data, ``y``."""
        idx = self.sampler.indices(n, generator)
        if self.x.device != idx.device:
            idx = idx.to(self.x.device, non_blocking=True)
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
