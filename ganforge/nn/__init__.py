"""Networks, chosen by name from :data:`GENERATORS` and :data:`DISCRIMINATORS`.

A builder takes ``(cfg, shape, z_dim_or_none, c_dim)`` and returns an ``nn.Module``; register your
own with :func:`register_generator` / :func:`register_discriminator`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganforge.config import NetConfig
from ganforge.nn.dcgan import DCGANAutoencoderDiscriminator, DCGANDiscriminator, DCGANGenerator
from ganforge.nn.mlp import MLPAutoencoderDiscriminator, MLPDiscriminator, MLPGenerator
from ganforge.registry import ConfigError, Registry

GeneratorBuilder = Callable[[NetConfig, int, tuple[int, ...], int], nn.Module]
DiscriminatorBuilder = Callable[[NetConfig, tuple[int, ...], int], nn.Module]

GENERATORS: Registry[GeneratorBuilder] = Registry("generator network")
DISCRIMINATORS: Registry[DiscriminatorBuilder] = Registry("discriminator network")


def register_generator(name: str, builder: GeneratorBuilder, help: str = "") -> None:
    """Register ``builder(cfg, z_dim, out_shape, c_dim) -> nn.Module`` as a generator."""
    GENERATORS.register(name, builder, help=help)


def register_discriminator(name: str, builder: DiscriminatorBuilder, help: str = "") -> None:
    """Register ``builder(cfg, in_shape, c_dim) -> nn.Module`` as a discriminator."""
    DISCRIMINATORS.register(name, builder, help=help)


register_generator("mlp", MLPGenerator, "the original paper's MLP generator")
register_discriminator("mlp", MLPDiscriminator, "the original paper's MLP discriminator")
register_discriminator("mlp-autoencoder", MLPAutoencoderDiscriminator,
                       "BEGAN's auto-encoder discriminator (outputs reconstruction errors)")
register_generator("dcgan", DCGANGenerator, "DCGAN generator for 28/32/64-pixel images (Radford et al. 2016)")
register_discriminator("dcgan", DCGANDiscriminator, "DCGAN discriminator for 28/32/64-pixel images")
register_discriminator("dcgan-autoencoder", DCGANAutoencoderDiscriminator,
                       "BEGAN's auto-encoder discriminator with DCGAN convolutions (outputs reconstruction errors)")


def build_generator(cfg: NetConfig, z_dim: int, out_shape: tuple[int, ...], c_dim: int = 0) -> nn.Module:
    """The named generator; with ``cfg.reference_batch``, its 2-D batch norm becomes reference-batch norm."""
    net = GENERATORS.get(cfg.name)(cfg, z_dim, out_shape, c_dim)
    if cfg.reference_batch:
        from ganforge.nn.techniques import RefBatchNorm2d, use_reference_batch_norm

        use_reference_batch_norm(net)
        if not any(isinstance(m, RefBatchNorm2d) for m in net.modules()):
            raise ConfigError(f"model.generator.reference_batch: the '{cfg.name}' generator has no 2-D batch "
                              "norm to take reference statistics (use dcgan)")
    return net


def build_discriminator(cfg: NetConfig, in_shape: tuple[int, ...], c_dim: int = 0) -> nn.Module:
    return DISCRIMINATORS.get(cfg.name)(cfg, in_shape, c_dim)


def module_device(module: nn.Module) -> torch.device:
    """Where a module's parameters live (the CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
