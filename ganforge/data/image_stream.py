"""An image folder streamed: :class:`ImageFolderStream` decodes a folder's images in DataLoader workers, a few
batches at a time (see :mod:`ganforge.data.streaming` for when and what every streaming source offers)."""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.data.imagefiles import UNREADABLE, check_image_folder, decode_image, list_image_files, no_images_error
from ganforge.data.streaming import _check_context, _check_workers, _generator, _loader, _reshard, _stop
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec

# -- image folders ---------------------------------------------------------------------------------------------------


class _ImageFiles(Dataset):
    """Item ``i``: ``(i, image)``, the float image (C, size, size) in [-1, 1], or ``(i, None)`` if unreadable."""

    def __init__(self, files: Sequence[Path], size: int, channels: int) -> None:
        # One numpy array of bytes, not a list of Paths: a forked worker reading a Python list touches
        # every object's reference count and so copies the list page by page into each worker.
        self.paths = np.array([os.fsencode(f) for f in files])
        self.size, self.channels = size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None]:
        try:
            pixels = decode_image(os.fsdecode(self.paths[i]), self.size, self.channels)
        except UNREADABLE:  # the marker: counted and skipped by the source, as the in-memory reader does
            return i, None
        t = torch.from_numpy(np.array(pixels))  # a copy: Pillow's buffer is read-only
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        # The arithmetic of to_tensor_images, so streamed pixels equal the in-memory ones bit for bit.
        return i, t.float().div_(127.5).sub_(1.0).contiguous()


def _collate_images(items: list[tuple[int, Tensor | None]]) -> tuple[Tensor, Tensor, Tensor | None]:
    """File indices, which were readable, and the readable images stacked (None if there were none)."""
    good = [t for _, t in items if t is not None]
    return (torch.tensor([i for i, _ in items], dtype=torch.int64),
            torch.tensor([t is not None for _, t in items], dtype=torch.bool),
            torch.stack(good) if good else None)


