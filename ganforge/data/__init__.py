"""Data sets by name (:data:`DATASETS`): each builds an object with ``shape`` and ``sample(n, generator)``."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ganforge.data.images import cifar10_data, image_folder_data, stacked_mnist_data
from ganforge.data.mnist import fashion_mnist_data, mnist_data
from ganforge.data.tensor import TensorData
from ganforge.data.text import coco_captions_data, text_data
from ganforge.data.toy import GaussianMixture, gaussian1d, grid2d, mixture1d, ring2d
from ganforge.registry import ConfigError, Registry, closest

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
               delimiter: str | None = None, encoding: str | None = None, stream: str | bool = "auto",
               workers: int | None = None, memory_limit: int | None = None, sample_rows: int = 100_000,
               chunk_rows: int = 20_000, buffer_chunks: int = 4, holdout: float = 0.1, **transformer: Any) -> Any:
    """A table file (CSV, TSV, Parquet; gzip allowed) as a data source for the tabular presets:
    ``ganforge train tabular-ctgan --set data.path=FILE`` (``conditional: false`` for TVAE).
    ``transformer`` options go to :class:`~ganforge.tabular.TableTransformer`. Needs pandas.

    With ``stream: auto`` a file whose table would exceed ``memory_limit`` bytes in memory (default a
    quarter of RAM; estimated from the file's size) is streamed in chunks
    (:class:`~ganforge.data.table_stream.TableStream`: ``workers``, ``sample_rows``, ``chunk_rows`` and
    ``buffer_chunks`` are its options); ``stream: true`` / ``false`` force either.

    A seeded ``holdout`` share of the rows (10%; tables of 50 rows or more, held in memory) is kept out
    of training as ``heldout``: what the run's synthetic rows are scored against at the end."""
    from ganforge.data.streaming import should_stream, table_memory_estimate
    from ganforge.data.table_stream import TableStream

    if not path:
        raise ConfigError("data 'table' needs data.path: a CSV, TSV or Parquet file")
    if should_stream(stream, table_memory_estimate(path), memory_limit, "data 'table'"):
        return TableStream(path, discrete_columns, conditional, seed, delimiter, encoding, workers=workers,
                           sample_rows=sample_rows, chunk_rows=chunk_rows, buffer_chunks=buffer_chunks, **transformer)
    from ganforge.data.table import table_source
    from ganforge.data.table_io import read_table

    if not 0 <= holdout < 1:
        raise ConfigError(f"data.options.holdout must be a fraction in [0, 1), got {holdout!r}")
    df = read_table(path, delimiter, encoding)
    held = None
    if holdout > 0 and len(df) >= 50:
        import numpy as np

        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(df))
        n_held = max(1, round(holdout * len(df)))
        held, df = df.iloc[np.sort(order[:n_held])], df.iloc[np.sort(order[n_held:])]
    source = table_source(df, discrete_columns, conditional, seed=seed, **transformer)
    if held is not None:
        source.heldout = held.reset_index(drop=True)
        source.heldout_source = f"held out: {len(held)} of the {len(df) + len(held)} rows of {path} (seed {seed})"
        source.discrete_columns = discrete_columns
    return source


register_dataset("table", table_data, "a table file (options: path, discrete_columns, conditional, seed, stream, "
                 "workers, memory_limit)")


def _captions(path: str = "", test_path: str = "", **options: Any) -> Any:
    """MS-COCO captions; with ``data.path``, your own corpus in their place (same model and metrics)."""
    if path:
        for key in ("root", "download"):
            options.pop(key, None)
        return text_data(path, test_path, **options)
    if test_path:
        raise ConfigError("data.options.test_path: give your training corpus as data.path too")
    return coco_captions_data(**options)


register_dataset("text", text_data, "your own corpus, one sentence a line (options: path, test_path, level, "
                 "max_vocab, min_count, max_len, lowercase); set data.path")
register_dataset("coco-captions", _captions, "MS-COCO captions in the Texygen split (train / test files); "
                 "data.path = your own corpus instead")



def _t2i(kind: str) -> Callable[..., Any]:
    def build(**options: Any) -> Any:
        from ganforge.data import captioned

        return getattr(captioned, kind)(**options)

    return build


register_dataset("shapes-t2i", _t2i("shapes_t2i_data"), "procedural shapes (shape, colour, size, position) with "
                 "captions that can be checked; held-out phrasings and (shape, colour) pairs (options: n_train, "
                 "n_test, captions_per_image, image_size, seed, encoder)")
register_dataset("mnist-t2i", _t2i("mnist_t2i_data"), "MNIST digits captioned with the digit and its measured "
                 "thickness, slant and size (options: captions_per_image, seed, encoder)")
register_dataset("captioned-images", _t2i("captioned_folder_data"), "your own image/caption pairs: data.path = a "
                 ".jsonl or .csv of image and caption (options: size, channels, test_path, encoder)")


def build_dataset(name: str, options: dict[str, Any], path: str = "") -> Any:
    """Build a registered data set; a wrong option is a one-line :class:`ConfigError`. ``path``
    (``data.path``) is the ``path`` option, for data sets that read a file of the user's."""
    builder = DATASETS.get(name)
    if path:
        options = {**options, "path": path}
    valid = dataset_options(name)
    unknown = [k for k in options if valid is not None and k not in valid]
    if unknown:
        raise ConfigError(f"data '{name}' takes no option '{unknown[0]}'{closest(unknown[0], valid or [])} "
                          f"(its options: {', '.join(valid or []) or 'none'})")
    try:
        return builder(**options)
    except TypeError as e:
        raise ConfigError(f"data '{name}': {e}") from None


def dataset_options(name: str) -> list[str] | None:
    """The options a registered data set takes (its builder's keyword parameters), or None when it
    takes any (a builder with ``**options`` that passes them on)."""
    params = inspect.signature(DATASETS.get(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


__all__ = ["DATASETS", "GaussianMixture", "TensorData", "build_dataset", "register_dataset"]
