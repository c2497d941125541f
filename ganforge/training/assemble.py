"""Assemble :class:`GANParts` from a config: data, networks, objective, optimizers, prior."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ganforge.config import Config, OptimConfig
from ganforge.data import build_dataset
from ganforge.data.clusters import cluster_labels
from ganforge.data.source import as_source
from ganforge.data.tensor import TensorData
from ganforge.generator import Prior, build_generator_module
from ganforge.nn import WithHead, build_discriminator, feature_dim
from ganforge.objectives import OBJECTIVES, Setup, objective_name
from ganforge.objectives.auxiliary import build_head, check_mode
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec
from ganforge.training.caption_encoder import EncoderCache, fit_caption_encoder, needs_caption_encoder
from ganforge.training.trainer import GANParts


def build_optimizer(params: Any, cfg: OptimConfig, which: str) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or RMSProp from a typed config."""
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                fused=cfg.fused or None)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    raise ConfigError(f"{which}.name: unknown optimizer '{cfg.name}' (choices: adam, sgd, rmsprop)")


def as_data_source(data: Any, cfg: Config) -> Any:
    """A data source from a registered data set name (default: the config's), a tensor, or any
    object with ``spec`` and ``batch`` (or ``shape`` and ``sample``)."""
    if data is None:
        return build_dataset(cfg.data.name, cfg.data.options, cfg.data.path)
    if isinstance(data, str):
        same = data == cfg.data.name
        return build_dataset(data, cfg.data.options if same else {}, cfg.data.path if same else "")
    if isinstance(data, torch.Tensor):
        return TensorData(data.float() if data.is_floating_point() else data)
    return as_source(data)


def build_prior(cfg: Config, spec: DataSpec | None = None) -> Prior:
    """G's input: noise plus the one-hot labels, InfoGAN codes or data conditions the model gets."""
    return Prior.from_model(cfg.model, spec.condition_dim if spec is not None else 0)


def self_condition(cfg: Config, source: Any) -> Any:
    """Self-conditioning: the data with k-means cluster ids as its labels, and ``cfg.model`` set to
    draw classes as often as the clusters occur (so G's output distribution stays the data's).

    This is the idea of Liu et al. (2020), "Diverse image generation via self-conditioned GANs",
    with clusters of pixels taken once rather than of D's features re-taken during training; no
    label of the data set is read. The clustering is seeded, so a resumed run gets the same one.
    """
    m, k = cfg.model, cfg.model.self_condition
    if m.conditioning not in ("cgan", "projection", "acgan"):
        raise ConfigError("model.self_condition needs model.conditioning cgan, projection or acgan "
                          f"(got '{m.conditioning}')")
    if m.classes not in (0, k):
        raise ConfigError(f"model.self_condition={k} sets the number of classes; model.classes is {m.classes}")
    x = getattr(source, "x", None)
    if not isinstance(x, torch.Tensor) or not 2 <= k <= len(x) // 2:
        raise ConfigError(f"model.self_condition={k}: needs in-memory data with at least {2 * max(k, 2)} samples "
                          "and at least 2 clusters")
    labels = cluster_labels(x, k, seed=cfg.train.seed)
    m.classes = k
    m.class_probs = [round(float(c), 6) for c in torch.bincount(labels, minlength=k) / len(labels)]
    return TensorData(x, labels)


def check_conditioning(cfg: Config, spec: DataSpec, needs_d: bool) -> str:
    """The conditioning mode, after checking that the config and the data can support it."""
    m = cfg.model
    mode = check_mode(m.conditioning)
    if mode == "none":
        if m.classes or m.continuous_codes:
            raise ConfigError("model.classes / model.continuous_codes need model.conditioning "
                              "(cgan, projection, acgan or infogan)")
        return mode
    if mode != "infogan" and m.classes < 2:
        raise ConfigError(f"model.conditioning={mode} needs model.classes >= 2 (the number of labels)")
    if mode == "infogan" and m.classes + m.continuous_codes == 0:
        raise ConfigError("model.conditioning=infogan needs codes: model.classes and/or model.continuous_codes")
    if m.continuous_codes and mode != "infogan":
        raise ConfigError("model.continuous_codes are InfoGAN's; set model.conditioning=infogan")
    if mode in ("cgan", "projection", "acgan") and not spec.classes:
        raise ConfigError(f"model.conditioning={mode} needs labelled data; '{cfg.data.name}' has no labels")
    if not needs_d:
        raise ConfigError(f"model.conditioning={mode} needs a discriminator network, "
                          f"not the '{objective_name(cfg)}' objective")
    return mode


