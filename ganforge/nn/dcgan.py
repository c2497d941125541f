"""DCGAN (Radford et al. 2016) for 28x28, 32x32 and 64x64 images with any channel count.

G: z (and c) -> "project and reshape" to a 7x7 (28) or 4x4 (32, 64) map -> transposed convolutions
(kernel 4, stride 2) that double the size and halve the channels -> tanh. D mirrors it with strided
convolutions (kernel 4, stride 2) -> flatten -> one output. No pooling; batch norm in both except on
D's input layer and G's output layer; ReLU in G, LeakyReLU(0.2) in D. At resolution 28 and width 64
these are exactly the "dcgan-28" networks of the plain baseline (../shared/bench/plain_dcgan.py).

Options from :class:`~ganforge.config.NetConfig`: ``width``, ``batch_norm`` (default on),
``spectral_norm`` (D), ``dropout`` (D), ``minibatch_std`` (D), and ``c_dim`` conditioning: c is
concatenated to z in G and enters D as constant feature maps beside the image (CGAN), or through an
inner product with D's features when ``conditioning: projection`` (Miyato & Koyama 2018).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.config import NetConfig
from ganforge.nn.techniques import MinibatchDiscrimination
from ganforge.registry import ConfigError

_START = {28: 7, 32: 4, 64: 4}


def _layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, start size, number of stride-2 layers) for an image shape (C, H, W)."""
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in _START:
        raise ConfigError(f"DCGAN networks need square images of size 28, 32 or 64, got shape {tuple(shape)}")
    size = shape[1]
    start = _START[size]
    return shape[0], start, (size // start).bit_length() - 1


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


class MinibatchStd(nn.Module):
    """Appends one feature map: the mean over features of the standard deviation across the batch
    (Karras et al. 2018), so D can see a batch's lack of variety (a collapse signal)."""

    def forward(self, x: Tensor) -> Tensor:
        std = x.float().std(dim=0, unbiased=False).mean().to(x.dtype)
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class DCGANGenerator(nn.Module):
    """z (n, z_dim) and optional one-hot c (n, c_dim) -> images (n, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: NetConfig, z_dim: int, out_shape: tuple[int, ...], c_dim: int = 0) -> None:
        super().__init__()
        channels, start, ups = _layout(out_shape)
        bn = cfg.batch_norm is not False
        self.z_dim, self.c_dim, self.out_shape = z_dim, c_dim, tuple(out_shape)
        ch = cfg.width * 2 ** ups
        self.fc = cfg.fc
        layers: list[nn.Module] = []
        if cfg.fc:  # InfoGAN's G: z -> FC -> FC -> reshape, then the transposed convolutions
            for n_in, n_out in ((z_dim + c_dim, cfg.fc), (cfg.fc, ch * start * start)):
                layers.append(nn.Linear(n_in, n_out, bias=not bn))
                layers += [nn.BatchNorm1d(n_out)] if bn else []
                layers.append(nn.ReLU())
            layers.append(nn.Unflatten(1, (ch, start, start)))
        else:
            # The projection is a transposed conv on a 1x1 map: the same map as a Linear + reshape.
            layers.append(nn.ConvTranspose2d(z_dim + c_dim, ch, start, 1, 0, bias=not bn))
            layers += [nn.BatchNorm2d(ch)] if bn else []
            layers.append(nn.ReLU())
        for i in range(ups):
            last = i == ups - 1
            out_ch = channels if last else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out_ch, 4, 2, 1, bias=last or not bn))
            if not last:
                layers += [nn.BatchNorm2d(out_ch)] if bn else []
                layers.append(nn.ReLU())
            ch = out_ch
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if self.c_dim:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}): pass c")
            z = torch.cat([z, c.to(z.dtype)], dim=1)
        return self.net(z.reshape(len(z), -1) if self.fc else z.reshape(len(z), -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Images (and optional one-hot c) -> one raw output per sample; ``features`` for feature matching."""

    def __init__(self, cfg: NetConfig, in_shape: tuple[int, ...], c_dim: int = 0) -> None:
        super().__init__()
        channels, start, downs = _layout(in_shape)
        bn = cfg.batch_norm is not False and not cfg.spectral_norm  # SN replaces BN's conditioning role in D
        self.c_dim, self.projection = c_dim, cfg.conditioning == "projection"
        if cfg.conditioning not in ("concat", "projection"):
            raise ConfigError(f"unknown conditioning '{cfg.conditioning}' (choices: concat, projection)")
        ch_in = channels + (c_dim if c_dim and not self.projection else 0)
        layers: list[nn.Module] = []
        ch = cfg.width
        for i in range(downs):
            layers.append(_sn(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=i == 0 or not bn), cfg.spectral_norm))
            if i > 0 and bn:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2))
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            ch_in, ch = ch, ch * 2
        if cfg.minibatch_std:
            layers.append(MinibatchStd())
            ch_in += 1
        layers.append(nn.Flatten())
        self.feature_dim = ch_in * start * start
        if cfg.fc:  # InfoGAN's D: a fully connected layer; its output are the features heads read
            layers.append(_sn(nn.Linear(self.feature_dim, cfg.fc, bias=not bn), cfg.spectral_norm))
            layers += [nn.BatchNorm1d(cfg.fc)] if bn else []
            layers.append(nn.LeakyReLU(0.2))
            self.feature_dim = cfg.fc
        self.trunk = nn.Sequential(*layers)
        # Minibatch discrimination sits between the features and the output, so feature matching
        # and the projection term keep using the plain features.
        k = cfg.minibatch_discrimination
        self.mbd = MinibatchDiscrimination(self.feature_dim, k) if k else nn.Identity()
        self.head = _sn(nn.Linear(self.feature_dim + k, 1), cfg.spectral_norm)
        if c_dim and self.projection:
            self.embed = _sn(nn.Linear(c_dim, self.feature_dim, bias=False), cfg.spectral_norm)

    def _features(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The flattened last convolutional (or FC) features."""
        if self.c_dim and not self.projection:
            if c is None:
                raise ValueError(f"this discriminator is conditional (c_dim={self.c_dim}): pass c")
            maps = c.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], dim=1)
        return self.trunk(x)

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """D's raw output; with ``features``, also its features (feature matching, AC-GAN's
        classifier, InfoGAN's Q and the VAE's encoder read them), in the same forward call."""
        h = self._features(x, c)
        out = self.head(self.mbd(h)).squeeze(1)
        if self.c_dim and self.projection:
            if c is None:
                raise ValueError(f"this discriminator is conditional (c_dim={self.c_dim}): pass c")
            out = out + (self.embed(c.to(h.dtype)) * h).sum(1)
        return (out, h) if features else out


class DCGANAutoencoderDiscriminator(nn.Module):
    """BEGAN's discriminator (Berthelot et al. 2017) in DCGAN shape: strided convolutions -> a code of
    ``fc`` units (64 when 0) -> a mirror of them with transposed convolutions; the output is each
    image's mean L1 reconstruction error. No batch norm (BEGAN uses none); ``activation`` as configured
    (the paper's ELU, or LeakyReLU)."""

    def __init__(self, cfg: NetConfig, in_shape: tuple[int, ...], c_dim: int = 0) -> None:
        super().__init__()
        if c_dim:
            raise ConfigError("the dcgan-autoencoder discriminator is unconditional (BEGAN)")
        from ganforge.nn.mlp import activation

        channels, start, downs = _layout(in_shape)
        enc: list[nn.Module] = []
        ch_in, ch = channels, cfg.width
        for _ in range(downs):
            enc += [nn.Conv2d(ch_in, ch, 4, 2, 1), activation(cfg.activation)]
            ch_in, ch = ch, ch * 2
        code = cfg.fc or 64
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(ch_in * start * start, code))
        dec: list[nn.Module] = [nn.Linear(code, ch_in * start * start), activation(cfg.activation),
                                nn.Unflatten(1, (ch_in, start, start))]
        for i in range(downs):
            last = i == downs - 1
            out_ch = channels if last else ch_in // 2
            dec.append(nn.ConvTranspose2d(ch_in, out_ch, 4, 2, 1))
            if not last:
                dec.append(activation(cfg.activation))
            ch_in = out_ch
        self.decoder = nn.Sequential(*dec)

    def reconstruct(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.decoder(self.encoder(x))

    def forward(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Each image's mean L1 reconstruction error; with ``features``, also the code."""
        h = self.encoder(x)
        err = (self.decoder(h) - x).abs().flatten(1).mean(1)
        return (err, h) if features else err

