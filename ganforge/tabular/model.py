"""``TabularGAN`` and ``TabularVAE``: fit a table, sample one, save and load it, resume a fit.

Both are facades over the one engine: the table transformer and the training-by-sampling data
source feed :func:`ganforge.training.run.train` with the ``tabular-ctgan`` / ``tabular-tvae``
preset; the fitted transformer travels with the exported generator, so ``ganforge.load(path)
.sample(n)`` returns a DataFrame. A quality score (SDMetrics' Column Shapes and Column Pair Trends
against the training rows) can run every N epochs, keeping the best model and stopping early.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ganforge.config import Config, from_dict, load_yaml, merge, merge_config
from ganforge.data.table import table_source
from ganforge.data.table_io import clean_table, read_table
from ganforge.data.table_transform import TableTransformer
from ganforge.generator import GeneratorArtifact
from ganforge.io import atomic_write_text
from ganforge.metrics.table import column_kinds, quality_score
from ganforge.registry import ConfigError
from ganforge.training.callbacks import Every, Interrupted
from ganforge.training.logger import Logger
from ganforge.training.run import RunResult, prepare_out, train

TRANSFORMER_FILE = "transformer.json"  # the fitted transformer of a run folder, reused by --resume


class TableQuality:
    """Every N epochs: the quality score of ``n`` sampled rows against the training rows; keeps the
    best generator's weights and asks the trainer to stop after ``patience`` evaluations without
    improvement (0 = never)."""

    state_key = "TableQuality"

    def __init__(self, real: pd.DataFrame, kinds: dict[str, str], transformer: TableTransformer, cfg: Config,
                 n: int, steps_per_epoch: int, patience: int = 0, best_path: Path | None = None) -> None:
        self.real, self.kinds, self.transformer, self.cfg = real, kinds, transformer, cfg
        self.n, self.steps_per_epoch, self.patience, self.best_path = n, steps_per_epoch, patience, best_path
        self.best, self.best_epoch, self.bad = -1.0, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def __call__(self, trainer: Any) -> None:
        parts = trainer.parts
        artifact = GeneratorArtifact(trainer.G, parts.prior, parts.spec, self.cfg.model, self.transformer)
        q = quality_score(self.real, artifact.sample(self.n, seed=4321), self.kinds)
        epoch = trainer.step_num / self.steps_per_epoch
        self.history.append({"epoch": epoch, "quality": q})
        logger = next((cb for cb in trainer.callbacks if isinstance(cb, Logger)), None)
        if logger is not None:
            logger.record(trainer.step_num, {"eval/quality": q, "epoch": epoch})
            if logger.bar is not None:
                logger.bar.write(f"[ganforge] epoch {epoch:g}: quality {q:.4f}"
                                 + (" (best)" if q > self.best else ""))
        if q > self.best:
            self.best, self.best_epoch, self.bad = q, round(epoch), 0
            self.best_state = {k: v.detach().clone() for k, v in trainer.G.state_dict().items()}
            if self.best_path is not None:
                artifact.export(self.best_path)
        else:
            self.bad += 1
            if self.patience and self.bad >= self.patience:
                trainer.early_stop = (f"quality did not improve for {self.patience} evaluations "
                                      f"(best {self.best:.4f} at epoch {self.best_epoch})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad,
                "history": json.dumps(self.history), "best_state": self.best_state or {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad = float(state["best"]), int(state["best_epoch"]), int(state["bad"])
        self.history = json.loads(state["history"])
        self.best_state = dict(state["best_state"]) or None


class TabularGAN:
    """CTGAN-class synthesizer (WGAN-GP, PacGAN, training-by-sampling, G's conditional loss).

    >>> import pandas as pd, ganforge
    >>> df = pd.DataFrame({"x": [0.1, 0.5, 0.9, 1.3] * 50, "kind": ["a", "b", "a", "c"] * 50})
    >>> model = ganforge.TabularGAN(epochs=2, batch_size=50, pac=5, progress=False).fit(df)
    >>> model.sample(5, conditions={"kind": "c"})["kind"].tolist()
    ['c', 'c', 'c', 'c', 'c']

    ``epochs`` passes over the rows (steps = epochs x rows // batch_size, at least one per epoch);
    ``quality_every`` epochs between quality scores (0 = off), ``patience`` evaluations without
    improvement before stopping (0 = never), ``keep_best`` samples from the best-scoring weights.
    ``transformer`` takes :class:`TableTransformer` options (``max_modes``, ``max_fit_rows``,
    ``max_categories``, ``id_ratio``); ``config`` nested config sections merged last (like ``--set``).
    """

    preset = "tabular-ctgan"
    conditional = True

    def __init__(self, epochs: int = 300, batch_size: int = 500, seed: int = 0, *, pac: int = 10,
                 embedding_dim: int = 128, generator_dim: Sequence[int] = (256, 256),
                 discriminator_dim: Sequence[int] = (256, 256), lr: float | None = None,
                 quality_every: int = 0, quality_rows: int = 5000, patience: int = 0, keep_best: bool = True,
                 checkpoint_every: int = 10, progress: bool = True, device: str = "cpu",
                 transformer: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> None:
        if epochs < 1 or batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.quality_every, self.quality_rows, self.patience = quality_every, quality_rows, patience
        self.keep_best, self.checkpoint_every = keep_best, checkpoint_every
        self.transformer_options = dict(transformer or {})
        model: dict[str, Any] = {"z_dim": embedding_dim, "generator": {"hidden": list(generator_dim)}}
        if self.preset == "tabular-ctgan":
            if pac < 1 or batch_size % pac:
                raise ConfigError(f"batch_size ({batch_size}) must be a multiple of pac ({pac})")
            model["discriminator"] = {"hidden": list(discriminator_dim), "pac": pac}
        sections: dict[str, Any] = {"model": model, "train": {"batch_size": batch_size, "seed": seed,
                                                              "progress": progress, "device": device}}
        if lr is not None:
            sections["optim_g"] = {"lr": lr}
            sections["optim_d"] = {"lr": lr}
        self._sections = merge(sections, config or {})
        self.transformer: TableTransformer | None = None
        self.result: RunResult | None = None
        self.quality: TableQuality | None = None

    def _config(self, rows: int) -> tuple[Config, int]:
        steps_per_epoch = max(rows // self.batch_size, 1)
        steps = self.epochs * steps_per_epoch
        sections = merge(self._sections, {"train": {
            "steps": steps, "log_every": min(50, steps_per_epoch),
            "checkpoint_every": self.checkpoint_every * steps_per_epoch if self.checkpoint_every else 0}})
        cfg = from_dict(merge_config(load_yaml(self.preset), sections))
        cfg.preset = self.preset
        return cfg, steps_per_epoch

    def fit(self, data: pd.DataFrame | str | Path, discrete_columns: Sequence[str] | None = None,
            out: str | Path | None = None, resume: bool = False) -> TabularGAN:
        """Fit on a DataFrame or a table file (CSV, TSV, Parquet; gzip allowed). ``discrete_columns``
        default to those detected (text, categories, booleans, integers with few values). With
        ``out`` the run folder is written (checkpoints, log, exported generator); ``resume=True``
        continues the fit saved there (the same data is needed)."""
        if isinstance(data, (str, Path)):
            df = read_table(data)  # cleaned by the reader
        elif isinstance(data, pd.DataFrame):
            df, _ = clean_table(data)
        else:
            raise ConfigError(f"fit takes a pandas DataFrame or a path, got {type(data).__name__}")
        out_path = Path(out) if out is not None else None
        if resume and out_path is None:
            raise ConfigError("resume=True needs the run folder: out=")
        if out_path is not None:
            prepare_out(out_path, resume)
        transformer = self._transformer(df, discrete_columns, out_path, resume)
        data_source = table_source(df, conditional=self.conditional, transformer=transformer)
        discrete = transformer.discrete_columns()
        cfg, steps_per_epoch = self._config(len(df))
        callbacks = []
        if self.quality_every:
            rows = df.sample(min(len(df), self.quality_rows), random_state=self.seed) if len(df) > self.quality_rows \
                else df
            self.quality = TableQuality(rows.reset_index(drop=True), column_kinds(df, [c["name"] for c in discrete]),
                                        transformer, cfg, min(len(df), self.quality_rows), steps_per_epoch,
                                        self.patience, out_path / "best.safetensors" if out_path else None)
            callbacks.append(Every(self.quality_every * steps_per_epoch, self.quality))
        try:
            self.result = train(cfg, out_path, resume=resume, data=data_source, callbacks=callbacks)
        except Interrupted as e:
            # `ganforge train --resume` cannot rebuild a table run (its data and transformer come from
            # here): the way on is this call again, with resume=True.
            table = repr(str(data)) if isinstance(data, (str, Path)) else "<the same DataFrame>"
            e.resume = (f"{type(self).__name__}(<the same options>).fit({table}, out={str(out_path)!r}, "
                        "resume=True)")
            raise
        self.transformer = transformer
        if self.keep_best and self.quality is not None and self.quality.best_state is not None:
            self.result.artifact.module.load_state_dict(self.quality.best_state)
            self.result.summary.update(best_quality=self.quality.best, best_epoch=self.quality.best_epoch)
            if out_path is not None:
                self.result.artifact.export(out_path / "generator.safetensors")
                atomic_write_text(out_path / "summary.json", json.dumps(self.result.summary, indent=2))
        return self

    def _transformer(self, df: pd.DataFrame, discrete_columns: Sequence[str] | None, out: Path | None,
                     resume: bool) -> TableTransformer:
        path = out / TRANSFORMER_FILE if out is not None else None
        if resume and path is not None and path.is_file():
            transformer = TableTransformer.from_config(json.loads(path.read_text()))
            if transformer.names != [str(c) for c in df.columns]:
                raise ConfigError(f"--resume: the table's columns differ from those of the run in {out}")
            return transformer
        transformer = TableTransformer(seed=self.seed, **self.transformer_options).fit(df, discrete_columns)
        if path is not None:
            atomic_write_text(path, json.dumps(transformer.config()))
        return transformer

    # -- using the fitted model --------------------------------------------------------------------

    @property
    def artifact(self) -> GeneratorArtifact:
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.artifact

    @property
    def summary(self) -> dict[str, Any]:
        if self.result is None:
            raise RuntimeError("call fit() first")
        return self.result.summary

    def sample(self, n: int, seed: int = 0, conditions: dict[str, Any] | None = None) -> pd.DataFrame:
        """``n`` synthetic rows; ``conditions={"column": value}`` asks for rows with those values
        (discrete columns; the generator is steered and rows that miss are drawn again)."""
        return self.artifact.sample(n, seed=seed, conditions=conditions)

    def save(self, path: str | Path) -> None:
        """The generator with its fitted transformer: safetensors weights, JSON metadata, no pickle.
        ``ganforge.load(path).sample(n)`` returns a DataFrame."""
        self.artifact.export(path)


class TabularVAE(TabularGAN):
    """TVAE on the same transformer and metrics (no condition vectors, no discriminator).

    ``embedding_dim`` is the code size, ``generator_dim`` the encoder's and decoder's hidden layers.
    """

    preset = "tabular-tvae"
    conditional = False

    def __init__(self, epochs: int = 300, batch_size: int = 500, seed: int = 0, *, embedding_dim: int = 128,
                 generator_dim: Sequence[int] = (128, 128), **kwargs: Any) -> None:
        kwargs.pop("pac", None)
        super().__init__(epochs, batch_size, seed, embedding_dim=embedding_dim, generator_dim=generator_dim, **kwargs)