class _ShardOrder:
    """File indices of stream positions: position ``p`` is item ``p % L`` of epoch ``p // L``'s order, the
    ``index``-th of every ``count`` entries of a permutation seeded by ``(seed, epoch)`` (``L`` its length)."""

    def __init__(self, n_files: int, index: int, count: int, seed: int) -> None:
        self.n_files, self.index, self.count, self.seed = n_files, index, count, seed
        self.length = len(range(index, n_files, count))
        self._cached: tuple[int, Tensor] | None = None

    def epoch(self, e: int) -> Tensor:
        if self._cached is None or self._cached[0] != e:
            perm = torch.randperm(self.n_files, generator=_generator(self.seed, e))
            self._cached = (e, perm[self.index::self.count])
        return self._cached[1]

    def files(self, start: int, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            e, k = divmod(start + len(out), self.length)
            out += self.epoch(e)[k:k + n - len(out)].tolist()
        return out


class _Batches:
    """The batch sampler: lists of ``chunk`` file indices from stream position ``start`` on, without end."""

    def __init__(self, order: _ShardOrder, start: int, chunk: int) -> None:
        self.order, self.start, self.chunk = order, start, chunk

    def __iter__(self) -> Iterator[list[int]]:
        pos = self.start
        while True:
            yield self.order.files(pos, self.chunk)
            pos += self.chunk


class ImageFolderStream:
    """The images of a folder (recursive, sorted; the extensions of ``load_image_folder``), decoded and
    centre-cropped to ``channels`` x ``size`` x ``size`` in DataLoader workers, never all held in memory.

    Batches are ``{"x": float32 (n, channels, size, size) in [-1, 1]}``, each image exactly what
    :func:`~ganforge.data.images.load_image_folder` gives for it. Each epoch visits the files in a new
    order seeded by ``(seed, epoch)``; a batch may span the end of one epoch and the start of the next.
    ``generator`` is not used: the order depends on the shard's seed only, so every process of a
    multi-process run agrees on it. Unreadable files are skipped, the batch is refilled from the next
    files, and one warning counts them after the first epoch (or at :meth:`close`); :attr:`skipped` has
    the count. A folder without any readable image is a :class:`ConfigError` at the first batch.

    ``workers`` processes decode (default :func:`~ganforge.data.streaming.default_workers`; 0 decodes in this
    process); ``context`` is the multiprocessing start method (default: torch's, ``fork`` on Linux).
    """

    def __init__(self, path: str | Path, size: int = 28, channels: int = 1, workers: int | None = None,
                 context: str | None = None, *, files: Sequence[Path] | None = None) -> None:
        self.folder = check_image_folder(path, size, channels)
        # ``files``: the caller's listing of this folder (image_folder_data lists it to choose), else ours.
        files = list_image_files(path, size, channels)[1] if files is None else list(files)
        if not files:
            raise no_images_error(self.folder)
        self.size, self.channels = size, channels
        self.files = files
        self.workers = _check_workers(workers, "image folder")
        self.context = _check_context(context, "image folder")
        self._dataset = _ImageFiles(files, size, channels)
        self._shard = (0, 1, 0)
        # The position as (epoch, offset into the epoch, the shard and file count it was counted under).
        self._mark: tuple[int, ...] = (0, 0, *self._key())
        self._iter: Any = None
        self._left: tuple[Tensor, Tensor] | None = None  # readable images fetched, not yet served, and positions
        self._fetched = 0  # the stream position of the loader's next batch
        self._warn_at = 0  # the end of the first epoch this source serves: then the warning is due
        self._bad: set[int] = set()
        self._warned = False

    # -- the protocol ---------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.shape)

    def __len__(self) -> int:
        """Files listed, less those found unreadable so far."""
        return len(self.files) - len(self._bad)

    @property
    def skipped(self) -> int:
        """Unreadable files met so far."""
        return len(self._bad)

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The next ``n`` readable images of this shard's stream (``generator`` unused, see the class doc)."""
        if n < 1:
            raise ValueError(f"batch size must be positive, got {n}")
        if self._iter is None:
            self._start(n)
        parts: list[Tensor] = []
        have = 0
        while have < n:
            if self._left is None:
                self._left = self._fetch()
            x, pos = self._left
            if len(x) == 0:
                self._left = None
                if len(self._bad) == len(self.files):
                    self._stop_workers()
                    raise ConfigError(f"{no_images_error(self.folder)}: none of its {len(self.files)} "
                                      f"image files can be read")
                continue
            take = min(n - have, len(x))
            parts.append(x[:take])
            have += take
            self._left = (x[take:], pos[take:]) if take < len(x) else None
        self._maybe_warn()
        pos_next = int(self._left[1][0]) if self._left is not None else self._fetched
        self._mark = (*divmod(pos_next, self._order.length), *self._key())
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if self._pin and not out.is_pinned():  # a refilled batch is a fresh tensor: pin it like the loader's
            out = out.pin_memory()
        return {"x": out}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.batch(n, generator)["x"]

    def set_shard(self, index: int, count: int, seed: int = 0) -> None:
        """Serve only the ``index``-th of every ``count`` files of each epoch's order (seeded by ``(seed, epoch)``)."""
        _reshard(self, index, count, seed)

    def state_dict(self) -> dict[str, Any]:
        epoch, offset = self._position()
        index, count, seed = self._shard
        return {"epoch": epoch, "offset": offset, "shard_index": index, "shard_count": count, "seed": seed,
                "files": len(self.files)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (another shard's, another folder's or another source's: a fresh epoch)."""
        self._stop_workers()
        try:
            key = (int(state["shard_index"]), int(state["shard_count"]), int(state["seed"]), int(state["files"]))
            self._mark = (int(state["epoch"]), int(state["offset"]), *key)
        except (KeyError, TypeError, ValueError):  # e.g. the state of an in-memory run of the same data
            self._mark = (0, 0, *self._key())

    def close(self) -> None:
        """Stop the workers, and warn about unreadable files if that has not been done yet."""
        self._stop_workers()
        self._maybe_warn(force=True)

    def __enter__(self) -> ImageFolderStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside ---------------------------------------------------------------------------------------

    def _key(self) -> tuple[int, ...]:
        return (*self._shard, len(self.files))

    def _position(self) -> tuple[int, int]:
        """(epoch, offset) under the current shard; one counted under another starts a fresh epoch."""
        epoch, offset, *key = self._mark
        if tuple(key) != self._key():
            self._mark = (epoch + (offset > 0), 0, *self._key())
        return self._mark[0], self._mark[1]

    def _start(self, n: int) -> None:
        index, count, seed = self._shard
        self._order = _ShardOrder(len(self.files), index, count, seed)
        if self._order.length == 0:
            raise ConfigError(f"image folder {self.folder}: {len(self.files)} files are too few for {count} "
                              f"processes")
        epoch, offset = self._position()
        start = epoch * self._order.length + offset
        # The loader's batches have the first request's size: a later, different n is served by
        # slicing and joining them, without restarting the workers.
        self._pin = torch.cuda.is_available()
        loader = _loader(self._dataset, self.workers, self.context, batch_sampler=_Batches(self._order, start, n),
                         collate_fn=_collate_images, pin_memory=self._pin)
        self._iter = iter(loader)
        self._fetched, self._left = start, None
        self._warn_at = (epoch + 1) * self._order.length

    def _fetch(self) -> tuple[Tensor, Tensor]:
        """The loader's next batch as (readable images, their stream positions); counts the unreadable."""
        idx, ok, x = next(self._iter)
        positions = torch.arange(self._fetched, self._fetched + len(ok))
        self._fetched += len(ok)
        self._bad.update(idx[~ok].tolist())
        if x is None:
            x = torch.empty(0, *self.shape)
        return x, positions[ok]

    def _maybe_warn(self, force: bool = False) -> None:
        if self._warned or not self._bad or not (force or self._fetched >= self._warn_at):
            return
        self._warned = True
        example = self.files[min(self._bad)].name  # the first in sorted order, as the in-memory reader names
        warnings.warn(f"skipped {len(self._bad)} unreadable files in {self.folder}, e.g. {example}", stacklevel=3)

    def _stop_workers(self) -> None:
        if self._iter is not None:
            # The next batch starts a new loader at the position served so far (the images fetched
            # but not served are decoded again then).
            self._position()
            _stop(self._iter)
            self._iter, self._left = None, None
