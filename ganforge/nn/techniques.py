"""Improved-GAN techniques for image models (Salimans et al. 2016) and DiffAugment (Zhao et al. 2020).

* :class:`MinibatchDiscrimination` (sec. 3.2): a D layer that appends, per sample, how close it is to
  the other samples of its batch, so D can see a batch that lacks variety.
* :func:`historical_average_penalty` / :class:`HistoricalAverage` (sec. 3.3): pulls a player's
  parameters towards their average over all past steps.
* :class:`RefBatchNorm2d`, :func:`use_reference_batch_norm`, :func:`set_reference_batch` (sec. 3.4):
  virtual batch normalization with fixed reference statistics, so one sample's output does not depend
  on the other samples of its batch.
* :func:`diff_augment`: differentiable augmentation of both real and fake images before D.

Feature matching (sec. 3.1) is part of the trainer (``techniques.feature_matching``).
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.registry import ConfigError, closest

# --------------------------------------------------------------------------------------------
# Minibatch discrimination (sec. 3.2)


class MinibatchDiscrimination(nn.Module):
    """(n, in_features) -> (n, in_features + num_kernels): appends o(x_i)_b = sum_{j != i} exp(-||M_i,b - M_j,b||_1).

    M_i = x_i T is a (num_kernels, kernel_dim) matrix per sample. Inputs with more dimensions are
    flattened first, so the layer can follow a convolutional trunk directly.
    """

    def __init__(self, in_features: int, num_kernels: int = 50, kernel_dim: int = 5) -> None:
        super().__init__()
        self.in_features, self.num_kernels, self.kernel_dim = in_features, num_kernels, kernel_dim
        self.out_features = in_features + num_kernels
        # The paper's code initializes T with N(0, 0.05^2).
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * 0.05)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        m = (x @ self.T).view(len(x), self.num_kernels, self.kernel_dim)
        dist = (m[:, None] - m[None, :]).abs().sum(-1)  # (n, n, num_kernels) L1 distances
        # Each sample's distance to itself is 0, i.e. a term exp(0) = 1: subtract it.
        o = torch.exp(-dist).sum(1) - 1.0
        return torch.cat([x, o], dim=1)


# --------------------------------------------------------------------------------------------
# Historical averaging (sec. 3.3)


def historical_average_penalty(module: nn.Module, averages: dict[str, Tensor], weight: float) -> Tensor:
    """``weight * sum_theta ||theta - average(theta)||^2`` over the parameters named in ``averages``."""
    terms = [((p - averages[name]) ** 2).sum() for name, p in module.named_parameters() if name in averages]
    if not terms:
        return torch.zeros(())
    return weight * torch.stack(terms).sum()


class HistoricalAverage:
    """Keeps the cumulative mean of ``module``'s trainable parameters over all past steps.

    ``penalty()`` is added to the module's loss; ``update()`` follows each optimizer step of the
    module. Before the first update the average is the current parameters (penalty 0); after ``k``
    updates it is the arithmetic mean of the ``k`` parameter snapshots taken by those updates.

    It also speaks the regularizer protocol (``penalty(d, real, fake, ...)``, ``after_step(d)``,
    ``interval``), so a HistoricalAverage of D can be put in ``GANParts.regularizers`` as it is.
    """

    interval = 1  # regularizer protocol: skipping updates would bias the average

    def __init__(self, module: nn.Module, weight: float) -> None:
        self.module, self.weight = module, weight
        self.count = 0
        self.averages = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}

    def _check(self, module: nn.Module | None) -> None:
        if module is not None and module is not self.module:
            raise ValueError("this HistoricalAverage tracks another module")

    def penalty(self, module: nn.Module | None = None, *batch: Any, **kwargs: Any) -> Tensor:
        """The penalty now (a graph to the parameters). The regularizer arguments are accepted and ignored."""
        self._check(module)
        return historical_average_penalty(self.module, self.averages, self.weight)

    @torch.no_grad()
    def update(self) -> None:
        """Add the current parameters to the running mean."""
        self.count += 1
        for name, p in self.module.named_parameters():
            if name in self.averages:
                # avg_k = avg_{k-1} + (theta_k - avg_{k-1}) / k: the exact mean, without storing history.
                self.averages[name].lerp_(p.detach(), 1.0 / self.count)

    def after_step(self, module: nn.Module | None = None) -> None:
        """Regularizer protocol: called after each optimizer step of the module."""
        self._check(module)
        self.update()

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "averages": {k: v.clone() for k, v in self.averages.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        for name, value in state["averages"].items():
            self.averages[name].copy_(value)


# --------------------------------------------------------------------------------------------
# Reference-batch (virtual) batch normalization (sec. 3.4)


class RefBatchNorm2d(nn.Module):
    """Batch norm whose statistics come from a fixed reference batch, combined per example as VBN does.

    Example i is normalized with the per-channel mean and mean square of (reference batch ∪ {x_i}),
    x_i weighted 1 / (n_ref + 1): ``mu_i = n_ref/(n_ref+1) mu_ref + 1/(n_ref+1) mean_hw(x_i)``, the
    same for the mean square, and ``var_i = E_i[x^2] - mu_i^2``. So an example's output does not depend
    on the rest of its batch. While ``capturing`` is on, a forward stores its input's statistics as the
    reference (detached: they are re-captured after weight updates, not differentiated) and normalizes
    that batch with them. The statistics are buffers, so they are checkpointed with the network.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.capturing = False
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("ref_mean", torch.zeros(num_features))
        self.register_buffer("ref_mean_sq", torch.ones(num_features))
        self.register_buffer("ref_count", torch.zeros((), dtype=torch.long))  # n_ref; 0 = no reference yet

    @torch.no_grad()
    def set_reference(self, x: Tensor) -> None:
        """Store the per-channel statistics of the reference batch ``x`` (n_ref, C, H, W)."""
        self.ref_mean.copy_(x.mean((0, 2, 3)))
        self.ref_mean_sq.copy_((x * x).mean((0, 2, 3)))
        self.ref_count.fill_(len(x))

    def _normalize(self, x: Tensor, mean: Tensor, mean_sq: Tensor) -> Tensor:
        var = (mean_sq - mean * mean).clamp_min(0.0)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.capturing:
            self.set_reference(x)
            return self._normalize(x, self.ref_mean[:, None, None], self.ref_mean_sq[:, None, None])
        n_ref = int(self.ref_count)
        if n_ref == 0:
            raise RuntimeError("RefBatchNorm2d has no reference batch: call set_reference_batch(network, x_ref) first")
        new = 1.0 / (n_ref + 1)
        mean = (1 - new) * self.ref_mean[:, None, None] + new * x.mean((2, 3), keepdim=True)
        mean_sq = (1 - new) * self.ref_mean_sq[:, None, None] + new * (x * x).mean((2, 3), keepdim=True)
        return self._normalize(x, mean, mean_sq)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def use_reference_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` of ``module`` (in place) by a :class:`RefBatchNorm2d`; returns ``module``.

    The affine parameters are the same Parameter objects, so an optimizer or EMA built before the
    swap still sees them; running statistics are dropped (the reference replaces them).
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            ref = RefBatchNorm2d(child.num_features, eps=child.eps, affine=child.affine)
            like = next(itertools.chain(child.parameters(), child.buffers()), None)  # affine or running stats
            if like is not None:
                ref.to(like.device, like.dtype)
            if child.affine:
                ref.weight, ref.bias = child.weight, child.bias
            setattr(module, name, ref)
        else:
            use_reference_batch_norm(child)
    return module


@contextlib.contextmanager
def reference_mode(module: nn.Module) -> Iterator[None]:
    """Within the block, every forward of ``module`` stores each RefBatchNorm2d layer's reference statistics."""
    layers = [m for m in module.modules() if isinstance(m, RefBatchNorm2d)]
    for m in layers:
        m.capturing = True
    try:
        yield
    finally:
        for m in layers:
            m.capturing = False


@torch.no_grad()
def set_reference_batch(module: nn.Module, *inputs: Any, **kwargs: Any) -> None:
    """Run the reference batch through ``module`` (``module(*inputs, **kwargs)``) so that each layer
    captures the statistics of its own input; later layers see the reference batch normalized by the
    earlier layers' reference statistics, as in VBN."""
    with reference_mode(module):
        module(*inputs, **kwargs)


# --------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020)


def _rand(n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """n uniform numbers as an (n, 1, 1, 1) tensor like x, drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    return torch.rand(n, 1, 1, 1, generator=generator, device=device).to(x)


def _randint(low: int, high: int, n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, (n,), generator=generator, device=device).to(x.device)


def _brightness(x: Tensor, g: torch.Generator | None) -> Tensor:
    return x + (_rand(len(x), x, g) - 0.5)


def _saturation(x: Tensor, g: torch.Generator | None) -> Tensor:
    mean = x.mean(1, keepdim=True)
    return (x - mean) * (_rand(len(x), x, g) * 2) + mean


def _contrast(x: Tensor, g: torch.Generator | None) -> Tensor:
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(len(x), x, g) + 0.5) + mean


def _translation(x: Tensor, g: torch.Generator | None, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ratio * size pixels per axis; uncovered pixels become 0."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Source index of every output row / column, +1 for the one-pixel zero border of the padded
    # image, and every index outside the image is sent to that border (as in the official code).
    rows = (torch.arange(h, device=x.device) + _randint(-sh, sh + 1, n, x, g)[:, None] + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device) + _randint(-sw, sw + 1, n, x, g)[:, None] + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (n, h+2, w+2, C) for indexing by pixel
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: Tensor, g: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    """Set a (ratio * size)-square at a random centre to 0; the square is clipped at the image border."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _randint(0, h + (1 - ch % 2), n, x, g) - ch // 2
    left = _randint(0, w + (1 - cw % 2), n, x, g) - cw // 2
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (r >= top[:, None]) & (r < top[:, None] + ch)
    in_cols = (c >= left[:, None]) & (c < left[:, None] + cw)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)  # a product with a mask: the gradient is 0 in the hole, 1 elsewhere


_Augment = Callable[[Tensor, torch.Generator | None], Tensor]
DIFF_AUGMENT: dict[str, list[_Augment]] = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}


def parse_policy(policy: str) -> list[str]:
    """The names of a comma-separated DiffAugment policy; an unknown name is a ConfigError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for p in names:
        if p not in DIFF_AUGMENT:
            raise ConfigError(f"unknown DiffAugment policy '{p}'{closest(p, list(DIFF_AUGMENT))} "
                              f"(choices: {', '.join(DIFF_AUGMENT)})")
    return names


def diff_augment(x: Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> Tensor:
    """DiffAugment of an image batch (n, C, H, W) in [-1, 1], differentiable with respect to ``x``.

    ``color``: random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the channel mean) and
    contrast (x U(0.5, 1.5) around the image mean); ``translation``: a shift of up to 1/8 of the image
    per axis; ``cutout``: a square of half the image size. Every transform is drawn per image from
    ``generator``. Uncovered (translation) and cut-out pixels are set to 0, as in the official code
    (Zhao et al. 2020), which is mid-grey for [-1, 1] images rather than the background; D only needs
    reals and fakes to go through the same transforms, and a 0 keeps cutout a multiplication by a mask.
    """
    names = parse_policy(policy)  # checked before any random number is drawn
    if names and x.dim() != 4:
        raise ConfigError(f"DiffAugment needs image batches (n, C, H, W), got shape {tuple(x.shape)}")
    for name in names:
        for fn in DIFF_AUGMENT[name]:
            x = fn(x, generator)
    return x
