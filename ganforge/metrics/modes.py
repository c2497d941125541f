"""Mode metrics on mixtures with known modes (PacGAN / VEEGAN protocol)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ganforge.registry import ConfigError


def mode_metrics(samples: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> dict[str, float]:
    """Modes captured, high-quality fraction and reverse KL of the mode histogram to uniform.

    A sample is *high quality* when it lies within ``threshold`` standard deviations of its nearest
    mode; a mode is *captured* when it is the nearest mode of at least one high-quality sample.
    ``reverse_kl_modes`` is KL(q || uniform) where q is the histogram of high-quality samples over
    modes (0 when every mode is equally represented; log(M) when all samples sit on one mode); it is
    infinite-free because empty modes contribute 0 to KL(q || u).
    """
    x = samples.reshape(len(samples), -1).double()
    m = modes.double()
    dist = torch.cdist(x, m)
    nearest_d, nearest = dist.min(dim=1)
    hq = nearest_d <= threshold * std
    counts = torch.bincount(nearest[hq], minlength=len(m)).double()
    n_hq = counts.sum().item()
    return {
        "modes_captured": int((counts > 0).sum()),
        "modes_total": len(m),
        "high_quality_fraction": n_hq / len(x),
        "reverse_kl_modes": kl_to_uniform(counts),
    }


def kl_to_uniform(counts: Tensor) -> float:
    """KL(q || uniform) of the histogram ``counts`` over its bins: 0 when every bin is equally
    filled, log(M) when everything sits in one bin (or nothing was counted); empty bins add 0."""
    m, total = len(counts), float(counts.sum())
    if total <= 0:
        return math.log(m)
    q = counts.double() / total
    nz = q > 0
    return float((q[nz] * torch.log(q[nz] * m)).sum())


@torch.no_grad()
def stacked_mnist_modes(images: Tensor, classify: Callable[[Tensor], Tensor], batch: int = 1000) -> dict[str, float]:
    """Stacked MNIST modes (1,000 = 10^3): each of the three channels of a sample is read by a digit
    classifier (``classify`` maps (n, 1, 28, 28) in [-1, 1] to (n, 10) logits); the mode is
    100 d_R + 10 d_G + d_B. Returns modes covered and KL(mode histogram || uniform)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ConfigError(f"stacked MNIST modes need 3-channel images, got shape {tuple(images.shape)}")
    modes = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].float()
        digits = [classify(x[:, c:c + 1]).argmax(1) for c in range(3)]
        modes.append(100 * digits[0] + 10 * digits[1] + digits[2])
    counts = torch.bincount(torch.cat(modes), minlength=1000)
    return {"modes_covered": int((counts > 0).sum()), "modes_total": 1000, "n_samples": len(images),
            "kl_to_uniform": kl_to_uniform(counts)}
