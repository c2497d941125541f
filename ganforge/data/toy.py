"""Toy data with known densities: 1-D Gaussians and mixtures, PacGAN's 2-D ring and grid.

Each data set draws fresh samples on demand (``sample(n, generator)``), so every minibatch of
Algorithm 1 is new, and exposes its exact density so metrics need no estimation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ganforge.spec import DataSpec


@dataclass
class GaussianMixture:
    """An equal-or-weighted mixture of isotropic Gaussians in ``dim`` dimensions."""

    means: Tensor  # (modes, dim)
    stds: Tensor  # (modes,)
    weights: Tensor  # (modes,), sums to 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.means.shape[1],)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.shape)

    @property
    def modes(self) -> Tensor:
        return self.means

    def batch(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Fresh samples as a batch ``{"x": ...}``."""
        return {"x": self.sample(n, generator)}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means[idx] + noise * self.stds[idx, None]

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density at ``x`` of shape (n, dim)."""
        x = x.reshape(len(x), -1).to(self.means.dtype)
        d = self.means.shape[1]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # (n, modes)
        var = self.stds[None] ** 2
        comp = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.logsumexp(comp + torch.log(self.weights)[None], dim=1)

    def prob(self, x: Tensor) -> Tensor:
        return self.log_prob(x).exp()


def _mixture(means: list[list[float]], stds: list[float], weights: list[float] | None = None) -> GaussianMixture:
    m = torch.tensor(means, dtype=torch.float64)
    s = torch.tensor(stds, dtype=torch.float64)
    w = torch.tensor(weights if weights else [1.0] * len(means), dtype=torch.float64)
    return GaussianMixture(m.float(), s.float(), (w / w.sum()).float())


def gaussian1d(mean: float = 4.0, std: float = 0.5) -> GaussianMixture:
    """A single 1-D Gaussian N(mean, std^2) (the original paper's figure uses one)."""
    return _mixture([[mean]], [std])


def mixture1d(means: list[float] | None = None, stds: list[float] | None = None,
              weights: list[float] | None = None) -> GaussianMixture:
    """A 1-D Gaussian mixture; default: three modes at -2, 0, 2 with std 0.25."""
    means = means if means is not None else [-2.0, 0.0, 2.0]
    stds = stds if stds is not None else [0.25] * len(means)
    if len(stds) != len(means):
        raise ValueError("mixture1d: means and stds must have the same length")
    return _mixture([[m] for m in means], stds, weights)


def ring2d(modes: int = 8, radius: float = 1.0, std: float = 0.01) -> GaussianMixture:
    """PacGAN's ring: ``modes`` Gaussians evenly spaced on a circle."""
    angles = [2 * math.pi * i / modes for i in range(modes)]
    return _mixture([[radius * math.cos(a), radius * math.sin(a)] for a in angles], [std] * modes)


def grid2d(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """PacGAN's grid: side x side Gaussians at {-4, -2, 0, 2, 4}^2 by default."""
    offset = spacing * (side - 1) / 2
    pts = [[i * spacing - offset, j * spacing - offset] for i in range(side) for j in range(side)]
    return _mixture(pts, [std] * len(pts))
