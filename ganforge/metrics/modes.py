"""Mode metrics on mixtures with known modes (PacGAN / VEEGAN protocol)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


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
    if n_hq > 0:
        q = counts / n_hq
        nz = q > 0
        kl = float((q[nz] * torch.log(q[nz] * len(m))).sum())
    else:
        kl = math.log(len(m))
    return {
        "modes_captured": int((counts > 0).sum()),
        "modes_total": len(m),
        "high_quality_fraction": n_hq / len(x),
        "reverse_kl_modes": kl,
    }
