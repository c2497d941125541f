"""A data kind defined outside ganforge, as a user's plug-in would be: 1-D time series.

It registers a data set (``sines``: noisy sine waves of random frequency and phase, 32 steps) whose
spec names the kind ``timeseries``, and the kind: its own metric during training (the distance
between the mean power spectra of generated and real series), a summary entry, a line plot as the
picture, CSV output for ``ganforge sample`` and a panel on the report page. Nothing in ``ganforge/``
knows of it.
"""
from __future__ import annotations

import argparse
import dataclasses
from html import escape
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ganforge.data import TensorData, register_dataset  # noqa: E402
from ganforge.kinds import DataKind, RunContext, register_kind  # noqa: E402

LENGTH = 32


def sines(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(LENGTH, dtype=torch.float32)
    freq = 0.1 + 0.3 * torch.rand(n, 1, generator=g)
    phase = 6.283 * torch.rand(n, 1, generator=g)
    return torch.sin(freq * t + phase) + 0.05 * torch.randn(n, LENGTH, generator=g)


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """The mean power spectrum of a batch of series (normalised to sum 1)."""
    p = torch.fft.rfft(x.float(), dim=1).abs().pow(2).mean(0)
    return p / p.sum()


class SineData(TensorData):
    """The training series, with a held-out set the metric compares against."""

    def __init__(self, n: int = 2000, seed: int = 0) -> None:
        super().__init__(sines(n, seed))
        self.heldout_series = sines(1000, seed + 1)

    @property
    def spec(self):  # type: ignore[override]
        return dataclasses.replace(super().spec, kind="timeseries")


register_dataset("sines", SineData, "noisy sine waves (a plug-in's data set)")


class SpectralError:
    """L1 distance between the mean power spectra of 1000 generated and the held-out series."""

    state_key = "SpectralError"

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.last: dict[str, Any] = {}

    def __call__(self, trainer: Any) -> None:
        fake = self.run.artifact.sample(1000, seed=5)
        err = float((spectrum(fake) - spectrum(self.run.data.heldout_series)).abs().sum())
        self.last = {"spectral_error": err}
        self.run.logger.record(trainer.step_num, {"eval/spectral_error": err})

    def summary(self) -> dict[str, Any]:
        return dict(self.last)


def plot(x: torch.Tensor, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3))
    for row in x[:8].numpy():
        ax.plot(row, lw=1)
    ax.set_title(title)
    fig.savefig(path)
    plt.close(fig)
    return path


class TimeSeries(DataKind):
    name = "timeseries"
    description = "1-D time series (a plug-in): spectral error, line plots"

    def evaluations(self, run: RunContext) -> list[Any]:
        return [SpectralError(run)]

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        return plot(artifact.sample(8, seed=99), path, title)

    def summary(self, run: RunContext) -> dict[str, Any]:
        return {"series_length": LENGTH}

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        x = gen.sample(args.n, seed=args.seed)
        np.savetxt(args.out, x.numpy(), delimiter=",")
        return {"n": args.n, "out": str(args.out)}

    def report(self, run: Any) -> str:
        err = run.summary.get("spectral_error")
        return f'<h3>time series</h3><p class="timeseries">spectral error {escape(f"{err:.4f}")}</p>'


register_kind(TimeSeries())