def build_d(cfg: Config, spec: DataSpec, kind: str, mode: str) -> nn.Module:
    """The configured discriminator: BEGAN's auto-encoder variant, a projection D, a head on its features."""
    dcfg = cfg.model.discriminator
    if kind == "autoencoder" and dcfg.name in ("mlp", "dcgan"):
        # BEGAN's discriminator must be an auto-encoder: the one of the same family.
        dcfg = dataclasses.replace(dcfg, name=f"{dcfg.name}-autoencoder")
    if mode == "projection":
        dcfg = dataclasses.replace(dcfg, conditioning="projection")
    c_dim = cfg.model.classes if mode in ("cgan", "projection") else spec.condition_dim
    return build_discriminator(dcfg, spec, c_dim)


def add_head(d: nn.Module, cfg: Config, spec: DataSpec, mode: str) -> nn.Module:
    """AC-GAN's classifier / InfoGAN's Q share D's trunk: D becomes D with a head on its features."""
    if mode not in ("acgan", "infogan"):
        return d
    m = cfg.model
    head = build_head(mode, feature_dim(d, spec), m.classes, m.continuous_codes)
    assert head is not None
    return WithHead(d, head)


def assemble(cfg: Config, data: Any = None, generator: nn.Module | None = None,
             discriminator: nn.Module | None = None, encoders: EncoderCache | None = None) -> GANParts:
    """Build every part named in ``cfg``; user modules replace the named networks. Captioned data
    gets its caption encoder here, from ``encoders`` (a run's cache and checkpoint) or fitted once."""
    source = as_data_source(data, cfg)
    if needs_caption_encoder(source):
        fit_caption_encoder(source, encoders)
    if cfg.model.self_condition:
        source = self_condition(cfg, source)
    spec: DataSpec = source.spec
    if cfg.model.family not in ("gan", "vae"):
        raise ConfigError(f"model.family: unknown family '{cfg.model.family}' (choices: gan, vae)")
    if cfg.model.discriminator.reference_batch:
        raise ConfigError("model.discriminator.reference_batch: reference-batch norm is for G "
                          "(its reference is a fixed batch of noise); set model.generator.reference_batch")
    kind = OBJECTIVES.get(objective_name(cfg))
    tt = cfg.model.t2i
    if (tt.cls or tt.interpolate or tt.mode_seeking) and objective_name(cfg) != "adversarial":
        raise ConfigError(f"model.t2i (GAN-CLS, GAN-INT, mode seeking) are terms of the adversarial objective, "
                          f"not '{objective_name(cfg)}'")
    mode = check_conditioning(cfg, spec, kind.discriminator is not None)
    prior = build_prior(cfg, spec)
    g = generator if generator is not None else build_generator_module(cfg.model, spec, prior.dim)
    d: nn.Module | None = None
    if kind.discriminator is not None:
        d = discriminator if discriminator is not None else build_d(cfg, spec, kind.discriminator, mode)
        d = add_head(d, cfg, spec, mode)
    device = torch.device(cfg.train.device)
    g.to(device)
    if d is not None:
        d.to(device)
    objective = kind.build(Setup(cfg, g, d, prior, spec, source))
    return GANParts(
        generator=g,
        discriminator=d,
        objective=objective,
        prior=prior,
        data=source,
        opt_g=build_optimizer(g.parameters(), cfg.optim_g, "optim_g"),
        opt_d=build_optimizer(d.parameters(), cfg.optim_d, "optim_d") if d is not None else None,
        spec=spec,
        transform=getattr(source, "transform", None),
    )
