"""Streaming feature statistics: the middle stage of features -> statistics -> metric."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ganforge.metrics.features import FeatureExtractor
from ganforge.registry import ConfigError


class FeatureStats:
    """Count, mean and covariance of a stream of feature batches, plus a bounded sample of raw rows.

    Moments are float64 and merged batch by batch (Chan et al.'s pairwise update of mean and centred
    sum of outer products), so 50k x 2048 features need only a 2048 x 2048 matrix, and the covariance
    does not lose digits to cancellation when the features have a large mean. The first ``max_keep``
    feature rows are kept as float32 for metrics that need samples (KID, precision/recall,
    density/coverage); logits, when given, are all kept (Inception Score needs every sample).
    """

    def __init__(self, max_keep: int = 0) -> None:
        self.max_keep = max_keep
        self.count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None  # sum over samples of (f - mean)(f - mean)^T
        self._kept: list[Tensor] = []
        self._n_kept = 0
        self._logits: list[Tensor] = []

    def update(self, features: Tensor, logits: Tensor | None = None) -> None:
        """Add a batch of features (N, D) and optionally its logits (N, K)."""
        f = features.detach().reshape(len(features), -1).to("cpu", torch.float64)
        n_b = len(f)
        if n_b == 0:
            return
        mean_b = f.mean(dim=0)
        centred = f - mean_b
        m2_b = centred.T @ centred
        if self._mean is None:
            self._mean, self._m2 = mean_b, m2_b
        else:
            if f.shape[1] != len(self._mean):
                raise ConfigError(f"feature dimension changed from {len(self._mean)} to {f.shape[1]}")
            n = self.count + n_b
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (n_b / n)
            self._m2 = self._m2 + m2_b + torch.outer(delta, delta) * (self.count * n_b / n)
        self.count += n_b
        keep = min(n_b, self.max_keep - self._n_kept)
        if keep > 0:
            self._kept.append(features[:keep].detach().to("cpu", torch.float32))
            self._n_kept += keep
        if logits is not None:
            self._logits.append(logits.detach().to("cpu", torch.float32))

    @property
    def dim(self) -> int:
        """Feature dimension (0 before the first update)."""
        return 0 if self._mean is None else len(self._mean)

    @property
    def mean(self) -> np.ndarray:
        """Mean feature vector, float64 (D,)."""
        if self._mean is None:
            raise ConfigError("no features collected")
        return self._mean.numpy().copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased (n - 1) covariance, float64 (D, D)."""
        if self.count < 2:
            raise ConfigError(f"a covariance needs at least 2 samples, got {self.count}")
        return (self._m2 / (self.count - 1)).numpy()

    @property
    def features(self) -> Tensor:
        """The kept raw feature rows, float32 (min(count, max_keep), D)."""
        return torch.cat(self._kept) if self._kept else torch.zeros(0, self.dim)

    @property
    def logits(self) -> Tensor | None:
        """All logits seen, float32 (count, K), or None when no batch came with logits."""
        return torch.cat(self._logits) if self._logits else None


@torch.no_grad()
def collect(
    batches: Iterable[Tensor], extractor: FeatureExtractor, max_keep: int = 0, progress: bool = True,
    total: int | None = None,
) -> FeatureStats:
    """Run ``extractor`` over image batches in [-1, 1] and accumulate their :class:`FeatureStats`.

    A batch may also be a tuple or list whose first element is the images, as data loaders yield ``(x, y)``.
    """
    stats = FeatureStats(max_keep=max_keep)
    for batch in tqdm(batches, desc=f"features [{extractor.name}]", unit="batch", disable=not progress,
                      total=total):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        features, logits = extractor.extract(x)
        stats.update(features, logits)
    return stats
