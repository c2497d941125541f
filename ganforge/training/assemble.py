"""Assemble :class:`GANParts` from a config: networks, loss, regularizers, optimizers, prior, data."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganforge.config import Config, OptimConfig
from ganforge.data import build_dataset
from ganforge.data.tensor import TensorData
from ganforge.losses import LOSSES, AdversarialLoss, GradientPenalty, R1Penalty, WeightClip
from ganforge.nn import build_discriminator, build_generator
from ganforge.registry import ConfigError
from ganforge.training.trainer import GANParts, Prior


def build_optimizer(params: Any, cfg: OptimConfig, which: str) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or RMSProp from a typed config."""
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    raise ConfigError(f"{which}.name: unknown optimizer '{cfg.name}' (choices: adam, sgd, rmsprop)")


def build_regularizers(cfg: Config) -> list[Any]:
    loss = cfg.model.loss
    regs: list[Any] = []
    if loss.weight_clip > 0:
        regs.append(WeightClip(loss.weight_clip))
    if loss.gradient_penalty > 0:
        regs.append(GradientPenalty(loss.gradient_penalty, loss.reg_interval))
    if loss.r1 > 0:
        regs.append(R1Penalty(loss.r1, loss.reg_interval))
    return regs


def as_data_source(data: Any, cfg: Config) -> Any:
    """A tensor, a registered data set name, or any object with ``shape`` and ``sample``."""
    if data is None:
        return build_dataset(cfg.data.name, cfg.data.options)
    if isinstance(data, str):
        return build_dataset(data, cfg.data.options if data == cfg.data.name else {})
    if isinstance(data, torch.Tensor):
        return TensorData(data.float())
    if hasattr(data, "sample") and hasattr(data, "shape"):
        return data
    raise ConfigError(f"cannot train on a {type(data).__name__}: pass a tensor, a data set name, "
                      "or an object with .shape and .sample(n, generator)")


# A VAE has no adversary: the trainer runs its loss on real data alone (see Trainer.g_loss).
ELBO = AdversarialLoss("elbo", None, None, "elbo", False, "VAE: negative evidence lower bound")


def assemble_vae(cfg: Config, source: Any, vae: nn.Module | None = None) -> GANParts:
    """The VAE baseline as parts: the VAE in the generator's seat, no discriminator."""
    from ganforge.baselines.vae import build_vae

    model = vae if vae is not None else build_vae(cfg.model, tuple(source.shape))
    model.to(torch.device(cfg.train.device))
    return GANParts(generator=model, discriminator=None, loss=ELBO, loss_cfg=cfg.model.loss,
                    prior=Prior("normal", cfg.model.z_dim), data=source,
                    opt_g=build_optimizer(model.parameters(), cfg.optim_g, "optim_g"), opt_d=None,
                    techniques=cfg.techniques)


def assemble(cfg: Config, data: Any = None, generator: nn.Module | None = None,
             discriminator: nn.Module | None = None) -> GANParts:
    """Build every part named in ``cfg``; user modules replace the named networks."""
    source = as_data_source(data, cfg)
    shape = tuple(source.shape)
    if cfg.model.family == "vae":
        return assemble_vae(cfg, source, generator)
    if cfg.model.family != "gan":
        raise ConfigError(f"model.family: unknown family '{cfg.model.family}' (choices: gan, vae)")
    loss = LOSSES.get(cfg.model.loss.name)
    t = cfg.techniques
    if t.feature_matching and loss.kind == "moment":
        raise ConfigError("techniques.feature_matching needs a discriminator; the 'mmd' loss has none")
    if (t.label_smoothing or t.label_flip) and not loss.soft_targets:
        raise ConfigError(f"techniques.label_smoothing/label_flip apply to losses with targets, "
                          f"not '{loss.name}' (use minimax, nonsaturating or lsgan)")
    if not 0 <= t.label_smoothing < 1 or not 0 <= t.label_flip < 1:
        raise ConfigError("techniques.label_smoothing and label_flip must lie in [0, 1)")
    g = generator if generator is not None else build_generator(cfg.model.generator, cfg.model.z_dim, shape)
    d: nn.Module | None = None
    if loss.kind != "moment":
        if discriminator is not None:
            d = discriminator
        else:
            dcfg = cfg.model.discriminator
            if loss.kind == "energy" and dcfg.name == "mlp":
                # BEGAN's discriminator must be an auto-encoder; pick the MLP one for the MLP default.
                dcfg = type(dcfg)(**{**dcfg.__dict__, "name": "mlp-autoencoder"})
            d = build_discriminator(dcfg, shape)
    device = torch.device(cfg.train.device)
    g.to(device)
    if d is not None:
        d.to(device)
    return GANParts(
        generator=g,
        discriminator=d,
        loss=loss,
        loss_cfg=cfg.model.loss,
        prior=Prior(cfg.model.noise, cfg.model.z_dim),
        data=source,
        opt_g=build_optimizer(g.parameters(), cfg.optim_g, "optim_g"),
        opt_d=build_optimizer(d.parameters(), cfg.optim_d, "optim_d") if d is not None else None,
        regularizers=build_regularizers(cfg),
        techniques=cfg.techniques,
    )
