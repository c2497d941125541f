"""Points: any tensor data, and the toy mixtures (1-D and 2-D) whose modes are known exactly."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge.config import Config
from ganforge.io import atomic_write
from ganforge.kinds.base import DataKind, RunContext, register_kind
from ganforge.metrics.modes import mode_metrics
from ganforge.registry import ConfigError
from ganforge.report.plots import plot_samples_1d, plot_samples_2d
from ganforge.spec import DataSpec

EVAL_SEED = 1234  # the samples the mode metrics count (during training, in the summary and in `ganforge eval`)


def toy_metrics(artifact: Any, data: Any, n: int) -> dict[str, float]:
    """Exact mode metrics when the data set knows its modes (ring, grid, 1-D mixtures)."""
    if not hasattr(data, "modes"):
        return {}
    return mode_metrics(artifact.sample(n, seed=EVAL_SEED, raw=True), data.modes, float(data.stds.min()))


class ModeMetrics:
    """Modes captured, high-quality fraction and reverse KL during training (data with known
    modes); the health monitor hears of each result (a drop in modes is a warning)."""

    state_key = "evaluate"  # (the name checkpoints of earlier versions keep its schedule under)

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.last: dict[str, Any] = {}

    def __call__(self, trainer: Any) -> None:
        run = self.run
        self.last = toy_metrics(run.artifact, run.data, run.cfg.train.eval_samples)
        if self.last:
            run.logger.record(trainer.step_num, {f"eval/{k}": v for k, v in self.last.items()})
            run.health.modes(trainer.step_num, self.last["modes_captured"], self.last["modes_total"],
                             self.last["high_quality_fraction"])

    def summary(self) -> dict[str, Any]:
        return {}  # the summary's mode metrics are the kind's (measured on the final model)


def write_array(x: torch.Tensor, out: Path) -> bool:
    """Samples as an ``.npz`` (key ``samples``) or ``.csv`` (one flattened sample a row); False for
    another suffix."""
    if out.suffix == ".npz":
        atomic_write(out, lambda tmp: np.savez(open(tmp, "wb"), samples=x.numpy()))
    elif out.suffix == ".csv":
        atomic_write(out, lambda tmp: np.savetxt(tmp, x.flatten(1).numpy(), delimiter=","))
    else:
        return False
    return True


def tensor_samples(gen: Any, args: argparse.Namespace) -> torch.Tensor:
    x = gen.sample(args.n, seed=args.seed, label=args.label)
    if not isinstance(x, torch.Tensor):
        raise ConfigError("this generator returns data that is not a tensor; use the Python API to save it")
    return x


class Points(DataKind):
    """Vectors of numbers: 1-D and 2-D samples are plotted (against the modes of a toy mixture)."""

    name = "points"
    description = "tensor samples; toy mixtures with known modes (ring2d, grid2d, 1-D)"
    sample_flags = frozenset({"label"})

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        return True

    def evaluations(self, run: RunContext) -> list[Any]:
        return [ModeMetrics(run)]

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        samples = artifact.sample(2500, seed=99, raw=True)
        if samples.dim() == 2 and samples.shape[1] == 2:
            plot_samples_2d(samples, getattr(data, "modes", None), path, title)
        elif samples.dim() == 2 and samples.shape[1] == 1:
            plot_samples_1d(samples, getattr(data, "prob", None), path, title)
        else:
            return None
        return path

    def summary(self, run: RunContext) -> dict[str, Any]:
        return toy_metrics(run.artifact, run.data, run.cfg.train.eval_samples)

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        x = tensor_samples(gen, args)
        out = Path(args.out)
        if write_array(x, out):
            pass
        elif out.suffix == ".png" and x.dim() == 2 and x.shape[1] in (1, 2):
            plot = plot_samples_2d if x.shape[1] == 2 else plot_samples_1d
            plot(x, None, out, f"{args.n} samples")
        elif out.suffix == ".png":
            raise ConfigError(f"cannot plot samples of shape {tuple(x.shape[1:])} as PNG; use .npz")
        else:
            raise ConfigError(f"--out must end in .npz, .csv or .png, got '{out}'")
        return {"n": args.n, "out": str(out)}

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        from ganforge.data import build_dataset

        data = build_dataset(cfg.data.name, cfg.data.options, cfg.data.path)
        if not hasattr(data, "modes"):
            raise ConfigError(f"no evaluation for data set '{cfg.data.name}' (it has no known modes)")
        x = gen.sample(args.n or cfg.train.eval_samples, seed=EVAL_SEED)
        result: dict[str, Any] = mode_metrics(x, data.modes, float(data.stds.min()))
        result["protocol"] = {"samples": len(x), "data": cfg.data.name, "threshold_std": 3.0}
        return result


register_kind(Points(), builtin=True)

__all__ = ["ModeMetrics", "Points", "tensor_samples", "toy_metrics", "write_array"]
