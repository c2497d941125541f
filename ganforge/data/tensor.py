"""In-memory tensor data: shuffled minibatches, each epoch a new permutation."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ganforge.data.transform import Standardize
from ganforge.spec import DataSpec, Span


class EpochSampler:
    """Indices of minibatches drawn without replacement: each epoch a new seeded permutation (a
    batch larger than the data draws with replacement). Its position is state, so a resumed run
    draws the same batches as an uninterrupted one.

    In a run of several processes, or of several micro-batches per step, the data is cut into one
    shard per micro-batch of the global batch (:meth:`set_shard`): shard ``s`` of ``C`` holds every
    ``C``-th index from ``s``. A process samples its micro-batch ``k`` (its *lane*, chosen with
    :attr:`lane`) from shard ``index * lanes + k``, so the shards never overlap within an epoch and
    N processes draw exactly what one process drawing N micro-batches draws.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.shard = (0, 1)  # (this process, processes)
        self.lanes = 1  # micro-batches per process
        self.lane = 0  # the micro-batch being drawn
        self._members: list[Tensor | None] = [None]  # each lane's shard's indices (None: all)
        self._perm: list[Tensor | None] = [None]
        self._pos = [0]

    @property
    def shards(self) -> list[int]:
        """The global shard index of each lane."""
        index, _ = self.shard
        return [index * self.lanes + k for k in range(self.lanes)]

    def set_shard(self, index: int, count: int, lanes: int = 1) -> None:
        """Process ``index`` of ``count``, drawing ``lanes`` micro-batches per step: lane ``k`` samples
        only the indices ``s, s + C, ...`` with ``s = index * lanes + k`` and ``C = count * lanes`` (at
        least one each: a data set smaller than the number of shards shares its samples)."""
        if not 0 <= index < count or lanes < 1:
            raise ValueError(f"shard {index} of {count} with {lanes} lanes")
        self.shard, self.lanes, self.lane = (index, count), lanes, 0
        total = count * lanes
        self._members = [None if total == 1 else
                         torch.arange(s % self.size if self.size < total else s, self.size, total)
                         for s in self.shards]
        self._perm, self._pos = [None] * lanes, [0] * lanes

    def indices(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = self.lane
        members = self._members[k]
        size = self.size if members is None else len(members)
        if n > size:
            idx = torch.randint(size, (n,), generator=generator)
        else:
            perm = self._perm[k]
            if perm is None or self._pos[k] + n > len(perm):
                perm = self._perm[k] = torch.randperm(size, generator=generator)
                self._pos[k] = 0
            idx = perm[self._pos[k]:self._pos[k] + n]
            self._pos[k] += n
        return idx if members is None else members[idx]

    def lane_states(self) -> list[dict[str, Any]]:
        """Each lane's position (its shard's permutation and the next index in it)."""
        return [{"perm": perm, "pos": pos} for perm, pos in zip(self._perm, self._pos, strict=True)]

    def load_lane(self, k: int, state: dict[str, Any]) -> None:
        """Continue lane ``k`` from a position of :meth:`lane_states` (of the same shard)."""
        self._perm[k], self._pos[k] = state.get("perm"), int(state.get("pos", 0))

    def state_dict(self) -> dict[str, Any]:
        # Keyed by global shard, so a run resumed with another layout of the same number of shards
        # continues each shard this process holds.
        return {"shards": self.shards, "total": self.shard[1] * self.lanes,
                "perms": list(self._perm), "pos": list(self._pos)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "perms" not in state:  # a checkpoint of one shard per process (before lanes)
            index, count = state.get("shard", (0, 1))
            state = {"shards": [index], "total": count, "perms": [state.get("perm")], "pos": [state.get("pos", 0)]}
        saved = dict(zip(state["shards"], zip(state["perms"], state["pos"], strict=True), strict=True)) \
            if int(state["total"]) == self.shard[1] * self.lanes else {}
        for k, s in enumerate(self.shards):
            # A shard the checkpoint holds continues; another starts a fresh epoch of its own.
            perm, pos = saved.get(s, (None, 0))
            self._perm[k], self._pos[k] = perm, int(pos)


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
