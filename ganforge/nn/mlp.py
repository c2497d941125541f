"""Multilayer perceptrons: the original paper's networks, for toy data and flattened images.

Every network takes ``(z, c)`` / ``(x, c)``; ``c_dim = 0`` means unconditional and ``c`` may be
omitted. A conditional MLP concatenates ``c`` to its input (CGAN). Discriminators return their
features too when called with ``features=True`` (one forward call, so a wrapper such as
DistributedDataParallel sees every use). A generator built for data with output spans (a table's
columns) passes each span through its own activation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganforge.config import NetConfig
from ganforge.nn.techniques import MinibatchDiscrimination
from ganforge.registry import ConfigError
from ganforge.spec import Span

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": lambda: nn.Tanh(),
    "elu": lambda: nn.ELU(),
}
_OUTPUTS = {"linear": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}' (choices: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


def mlp_trunk(in_dim: int, cfg: NetConfig, allow_bn: bool = True) -> tuple[nn.Sequential, int]:
    """Hidden layers of an MLP as configured; returns the trunk and its output width."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in cfg.hidden:
        lin = nn.Linear(width, h)
        layers.append(nn.utils.parametrizations.spectral_norm(lin) if cfg.spectral_norm else lin)
        if cfg.batch_norm and allow_bn:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation(cfg.activation))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    return nn.Sequential(*layers), width


def _with_condition(v: Tensor, c: Tensor | None, c_dim: int) -> Tensor:
    if c_dim == 0:
        return v
    if c is None:
        raise ValueError(f"this network is conditional (c_dim={c_dim}): pass c")
    return torch.cat([v, c.to(v.dtype)], dim=1)


class SpanActivation(nn.Module):
    """Applies each output span's activation to its slice of the last dimension (softmax within
    the span), as CTGAN's generator does for a table's continuous and one-hot columns."""

    def __init__(self, spans: tuple[Span, ...]) -> None:
        super().__init__()
        self.spans = tuple(spans)

    def forward(self, x: Tensor) -> Tensor:
        out, start = [], 0
        for span in self.spans:
            part = x[:, start:start + span.width]
            start += span.width
            if span.activation == "tanh":
                part = torch.tanh(part)
            elif span.activation == "sigmoid":
                part = torch.sigmoid(part)
            elif span.activation == "softmax":
                part = torch.softmax(part, dim=1)
            out.append(part)
        return torch.cat(out, dim=1)

    def extra_repr(self) -> str:
        return ", ".join(f"{s.width}:{s.activation}" for s in self.spans)


class MLPGenerator(nn.Module):
    """z (and c) -> hidden layers -> a sample of ``out_shape`` through the output head (or, with
    ``spans``, through each span's own activation)."""

    def __init__(self, cfg: NetConfig, z_dim: int, out_shape: tuple[int, ...], c_dim: int = 0,
                 spans: tuple[Span, ...] = ()) -> None:
        super().__init__()
        if cfg.output not in _OUTPUTS:
            raise ConfigError(f"unknown output '{cfg.output}' (choices: {', '.join(_OUTPUTS)})")
        self.z_dim, self.c_dim, self.out_shape = z_dim, c_dim, tuple(out_shape)
        self.trunk, width = mlp_trunk(z_dim + c_dim, cfg)
        self.out = nn.Linear(width, math.prod(out_shape))
        self.head = SpanActivation(spans) if spans else _OUTPUTS[cfg.output]()

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.trunk(_with_condition(z.flatten(1), c, self.c_dim))
        return self.head(self.out(h)).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """x (and c) -> hidden layers (the features) -> one raw output per sample."""

    def __init__(self, cfg: NetConfig, in_shape: tuple[int, ...], c_dim: int = 0) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.trunk, width = mlp_trunk(math.prod(in_shape) + c_dim, cfg)
        k = cfg.minibatch_discrimination
        self.mbd = MinibatchDiscrimination(width, k) if k else nn.Identity()
        lin = nn.Linear(width + k, 1)
        self.head = nn.utils.parametrizations.spectral_norm(lin) if cfg.spectral_norm else lin

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """D's raw output; with ``features``, also the penultimate activations (feature matching,
        AC-GAN's classifier, InfoGAN's Q, the VAE's encoder read them)."""
        h = self.trunk(_with_condition(x.flatten(1), c, self.c_dim))
        out = self.head(self.mbd(h)).squeeze(1)
        return (out, h) if features else out


class MLPAutoencoderDiscriminator(nn.Module):
    """BEGAN's discriminator: an auto-encoder whose output is each sample's mean L1 reconstruction error."""

    def __init__(self, cfg: NetConfig, in_shape: tuple[int, ...], c_dim: int = 0) -> None:
        super().__init__()
        dim = math.prod(in_shape)
        self.c_dim = c_dim
        self.encoder, width = mlp_trunk(dim + c_dim, cfg, allow_bn=False)
        code = max(2, width // 2)
        self.code = nn.Linear(width, code)
        dec_cfg = NetConfig(hidden=list(reversed(cfg.hidden)), activation=cfg.activation)
        self.decoder, dwidth = mlp_trunk(code, dec_cfg, allow_bn=False)
        self.out = nn.Linear(dwidth, dim)

    def reconstruct(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.out(self.decoder(self._code(x, c))).view_as(x)

    def _code(self, x: Tensor, c: Tensor | None) -> Tensor:
        return self.code(self.encoder(_with_condition(x.flatten(1), c, self.c_dim)))

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Each sample's mean L1 reconstruction error; with ``features``, also the code."""
        h = self._code(x, c)
        err = (self.out(self.decoder(h)).view_as(x) - x).abs().flatten(1).mean(1)
        return (err, h) if features else err
