"""Data sets by name (:data:`DATASETS`): each builds an object with ``shape`` and ``sample(n, generator)``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ganforge.data.images import cifar10_data, image_folder_data, stacked_mnist_data
from ganforge.data.mnist import fashion_mnist_data, mnist_data
from ganforge.data.tensor import TensorData
from ganforge.data.toy import GaussianMixture, gaussian1d, grid2d, mixture1d, ring2d
from ganforge.registry import ConfigError, Registry

DATASETS: Registry[Callable[..., Any]] = Registry("data set")


def register_dataset(name: str, builder: Callable[..., Any], help: str = "") -> None:
    """Register ``builder(**options)`` returning an object with ``shape`` and ``sample(n, generator)``."""
    DATASETS.register(name, builder, help=help)


register_dataset("gaussian1d", gaussian1d)
register_dataset("mixture1d", mixture1d)
register_dataset("ring2d", ring2d)
register_dataset("grid2d", grid2d)
register_dataset("mnist", mnist_data)
register_dataset("fashion-mnist", fashion_mnist_data)
register_dataset("cifar10", cifar10_data)
register_dataset("image-folder", image_folder_data)
register_dataset("stacked-mnist", stacked_mnist_data)


def table_data(path: str = "", discrete_columns: list[str] | None = None, conditional: bool = True, seed: int = 0,
               delimiter: str | None = None, encoding: str | None = None, **transformer: Any) -> Any:
    """A table file (CSV, TSV, Parquet; gzip allowed) as a data source for the tabular presets:
    ``ganforge train tabular-ctgan --set data.options.path=FILE`` (``conditional: false`` for TVAE).
    ``transformer`` options go to :class:`~ganforge.tabular.TableTransformer`. Needs pandas."""
    if not path:
        raise ConfigError("data 'table' needs options.path: a CSV, TSV or Parquet file")
    from ganforge.tabular.data import table_source
    from ganforge.tabular.io import read_table

    return table_source(read_table(path, delimiter, encoding), discrete_columns, conditional, seed=seed, **transformer)


register_dataset("table", table_data, "a table file (options: path, discrete_columns, conditional, seed)")


def build_dataset(name: str, options: dict[str, Any]) -> Any:
    """Build a registered data set; a wrong option is a one-line :class:`ConfigError`."""
    builder = DATASETS.get(name)
    try:
        return builder(**options)
    except TypeError as e:
        raise ConfigError(f"data '{name}': {e}") from None


__all__ = ["DATASETS", "GaussianMixture", "TensorData", "build_dataset", "register_dataset"]
