"""In-memory tensor data: shuffled minibatches, each epoch a new permutation."""
from __future__ import annotations

import torch
from torch import Tensor


class TensorData:
    """Samples minibatches without replacement from a tensor held in memory.

    The position in the current permutation is part of the state, so a resumed run draws the
    same batches as an uninterrupted one.
    """

    def __init__(self, x: Tensor, labels: Tensor | None = None) -> None:
        if x.dim() < 2 or len(x) == 0:
            raise ValueError(f"expected a non-empty tensor of shape (n, ...), got {tuple(x.shape)}")
        self.x = x
        self.labels = labels
        self._perm: Tensor | None = None
        self._pos = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def _indices(self, n: int, generator: torch.Generator | None) -> Tensor:
        if n > len(self.x):
            return torch.randint(len(self.x), (n,), generator=generator)
        if self._perm is None or self._pos + n > len(self._perm):
            self._perm = torch.randperm(len(self.x), generator=generator)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + n]
        self._pos += n
        return idx

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.x[self._indices(n, generator)]

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A minibatch and its labels (for conditional models)."""
        if self.labels is None:
            raise ValueError("this data set has no labels")
        idx = self._indices(n, generator)
        return self.x[idx], self.labels[idx]

    def state_dict(self) -> dict:
        return {"perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self._perm, self._pos = state.get("perm"), int(state.get("pos", 0))
