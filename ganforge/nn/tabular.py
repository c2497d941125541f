"""Networks for tables: CTGAN's and the tabular VAE's, registered as ``ctgan`` (G and D) and ``tvae`` (G).

- :class:`ResidualGenerator` (Xu et al. 2019): residual blocks ``h -> [relu(bn(fc(h))), h]``, then a
  linear map to the table's output width; tanh on each continuous column's alpha, Gumbel-softmax
  (tau 0.2) on every one-hot span. It returns ``{"x": activated, "logits": raw}``: the conditional
  cross-entropy term reads the logits.
- :class:`PacDiscriminator`: PacGAN (Lin et al. 2018): ``pac`` consecutive samples (with their
  condition vectors) are judged together as one, so D sees the spread of a pack; linear layers,
  LeakyReLU(0.2), dropout. It returns one output per pack.
- :class:`TabularVAE` (TVAE, Xu et al. 2019): an MLP encoder and decoder on the same transformer;
  continuous alphas are Gaussian with a learned per-output sigma (clamped to [0.01, 1]), one-hot spans
  categorical; the reconstruction is weighted by ``loss_factor`` (2, as in CTGAN's TVAE). ``forward(z)``
  decodes (alphas with their sigma's noise, clamped to [-1, 1]), ``forward(x, elbo=True)`` is the loss.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import NetConfig
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec, Span

GUMBEL_TAU = 0.2  # CTGAN's temperature for one-hot outputs


class SegmentSoftmax(nn.Module):
    """A softmax within each of many spans of the last dimension, in a handful of tensor operations
    whatever the number of spans: the spans are scattered into a padded (n, spans, widest) block
    (padding at -inf), normalised along its last axis and gathered back. A table with 30 one-hot
    columns costs what one with 3 does."""

    def __init__(self, slices: list[tuple[int, int]]) -> None:
        super().__init__()
        idx = [i for a, b in slices for i in range(a, b)]
        self.segments, self.widest = len(slices), max((b - a for a, b in slices), default=0)
        # Where each value sits in the flattened (spans, widest) block.
        flat = [k * self.widest + i - a for k, (a, b) in enumerate(slices) for i in range(a, b)]
        for name, values in (("idx", idx), ("flat", flat)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long), persistent=False)

    def forward(self, values: Tensor, log: bool = False) -> Tensor:
        """The softmax (``log``: log-softmax) of each span of ``values`` (n, len(idx)), in the order of ``idx``."""
        n = len(values)
        # index_select / index_copy: several times faster on the CPU than advanced indexing.
        padded = values.new_full((n, self.segments * self.widest), float("-inf")).index_copy(1, self.flat, values)
        fn = torch.log_softmax if log else torch.softmax
        return fn(padded.view(n, self.segments, self.widest), dim=2).flatten(1).index_select(1, self.flat)


def _span_slices(spans: tuple[Span, ...]) -> tuple[list[int], list[tuple[int, int]]]:
    """Indices of the tanh (width-1) outputs, and (start, end) of each softmax span."""
    tanh, soft, start = [], [], 0
    for s in spans:
        if s.activation == "softmax":
            soft.append((start, start + s.width))
        else:
            tanh.extend(range(start, start + s.width))
        start += s.width
    return tanh, soft


class Residual(nn.Module):
    """CTGAN's residual block: the block's output is concatenated to its input."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(i, o), nn.BatchNorm1d(o)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class ResidualGenerator(nn.Module):
    """CTGAN's generator: ``v = [z, c]`` -> residual blocks -> per-span activations."""

    def __init__(self, in_dim: int, hidden: list[int], spans: tuple[Span, ...]) -> None:
        super().__init__()
        if not spans:
            raise ConfigError("the ctgan generator needs a table's output spans (use tabular data)")
        blocks, dim = [], in_dim
        for h in hidden:
            blocks.append(Residual(dim, h))
            dim += h
        self.body = nn.Sequential(*blocks)
        width = sum(s.width for s in spans)
        self.out = nn.Linear(dim, width)
        tanh, soft = _span_slices(tuple(spans))
        self.register_buffer("tanh_idx", torch.tensor(tanh, dtype=torch.long), persistent=False)
        self.softmax = SegmentSoftmax(soft)
        # tanh outputs then softmax outputs, back to the spans' order
        order = torch.cat([self.tanh_idx, self.softmax.idx])
        self.register_buffer("unsort", torch.argsort(order), persistent=False)

    def activate(self, logits: Tensor) -> Tensor:
        """tanh on the alphas; Gumbel-softmax (Jang et al. 2017) on each one-hot span, as
        ``F.gumbel_softmax(tau=0.2)`` per span would, for all spans at once."""
        s = self.softmax
        parts = [torch.tanh(logits.index_select(1, self.tanh_idx))]
        if len(s.idx):
            soft = logits.index_select(1, s.idx)
            # Gumbel(0, 1) noise as -log(-log U) (uniforms are drawn several times faster than
            # exponentials on the CPU), from torch's global RNG, which checkpoints save and
            # restore and sampling forks and seeds: training and sampling stay reproducible.
            u = torch.rand_like(soft).clamp_(1e-10, 1.0)
            parts.append(s((soft - torch.log(-torch.log(u))) / GUMBEL_TAU))
        return torch.cat(parts, dim=1).index_select(1, self.unsort)

    def forward(self, v: Tensor) -> dict[str, Tensor]:
        logits = self.out(self.body(v))
        return {"x": self.activate(logits), "logits": logits}


