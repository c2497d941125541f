"""A variational auto-encoder (Kingma & Welling 2014), composed from ganforge's own networks.

The decoder is a generator network chosen by name (``model.generator``) and the encoder is the
trunk of a discriminator network (``model.discriminator``) followed by a linear map to the mean and
log-variance of q(z|x). Pixels in [-1, 1] are modelled as Bernoulli on (x + 1) / 2, the usual
likelihood for MNIST: the decoder outputs logits ``l`` and the VAE's sample is the mean
2 sigmoid(l) - 1 = tanh(l / 2). ``forward(z)`` decodes, so a VAE samples, is exported, loaded and
evaluated exactly like a GAN generator; ``forward(x, elbo=True)`` is the training loss (the ELBO
objective calls it through the module, as a wrapper would need).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.nn import build_discriminator, build_generator, feature_dim
from ganforge.spec import DataSpec


class VAE(nn.Module):
    """Encoder trunk + Gaussian posterior head + decoder; ``negative_elbo(x)`` is the training loss."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, feature_dim: int, z_dim: int, beta: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.z_dim, self.beta = encoder, decoder, z_dim, beta
        self.posterior = nn.Linear(feature_dim, 2 * z_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x)."""
        mu, logvar = self.posterior(self.encoder(x, features=True)[1]).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def forward(self, v: Tensor, elbo: bool = False,
                generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Decode ``v = z``: the mean image 2 sigmoid(l) - 1 of p(x|z); with ``elbo``, ``v`` is a data
        batch and the result is :meth:`negative_elbo` of it."""
        if elbo:
            return self.negative_elbo(v, generator)
        return torch.tanh(self.decoder(v) / 2)

    def negative_elbo(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """-ELBO per image (nats): Bernoulli reconstruction term + beta KL(q(z|x) || N(0, I))."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        z = mu + torch.exp(0.5 * logvar) * eps  # the reparameterization trick
        logits = self.decoder(z)
        target = (x + 1) / 2
        recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean()
        loss = recon + self.beta * kl
        return loss, {"recon": recon.detach(), "kl": kl.detach()}


def build_vae(model: ModelConfig, spec: DataSpec) -> VAE:
    """A VAE whose decoder is ``model.generator`` (with a linear output) and encoder ``model.discriminator``."""
    dec_cfg = model.generator
    if dec_cfg.name == "mlp":
        # The decoder must output logits; the MLP's tanh head would squash them.
        dec_cfg = dataclasses.replace(dec_cfg, output="linear")
    decoder = build_generator(dec_cfg, spec, model.z_dim)
    if dec_cfg.name == "dcgan":
        decoder.net = decoder.net[:-1]  # drop tanh: the VAE needs logits (applied again in forward)
    encoder = build_discriminator(model.discriminator, spec)
    return VAE(encoder, decoder, feature_dim(encoder, spec), model.z_dim, beta=model.vae_beta)


def bits_per_dim(nats: float, shape: tuple[int, ...]) -> float:
    """Convert a per-image negative ELBO in nats to bits per dimension."""
    return nats / (math.log(2) * math.prod(shape))
