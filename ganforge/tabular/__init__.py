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

_WHERE = {"TableData": "data", "read_table": "io", "write_table": "io", "clean_table": "io",
          "evaluate_table": "metrics", "TabularGAN": "model", "TabularVAE": "model",
          "TableTransformer": "transformer", "detect_discrete": "transformer"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ganforge.tabular' has no attribute '{name}'")
    return getattr(importlib.import_module(f"ganforge.tabular.{_WHERE[name]}"), name)
