"""Data larger than memory: image folders and table files streamed through DataLoader workers.

The in-memory sources (:class:`~ganforge.data.tensor.TensorData`, :class:`~ganforge.data.table.TableData`)
decode everything up front, which is fastest while the data fit in RAM and impossible once they do
not. The sources here keep only a few batches (images) or a few chunks (tables) in memory: files
are read and decoded in ``torch.utils.data.DataLoader`` worker processes while the model trains, and
batches come out in pinned memory when CUDA is there, so the trainer's ``non_blocking`` copy overlaps
the next step. :func:`should_stream` is how ``image-folder`` and ``table`` choose: they stream only when
the decoded data would take more than a quarter of the machine's RAM (or an explicit ``memory_limit``).

This module holds that choice and what the streaming sources share (worker processes, seeds, shards);
the sources are :class:`~ganforge.data.image_stream.ImageFolderStream` and
:class:`~ganforge.data.table_stream.TableStream`.

What every streaming source offers besides the :class:`~ganforge.data.source.DataSource` protocol:

- ``set_shard(index, count, seed)``: in a run of ``count`` processes, process ``index`` sees only its
  disjoint part of the data, and every process derives the epoch's order from ``(seed, epoch)``, so
  the parts together are one pass over the data;
- ``state_dict()`` / ``load_state_dict(state)``: the position (epoch and how far into it), as plain
  ints, so a resumed run draws the batches the uninterrupted one would have drawn. A position saved
  under another shard, or for a folder or file that changed size, starts a fresh epoch instead;
- ``close()``: stops the workers. They start at the first batch, never at construction, so building
  a data set to check a configuration costs only a file listing (images) or one pass that fits the
  transformer on a sample (tables).

Nothing here unpickles a user's file: images are decoded by Pillow, tables parsed by pandas or pyarrow.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ganforge.registry import ConfigError

STREAM_CHOICES = ("auto", "true", "false")
MP_CONTEXTS = ("fork", "spawn", "forkserver")
# Memory a table takes per byte of its file, roughly: pandas' text columns, the cleaning copies and the
# encoded float32 matrix (a continuous column becomes 1 + its modes floats). Compressed files inflate more.
TABLE_EXPANSION = {"text": 10, "compressed": 50}
_FALLBACK_RAM = 8 << 30  # where the OS does not say how much memory it has


# -- choosing between memory and streaming ---------------------------------------------------------------------------


def parse_stream(value: Any, what: str) -> str:
    """``stream`` as one of :data:`STREAM_CHOICES` (YAML's ``true`` / ``false`` arrive as booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in STREAM_CHOICES:
        return value.strip().lower()
    raise ConfigError(f"{what}: stream must be one of {', '.join(STREAM_CHOICES)}, got {value!r}")


def physical_memory() -> int:
    """Bytes of RAM of this machine (:data:`_FALLBACK_RAM` where the OS does not tell)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return _FALLBACK_RAM


def memory_threshold(memory_limit: int | None = None) -> int:
    """The decoded size above which ``stream: auto`` streams: ``memory_limit`` bytes, else a quarter of RAM.

    A quarter, because the in-memory path briefly holds the data twice (decoded, then as one tensor)
    and the model, the optimizer and the other processes of a multi-GPU run need the rest.
    """
    if memory_limit is None:
        return physical_memory() // 4
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit < 0:
        raise ConfigError(f"memory_limit must be a number of bytes (an integer >= 0), got {memory_limit!r}")
    return memory_limit


def should_stream(stream: Any, needed_bytes: int, memory_limit: int | None, what: str) -> bool:
    """Whether to stream: as ``stream`` says (``true`` / ``false``), or for ``auto`` when the decoded data
    (``needed_bytes``) exceed :func:`memory_threshold`."""
    choice = parse_stream(stream, what)
    if choice != "auto":
        return choice == "true"
    return needed_bytes > memory_threshold(memory_limit)


def table_memory_estimate(path: str | Path) -> int:
    """Rough bytes a table file takes in memory: its size times :data:`TABLE_EXPANSION` (0 if it is missing)."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:  # missing or unreadable: the reader that follows says so in one line
        return 0
    compressed = head.startswith((b"\x1f\x8b", b"PAR1"))
    return size * TABLE_EXPANSION["compressed" if compressed else "text"]


def default_workers() -> int:
    """Worker processes when not told: up to 4, leaving one core to the training process."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _check_workers(workers: int | None, what: str) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"{what}: workers must be an integer >= 0 (0 = read in the training process), "
                          f"got {workers!r}")
    return workers


def _check_context(context: str | None, what: str) -> str | None:
    if context is not None and context not in MP_CONTEXTS:
        raise ConfigError(f"{what}: context must be one of {', '.join(MP_CONTEXTS)}, got {context!r}")
    return context


def _seed(*parts: int) -> int:
    """A 63-bit seed from several ints: (seed, epoch) pairs never collide the way seed + epoch would."""
    return int(np.random.SeedSequence([int(p) % (1 << 63) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _generator(*parts: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(_seed(*parts))
    return g


def _worker_init(_: int) -> None:
    # A worker decodes one item at a time; torch's default of one thread per core in every worker would
    # only oversubscribe the cores the training process needs.
    torch.set_num_threads(1)


def _loader(dataset: Any, workers: int, context: str | None, **options: Any) -> DataLoader:
    """A DataLoader with persistent workers (``workers`` = 0: in the calling process)."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "worker_init_fn": _worker_init, "multiprocessing_context": context,
                 "prefetch_factor": 2}
    return DataLoader(dataset, num_workers=workers, **options, **extra)


def _stop(iterator: Any) -> None:
    # Persistent workers only stop when their iterator is shut down (or garbage collected, at an
    # unpredictable time): do it now.
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _reshard(source: Any, index: int, count: int, seed: int) -> None:
    """Point a stream at another shard; its workers restart on the next batch."""
    shard = _check_shard(index, count, seed)
    if shard != source._shard:
        source._stop_workers()
        source._shard = shard


def _check_shard(index: int, count: int, seed: int) -> tuple[int, int, int]:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"shard count must be a positive integer, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index!r}")
    return index, count, int(seed)
