"""A table file streamed: :class:`TableStream` reads a CSV, TSV or Parquet file too large for memory in chunks,
encoded in DataLoader workers (see :mod:`ganforge.data.streaming` for when and what every streaming source offers)."""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from ganforge.data.streaming import (
    _check_context,
    _check_workers,
    _generator,
    _loader,
    _reshard,
    _seed,
    _stop,
    default_workers,
)
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec

if TYPE_CHECKING:
    import pandas as pd

    from ganforge.data.table_transform import TableTransformer

# -- tables ----------------------------------------------------------------------------------------------------------


class _TableFile:
    """How to read one table file in chunks of ``chunk_rows`` rows (plain attributes: workers get a copy)."""

    def __init__(self, path: str, parquet: bool, gz: bool, delimiter: str | None, encoding: str | None,
                 chunk_rows: int) -> None:
        self.path, self.parquet, self.gz = path, parquet, gz
        self.delimiter, self.encoding, self.chunk_rows = delimiter, encoding, chunk_rows

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The raw chunks in file order: Parquet with its schema's types, text as strings (NaN where missing)."""
        import pandas as pd

        if self.parquet:
            import pyarrow.parquet as pq

            with pq.ParquetFile(self.path) as f:
                for b in f.iter_batches(batch_size=self.chunk_rows):
                    yield b.to_pandas()
            return
        # Every text column as strings: pandas would guess a column's type chunk by chunk (an int column
        # with a blank in one chunk only), so the types are decided once, on the sample, by clean_table.
        with pd.read_csv(self.path, sep=self.delimiter, encoding=self.encoding, dtype=str, engine="c",
                         compression="gzip" if self.gz else None, chunksize=self.chunk_rows) as reader:
            yield from reader


