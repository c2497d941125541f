"""k-NN manifold metrics: precision / recall (Kynkäänniemi et al. 2019), density / coverage (Naeem et al. 2020).

Each set's manifold is the union of balls around its samples, radius = distance to the k-th nearest other
sample of the same set. Distances are computed ``chunk_size`` rows at a time, so 10k x 10k sets need
``chunk_size x n`` memory, not ``n x n``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ganforge.registry import ConfigError

DEFAULT_CHUNK = 1024


def _rows(x: np.ndarray | Tensor) -> Tensor:
    # float64 so that a point's distance to its own copy in the other set is ~0, not matmul rounding noise
    # of the order of the radii (cdist expands |x|^2 + |y|^2 - 2 x.y).
    t = torch.as_tensor(x).detach().cpu().to(torch.float64)
    return t.reshape(len(t), -1)


def knn_radii(x: np.ndarray | Tensor, k: int, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (self excluded, duplicates count)."""
    x = _rows(x)
    if not 1 <= k < len(x):
        raise ConfigError(f"k-NN radii need 1 <= k < number of samples, got k={k} with {len(x)} samples")
    # The k+1 smallest distances include the row itself (distance 0), so the k-th neighbour is at index k.
    return torch.cat([torch.cdist(c, x).topk(k + 1, dim=1, largest=False).values[:, k] for c in x.split(chunk_size)])


def ball_membership(
    points: np.ndarray | Tensor, centers: np.ndarray | Tensor, radii: Tensor, chunk_size: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """For balls ``B(centers[i], radii[i])``: how many balls hold each point, and whether each ball holds any.

    Returns ``(counts (n_points,) int64, hit (n_centers,) bool)``; a point on the boundary is inside.
    """
    points, centers = _rows(points), _rows(centers)
    counts, hit = [], torch.zeros(len(centers), dtype=torch.bool)
    for c in points.split(chunk_size):
        inside = torch.cdist(c, centers) <= radii.to(torch.float64)[None, :]
        counts.append(inside.sum(dim=1))
        hit |= inside.any(dim=0)
    return torch.cat(counts), hit


def precision_recall(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 3, chunk_size: int = DEFAULT_CHUNK
) -> tuple[float, float]:
    """Improved precision (fake inside the real manifold) and recall (real inside the fake manifold)."""
    real_counts, _ = ball_membership(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    fake_counts, _ = ball_membership(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    return float((real_counts > 0).double().mean()), float((fake_counts > 0).double().mean())


def density_coverage(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 5, chunk_size: int = DEFAULT_CHUNK
) -> tuple[float, float]:
    """Density (mean number of real balls holding a fake sample, over k; ~1 when the sets match) and
    coverage (fraction of real balls holding at least one fake sample)."""
    counts, hit = ball_membership(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    return float(counts.double().sum() / (k * len(counts))), float(hit.double().mean())
