"""A transformed table as a data source, with CTGAN's training-by-sampling.

Training-by-sampling (Xu et al. 2019, sec. 4.3): each row of a batch first picks a discrete column
uniformly, then one of its categories at the logarithm of its frequency, then a real row holding that
category; the condition vector is the one-hot of that (column, category). G is given independent draws
of the same conditions (:meth:`TableData.fake_conditions`), and its conditional cross-entropy term makes
it honour them, so rare categories are learned as well as common ones. Everything is vectorised over
the batch and drawn with the trainer's seeded generator.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.data.table_transform import TableTransformer
from ganforge.spec import DataSpec


class TableData:
    """Rows of a table in G's output space (``x``) and, when ``conditional``, their condition vectors (``c``).

    ``codes`` (n, d) holds each row's category index in each of the d discrete columns; ``layout``
    the (offset, width) of each discrete column's one-hot in a row. Without discrete columns (or with
    ``conditional=False``, the VAE's case) batches are uniform draws of rows.
    """

    # Rows kept out of training (a DataFrame; ganforge.data's `table` sets them) and where they come from:
    # what a run's synthetic rows are scored against at its end.
    heldout: Any = None
    heldout_source: str | None = None
    discrete_columns: Any = None

    def __init__(self, x: Tensor, codes: np.ndarray | None = None, layout: list[tuple[int, int]] | None = None,
                 spans: tuple[Any, ...] = (), conditional: bool = True, transform: Any = None) -> None:
        self.x = x.float().contiguous()
        self.transform = transform  # exported with the generator: samples come back as a table
        self.layout = list(layout or [])
        self.conditional = conditional and bool(self.layout) and codes is not None
        self._spans = tuple(spans)
        if not self.conditional:
            return
        assert codes is not None
        n, d = codes.shape
        widths = [w for _, w in self.layout]
        self.c_offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self.c_dim = int(sum(widths))
        # Every (column, category) pair gets a global index g; rows holding it are a contiguous run
        # of `order`, so drawing a row for g is one random offset into its run.
        order, starts, counts, probs = [], [], [], []
        for j in range(d):
            col = codes[:, j]
            counts_j = np.bincount(col, minlength=widths[j])
            base = j * n
            starts.append(base + np.concatenate([[0], np.cumsum(counts_j)[:-1]]))
            counts.append(counts_j)
            order.append(np.argsort(col, kind="stable"))
            # Log-frequency: log(1 + count), normalised within the column; columns equally likely.
            logf = np.log1p(counts_j.astype(np.float64))
            probs.append(logf / logf.sum() / d)
        self.order = torch.from_numpy(np.concatenate(order))
        self.starts = torch.from_numpy(np.concatenate(starts))
        self.counts = torch.from_numpy(np.concatenate(counts))
        self.probs = torch.from_numpy(np.concatenate(probs))

    @property
    def spec(self) -> DataSpec:
        extra: dict[str, Any] = {}
        if self.conditional:
            # Where each condition's one-hot sits in G's output and in c: the generator's
            # conditional cross-entropy term reads it.
            extra["condition_spans"] = [[int(o), int(w), int(co)]
                                        for (o, w), co in zip(self.layout, self.c_offsets, strict=True)]
        return DataSpec((self.x.shape[1],), spans=self._spans, condition_dim=self.c_dim if self.conditional else 0,
                        extra=extra)

    def __len__(self) -> int:
        return len(self.x)

    def _draw_conditions(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)

    def _one_hot(self, g: Tensor) -> Tensor:
        # The global (column, category) index is the position in the condition vector: both
        # concatenate the discrete columns' categories in order.
        return F.one_hot(g, self.c_dim).float()

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        if not self.conditional:
            return {"x": self.x[torch.randint(len(self.x), (n,), generator=generator)]}
        g = self._draw_conditions(n, generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        pick = self.starts[g] + (u * self.counts[g]).long().clamp_max(self.counts[g] - 1)
        return {"x": self.x[self.order[pick]], "c": self._one_hot(g)}

    def fake_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        if not self.conditional:
            return {}
        return {"c": self._one_hot(self._draw_conditions(n, generator))}


def table_source(df: Any, discrete_columns: Sequence[str] | None = None, conditional: bool = True,
                 transformer: TableTransformer | None = None, seed: int = 0, **options: Any) -> TableData:
    """A cleaned DataFrame (:func:`~ganforge.data.table_io.clean_table`; :func:`read_table` returns one)
    as a data source: the transformer (fitted here with ``options`` unless given), the rows in G's
    output space, their category codes for training-by-sampling."""
    if transformer is None:
        transformer = TableTransformer(seed=seed, **options).fit(df, discrete_columns)
    x, codes = transformer.encode(df)
    return TableData(x, codes, transformer.discrete_layout(), transformer.spans, conditional=conditional,
                     transform=transformer)