class Dropout(nn.Module):
    """Inverted dropout with the mask from uniforms: the same as ``nn.Dropout`` (and drawn from the
    same global RNG), about three times faster on the CPU than its Bernoulli sampler."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p <= 0:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)


class PacDiscriminator(nn.Module):
    """CTGAN's discriminator with PacGAN packing: (n, d) samples -> (n / pac,) outputs."""

    def __init__(self, cfg: NetConfig, spec: DataSpec, c_dim: int = 0) -> None:
        super().__init__()
        self.pac, self.c_dim = max(1, cfg.pac), c_dim
        dim = (spec.size + c_dim) * self.pac
        layers: list[nn.Module] = []
        for h in cfg.hidden:
            layers += [nn.Linear(dim, h), nn.LeakyReLU(0.2)]
            if cfg.dropout > 0:
                layers.append(Dropout(cfg.dropout))
            dim = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> Any:
        h = x.flatten(1) if c is None else torch.cat([x.flatten(1), c.to(x.dtype)], dim=1)
        if len(h) % self.pac:
            raise ConfigError(f"PacGAN: the batch ({len(h)}) must be a multiple of pac ({self.pac})")
        f = self.body(h.reshape(len(h) // self.pac, -1))
        out = self.head(f).squeeze(1)
        return (out, f) if features else out


class TabularVAE(nn.Module):
    """TVAE: encoder q(z|x), decoder p(x|z) with per-output sigma; see the module doc."""

    def __init__(self, spans: tuple[Span, ...], z_dim: int, hidden: list[int], loss_factor: float = 2.0) -> None:
        super().__init__()
        if not spans:
            raise ConfigError("the tvae generator needs a table's output spans (use tabular data)")
        width = sum(s.width for s in spans)
        enc: list[nn.Module] = []
        dim = width
        for h in hidden:
            enc += [nn.Linear(dim, h), nn.ReLU()]
            dim = h
        self.encoder = nn.Sequential(*enc)
        self.mu, self.logvar = nn.Linear(dim, z_dim), nn.Linear(dim, z_dim)
        dec: list[nn.Module] = []
        dim = z_dim
        for h in hidden:
            dec += [nn.Linear(dim, h), nn.ReLU()]
            dim = h
        self.decoder = nn.Sequential(*dec, nn.Linear(dim, width))
        self.sigma = nn.Parameter(torch.full((width,), 0.1))
        self.loss_factor = loss_factor
        tanh, self.soft = _span_slices(tuple(spans))
        self.register_buffer("tanh_idx", torch.tensor(tanh, dtype=torch.long), persistent=False)

    def _sigma(self) -> Tensor:
        # CTGAN clamps sigma's data after each step; clamping on read has the same effect.
        return self.sigma.clamp(0.01, 1.0)

    def forward(self, v: Tensor, elbo: bool = False, generator: torch.Generator | None = None) -> Any:
        if elbo:
            return self.negative_elbo(v, generator)
        out = self.decoder(v)
        x = torch.empty_like(out)
        t = self.tanh_idx
        if len(t):
            noise = torch.randn(len(out), len(t)).to(out)
            x[:, t] = (torch.tanh(out[:, t]) + self._sigma()[t] * noise).clamp(-1, 1)
        for a, b in self.soft:
            x[:, a:b] = torch.softmax(out[:, a:b], dim=1)
        return x

    def negative_elbo(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        rec = self.decoder(mu + eps * torch.exp(0.5 * logvar))
        n, t = len(x), self.tanh_idx
        sigma = self._sigma()[t]
        loss = (((x[:, t] - torch.tanh(rec[:, t])) ** 2) / (2 * sigma ** 2)).sum() + torch.log(sigma).sum() * n
        for a, b in self.soft:
            loss = loss + F.cross_entropy(rec[:, a:b], x[:, a:b].argmax(1), reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
        rec_loss = loss * self.loss_factor / n
        return rec_loss + kl / n, {"reconstruction": rec_loss.detach(), "kl": (kl / n).detach()}
