"""Distribution distances between feature sets: FID, KID, and the Inception Score of class logits."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ganforge.registry import ConfigError

ArrayLike = np.ndarray | Tensor


def _f64(x: ArrayLike) -> np.ndarray:
    return (x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64))


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a covariance; negative eigenvalues are rounding noise and become 0."""
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. The trace term is computed as the sum of
    square roots of the eigenvalues of ``S1^(1/2) S2 S1^(1/2)``, which has the same spectrum as ``S1 S2``
    but is symmetric PSD: real eigenvalues by construction, no complex parts to discard and no eps retry
    when a covariance is singular (fewer samples than dimensions, duplicated samples), unlike ``sqrtm``.
    Float64 throughout; torch's symmetric eigensolvers take about a second at 2048 dimensions.
    """
    mu1, mu2, s1, s2 = (torch.from_numpy(_f64(a)) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)}/{tuple(s2.shape)}")
    if not all(torch.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise ValueError("frechet_distance got non-finite statistics")
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    tr_covmean = float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum())
    scale = float((mu1 - mu2) @ (mu1 - mu2) + s1.trace() + s2.trace())
    d = scale - 2 * tr_covmean
    if d < 0:
        # The distance is >= 0 in exact arithmetic; a small negative value is rounding, a large one means
        # the inputs were not covariance matrices.
        if d < -1e-6 * max(scale, 1e-12):
            raise ValueError(f"negative Fréchet distance {d:.3g}: are sigma1 and sigma2 covariance matrices?")
        d = 0.0
    return d


def kid(
    f1: ArrayLike, f2: ArrayLike, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of unbiased MMD^2 over random subsets.

    Kernel ``k(x, y) = (x.y / d + 1)^3``. Each subset draws ``m = min(subset_size, n1, n2)`` rows without
    replacement from each set; the std is over subsets (ddof=0, as torch-fidelity reports it).
    """
    x, y = _f64(f1), _f64(f2)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two (n, d) feature arrays of equal d, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ConfigError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((a, a), (b, b), (a, b)))
        # Unbiased: within-set sums leave out the k(x_i, x_i) diagonal.
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        mmds[i] = within - 2 * kxy.mean()
    return float(mmds.mean()), float(mmds.std())


def inception_score(logits: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over splits.

    Samples are cut into ``min(splits, n)`` contiguous, near-equal parts; ``p(y)`` is each part's mean.
    """
    z = torch.as_tensor(_f64(logits))
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"inception_score needs (n, K) logits with n >= 1, got {tuple(z.shape)}")
    log_p = torch.log_softmax(z, dim=1)
    scores = []
    for part in torch.tensor_split(log_p, min(splits, len(log_p))):
        log_py = torch.logsumexp(part, dim=0) - np.log(len(part))
        kl = (part.exp() * (part - log_py)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