def _kind(dtype: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    return "other"


def _conform(raw: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    """A raw chunk cleaned as ``read_table`` cleans a table, each column then given the kind the sample's got.

    clean_table decides a text column's type from the values it sees; a chunk can see other values
    than the sample (no blank, a stray word), and the transformer needs one type per column.
    """
    import pandas as pd

    from ganforge.data.table_io import _clean

    cleaned, _ = _clean(raw, None)  # its messages were shown once, for the sample
    for i, want in enumerate(kinds):
        if _kind(cleaned.dtypes.iloc[i]) == want:
            continue
        s = raw.iloc[:, i]
        if want == "number":
            v = pd.to_numeric(s, errors="coerce")
            v = v.mask(np.isinf(v.to_numpy(dtype=float, na_value=np.nan)))
        elif want == "datetime":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas warns that it parses value by value: this chunk only
                v = pd.to_datetime(s, errors="coerce")
        elif want == "bool":
            v = s.astype("string").str.strip().str.lower().map({"true": True, "false": False}).astype("boolean")
        else:
            v = s.astype(object)
        cleaned.isetitem(i, v.array)
    return cleaned


class _TableChunks(IterableDataset):
    """Encoded chunks ``(ordinal, x, codes)`` from chunk ordinal ``start`` on, without end.

    Ordinal ``q`` is chunk ``q % n_chunks`` of epoch ``q // n_chunks``; only this shard's rows (global
    row ``r`` with ``r % count == index``) are encoded. With several workers, worker ``w`` encodes the
    ordinals ``start + w + k * workers``: the DataLoader asks the workers in turn, so they come back in order.
    """

    def __init__(self, file: _TableFile, transformer: TableTransformer, kinds: list[str], row_starts: list[int],
                 shard: tuple[int, int, int], start: int) -> None:
        self.file, self.transformer, self.kinds = file, transformer, kinds
        self.row_starts, self.shard, self.start = row_starts, shard, start

    def __iter__(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        info = get_worker_info()
        w, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        n_chunks = len(self.row_starts)
        epoch = self.start // n_chunks
        while True:
            for k, raw in enumerate(self.file.chunks()):
                q = epoch * n_chunks + k
                if q >= self.start and (q - self.start) % workers == w:
                    yield q, *self._encode(epoch, k, raw)
            epoch += 1

    def _encode(self, epoch: int, k: int, raw: pd.DataFrame) -> tuple[Tensor, Tensor]:
        index, count, seed = self.shard
        first = self.row_starts[k]
        mine = raw.iloc[(index - first) % count::count] if count > 1 else raw
        if len(mine) == 0:
            d = len(self.transformer.discrete_columns())
            return torch.zeros(0, self.transformer.width), torch.zeros(0, d, dtype=torch.int64)
        # A chunk's modes are drawn with a seed of its own: the same chunk encodes the same after a resume.
        x, codes = self.transformer.encode(_conform(mine.reset_index(drop=True), self.kinds),
                                           seed=_seed(seed, epoch, k))
        return x, torch.from_numpy(codes) if codes is not None else torch.zeros(len(x), 0, dtype=torch.int64)


class TableStream:
    """A CSV, TSV or Parquet file too large for memory, streamed in chunks; the same batches as
    :class:`~ganforge.data.table.TableData` give (``x`` in G's output space, ``c`` when conditional).

    How, and what it approximates:

    - **The transformer is fitted on a sample.** One pass over the file at construction draws a
      uniform sample of ``sample_rows`` rows (bottom-k of random keys, i.e. reservoir sampling) and fits
      :class:`~ganforge.data.table_transform.TableTransformer` (with ``transformer`` options) on it; the
      column types are decided on the sample too, as ``read_table`` would decide them, and every chunk
      is conformed to them. A category absent from the sample is encoded as the transformer encodes
      unknown values (the pooled or the commonest category).
    - **Shuffling is within a buffer.** Chunks of ``chunk_rows`` rows are read in file order, encoded
      in ``workers`` background processes (default 1: each worker parses the whole file and encodes
      its share of the chunks), and grouped into blocks of ``buffer_chunks`` consecutive chunks; a
      block's rows are served in an order seeded by ``(seed, shard index, epoch, block)``, so rows mix
      within a block, not across the file. A sorted file stays locally sorted: shuffle it once if
      that matters.
    - **Training-by-sampling within the buffer.** With ``conditional`` (and discrete columns) a batch
      is drawn from the current block as :class:`TableData` draws from the whole table (column
      uniformly, category at its log-frequency in the block, then a row holding it), with the trainer's
      ``generator``; :meth:`fake_conditions` draws from the same block, so real and fake conditions
      follow one distribution. The block changes after as many rows as it holds have been drawn.
    - **Shards** are rows: process ``index`` of ``count`` takes the rows ``r`` with ``r % count == index``.

    ``context`` is the multiprocessing start method, as for :class:`~ganforge.data.image_stream.ImageFolderStream`.
    Gzipped Parquet cannot be streamed (decompress it first: Parquet is compressed already).
    """

    def __init__(self, path: str | Path, discrete_columns: Sequence[str] | None = None, conditional: bool = True,
                 seed: int = 0, delimiter: str | None = None, encoding: str | None = None,
                 workers: int | None = None, sample_rows: int = 100_000, chunk_rows: int = 20_000,
                 buffer_chunks: int = 4, context: str | None = None, **transformer: Any) -> None:
        from ganforge.data.table_io import clean_table
        from ganforge.data.table_transform import TableTransformer

        for name, value, low in (("sample_rows", sample_rows, 2), ("chunk_rows", chunk_rows, 1),
                                 ("buffer_chunks", buffer_chunks, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"table stream: {name} must be an integer >= {low}, got {value!r}")
        self.path = Path(path)
        # One worker unless told: the file is read in order, and each worker parses all of it.
        self.workers = min(1, default_workers()) if workers is None else _check_workers(workers, "table stream")
        self.context = _check_context(context, "table stream")
        self.seed, self.buffer_chunks = int(seed), buffer_chunks
        self.file = _open_table(self.path, delimiter, encoding, chunk_rows)
        sample, self.row_starts, self.rows = _sample_rows(self.file, sample_rows, self.seed)
        cleaned, _ = clean_table(sample)
        self.kinds = [_kind(t) for t in cleaned.dtypes]
        self.transform = TableTransformer(seed=self.seed, **transformer).fit(cleaned, discrete_columns)
        self.layout = self.transform.discrete_layout()
        self.conditional = bool(conditional and self.layout)
        self._shard = (0, 1, 0)
        # The position as (epoch, block, offset into the block, and the _key it was counted under).
        self._mark: tuple[int, ...] = (0, 0, 0, *self._key())
        self._iter: Any = None
        self._block: Any = None

    # -- the protocol ---------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.transform.width,)

    @property
    def spec(self) -> DataSpec:
        extra: dict[str, Any] = {}
        c_dim = 0
        if self.conditional:
            widths = [w for _, w in self.layout]
            c_offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
            c_dim = int(sum(widths))
            # As TableData's spec: where each condition's one-hot sits in G's output and in c.
            extra["condition_spans"] = [[int(o), int(w), int(co)]
                                        for (o, w), co in zip(self.layout, c_offsets, strict=True)]
        return DataSpec(self.shape, spans=self.transform.spans, condition_dim=c_dim, extra=extra)

    def __len__(self) -> int:
        return self.rows

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``n`` rows: the next of the block's shuffled order, or, when conditional, drawn by training-by-sampling."""
        if n < 1:
            raise ValueError(f"batch size must be positive, got {n}")
        if self._iter is None:
            self._start()
        if self.conditional:
            if self._offset >= self._block_rows:
                self._next_block()
            out = self._block.batch(n, generator)
            self._offset += n
        else:
            parts, have = [], 0
            while have < n:  # a batch may take the end of one block and the start of the next
                if self._offset >= self._block_rows:
                    self._next_block()
                take = min(n - have, self._block_rows - self._offset)
                parts.append(self._block[self._perm[self._offset:self._offset + take]])
                self._offset += take
                have += take
            out = {"x": parts[0] if len(parts) == 1 else torch.cat(parts)}
        self._mark = (self._epoch, self._block_index, self._offset, *self._key())
        return {k: v.pin_memory() for k, v in out.items()} if self._pin else out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.batch(n, generator)["x"]

    def fake_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Conditions for G's samples, drawn as the current block draws the real ones (nothing if unconditional)."""
        if not self.conditional:
            return {}
        if self._iter is None:
            self._start()
        if self._offset >= self._block_rows:  # a used up (or empty) block: draw from the one batch would use
            self._next_block()
        return self._block.fake_conditions(n, generator)

    def set_shard(self, index: int, count: int, seed: int = 0) -> None:
        """Serve only the rows ``r`` with ``r % count == index``; blocks are shuffled with ``seed``."""
        _reshard(self, index, count, seed)

    def state_dict(self) -> dict[str, Any]:
        epoch, block, offset = self._position()
        index, count, seed = self._shard
        return {"epoch": epoch, "block": block, "offset": offset, "shard_index": index, "shard_count": count,
                "seed": seed, "rows": self.rows, "chunks": len(self.row_starts), "buffer_chunks": self.buffer_chunks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (another shard's, file's or chunking's: a fresh epoch)."""
        self._stop_workers()
        try:
            key = tuple(int(state[k]) for k in ("shard_index", "shard_count", "seed", "rows", "chunks",
                                                 "buffer_chunks"))
            self._mark = (int(state["epoch"]), int(state["block"]), int(state["offset"]), *key)
        except (KeyError, TypeError, ValueError):  # e.g. the state of an in-memory run of the same table
            self._mark = (0, 0, 0, *self._key())

    def close(self) -> None:
        """Stop the workers (the next batch starts them again where this one left off)."""
        self._stop_workers()

    def __enter__(self) -> TableStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside ---------------------------------------------------------------------------------------

    def _key(self) -> tuple[int, ...]:
        # A position means the same only for the same shard, file and grouping of rows into blocks.
        return (*self._shard, self.rows, len(self.row_starts), self.buffer_chunks)

    def _position(self) -> tuple[int, int, int]:
        epoch, block, offset, *key = self._mark
        if tuple(key) != self._key():
            self._mark = (epoch + (block > 0 or offset > 0), 0, 0, *self._key())
        return self._mark[0], self._mark[1], self._mark[2]

    def _blocks(self) -> int:
        return -(-len(self.row_starts) // self.buffer_chunks)

    def _start(self) -> None:
        epoch, block, offset = self._position()
        if block >= self._blocks():  # a position past the last block is the next epoch's start
            epoch, block, offset = epoch + 1, 0, 0
        self._pin = torch.cuda.is_available()
        start = epoch * len(self.row_starts) + block * self.buffer_chunks
        chunks = _TableChunks(self.file, self.transform, self.kinds, self.row_starts, self._shard, start)
        # batch_size=None: the items are chunks, grouped into blocks here; batches are gathered from the
        # block in this process, so it is they that are pinned (in batch), not the chunks.
        self._iter = iter(_loader(chunks, self.workers, self.context, batch_size=None))
        self._next_q = start
        self._epoch, self._block_index = epoch, block
        self._load_block()
        self._offset = offset

    def _next_block(self) -> None:
        empty = 0
        while True:
            self._block_index += 1
            if self._block_index >= self._blocks():
                self._epoch, self._block_index = self._epoch + 1, 0
            self._load_block()
            self._offset = 0
            if self._block_rows > 0:
                return
            empty += 1
            if empty > self._blocks():  # a whole epoch of empty blocks: this shard has no rows
                self.close()
                raise ConfigError(f"table '{self.path}': {self.rows} rows are too few for {self._shard[1]} processes")

    def _load_block(self) -> None:
        from ganforge.data.table import TableData

        n_chunks = len(self.row_starts)
        first = self._block_index * self.buffer_chunks
        xs, codes = [], []
        for _ in range(min(self.buffer_chunks, n_chunks - first)):
            q, x, c = next(self._iter)
            assert q == self._next_q, f"chunk {q} arrived where {self._next_q} was due"
            self._next_q += 1
            xs.append(x)
            codes.append(c)
        x, c = torch.cat(xs), torch.cat(codes)
        self._block_rows = len(x)
        if self.conditional:
            # TableData's training-by-sampling, on the block's rows: its counts are the block's.
            self._block = TableData(x, c.numpy(), self.layout, self.transform.spans, conditional=len(x) > 0)
        else:
            self._block = x
            index, _, seed = self._shard
            self._perm = torch.randperm(len(x), generator=_generator(seed, index, self._epoch, self._block_index))

    def _stop_workers(self) -> None:
        if self._iter is not None:
            self._position()
            _stop(self._iter)
            self._iter, self._block = None, None


def _open_table(path: Path, delimiter: str | None, encoding: str | None, chunk_rows: int) -> _TableFile:
    """Recognise the file as ``read_table`` does (content first, suffix second) and settle how to read it."""
    from ganforge.data import table_io as tio

    label = str(path)
    if not path.exists():
        raise tio._error(label, "does not exist")
    if path.is_dir():
        raise tio._error(label, "is a folder, not a table file")
    name = path.name.lower()
    head = tio._read_head(path, label, gz=False)
    gz = head.startswith(tio._GZIP_MAGIC)
    if name.endswith(".gz") and not gz:
        raise tio._error(label, "ends in .gz but is not gzip-compressed")
    if gz:
        head = tio._read_head(path, label, gz=True)
    if head.startswith(tio._PARQUET_MAGIC):
        if gz:
            raise tio._error(label, "is gzip-compressed Parquet, which cannot be streamed: decompress it first")
        return _TableFile(str(path), True, False, None, None, chunk_rows)
    if tio._strip_gz(name).endswith(".parquet"):
        raise tio._error(label, "is not a readable Parquet file (it does not start with the Parquet magic "
                                "bytes 'PAR1')")
    if head.startswith(tio._ZIP_MAGIC):
        raise tio._error(label, "is a zip archive (an Excel .xlsx file?), not a text table; save it as CSV or Parquet")
    encoding = tio._choose_encoding(path, label, gz, encoding)
    text = tio._text_sample(path, label, gz, encoding)
    if delimiter is None:
        fallback = "\t" if tio._strip_gz(name).endswith((".tsv", ".tab")) else ","
        delimiter = tio._sniff_delimiter(text, fallback)
    else:
        delimiter = tio._check_delimiter(delimiter)
    tio._check_header(text, delimiter, label)
    return _TableFile(str(path), False, gz, delimiter, encoding, chunk_rows)


def _sample_rows(file: _TableFile, k: int, seed: int) -> tuple[pd.DataFrame, list[int], int]:
    """One pass: a uniform sample of ``k`` rows (in file order), each chunk's first row number, the row count.

    Every row gets a random key and the ``k`` smallest keys are kept (reservoir sampling, one chunk at
    a time), so memory holds at most the sample and one chunk.
    """
    import pandas as pd

    from ganforge.data import table_io as tio

    label = str(file.path)
    rng = np.random.default_rng(_seed(seed, 1))
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    starts: list[int] = []
    total = 0
    try:
        with tio._io_errors(label, file.gz):
            for chunk in file.chunks():
                if not isinstance(chunk.index, pd.RangeIndex):
                    # As read_table: pandas makes the leading fields an index when a row has more fields
                    # than the header.
                    raise tio._error(label, f"a row has {chunk.shape[1] + chunk.index.nlevels} fields but the "
                                            f"header has {chunk.shape[1]}")
                starts.append(total)
                m = len(chunk)
                chunk = chunk.set_axis(pd.RangeIndex(m))
                kept = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
                keys = np.concatenate([keys, rng.random(m)])
                total += m
                if len(kept) > k:
                    keep = np.sort(np.argpartition(keys, k - 1)[:k])  # sorted: the sample stays in file order
                    kept, keys = kept.iloc[keep].reset_index(drop=True), keys[keep]
    except pd.errors.EmptyDataError as exc:
        raise tio._error(label, "is empty") from exc
    except pd.errors.ParserError as exc:
        raise tio._error(label, tio._parser_problem(exc)) from exc
    except ConfigError:
        raise
    except Exception as exc:  # pyarrow's several error types, a decoding error in a file that changed
        raise tio._error(label, f"cannot be read as a table ({tio._first_line(exc)})") from exc
    if kept is None or kept.shape[1] == 0:
        raise tio._error(label, "is empty")
    if total == 0:
        raise tio._error(label, "has a header but no rows" if not file.parquet else "has columns but no rows")
    return kept, starts, total
