"""Tables: a CTGAN-class GAN and a tabular VAE on one data transformer, with SDMetrics-style scores.

Needs pandas and pyarrow (``pip install ganforge[tabular]``); they are imported on first use, so
``import ganforge`` stays light.

- :class:`TabularGAN`, :class:`TabularVAE`: ``fit(df)``, ``sample(n, conditions=...)``, ``save``;
  ``ganforge.load(path).sample(n)`` returns a DataFrame.
- :class:`TableTransformer`: columns to output spans and back (mode-specific normalization, one-hots,
  missing values, datetimes, identifiers, rare categories).
- :func:`evaluate_table`: Column Shapes, Column Pair Trends, detection AUC, machine-learning efficacy.
- :func:`read_table` / :func:`write_table`: CSV, TSV, Parquet, gzip; bad files are one-line errors.
"""
from __future__ import annotations

import importlib
from typing import Any

# The table's reader, transformer and source live with the other data (ganforge.data), its scores
# with the other metrics: this package is the tables' front end (the model API and the CLI).
_WHERE = {"TableData": "ganforge.data.table", "read_table": "ganforge.data.table_io",
          "write_table": "ganforge.data.table_io", "clean_table": "ganforge.data.table_io",
          "evaluate_table": "ganforge.metrics.table", "TabularGAN": "ganforge.tabular.model",
          "TabularVAE": "ganforge.tabular.model", "TableTransformer": "ganforge.data.table_transform",
          "detect_discrete": "ganforge.data.table_transform"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ganforge.tabular' has no attribute '{name}'")
    return getattr(importlib.import_module(_WHERE[name]), name)
