"""Assemble :class:`GANParts` from a config: networks, loss, regularizers, optimizers, prior, data."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ganforge.config import Config, OptimConfig
from ganforge.data import build_dataset
from ganforge.data.tensor import TensorData
from ganforge.losses import LOSSES, AdversarialLoss, GradientPenalty, R1Penalty, WeightClip
from ganforge.nn import build_discriminator, build_generator
from ganforge.nn.techniques import HistoricalAverage, parse_policy
from ganforge.registry import ConfigError
from ganforge.training.conditioning import Conditioning, build_head, cluster_labels
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


def build_regularizers(cfg: Config, d: nn.Module | None = None) -> list[Any]:
    loss = cfg.model.loss
    regs: list[Any] = []
    if cfg.techniques.historical_average > 0 and d is not None:
        regs.append(HistoricalAverage(d, cfg.techniques.historical_average))
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


def build_prior(cfg: Config) -> Prior:
    """G's input: noise plus the one-hot labels or InfoGAN codes the model is configured with."""
    m = cfg.model
    return Prior(m.noise, m.z_dim, m.classes, m.continuous_codes, m.class_probs)


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


def build_conditioning(cfg: Config, source: Any, loss_kind: str) -> Conditioning | None:
    """The conditioning part, after checking that the config and the data can support it."""
    m = cfg.model
    if m.conditioning == "none":
        if m.classes or m.continuous_codes:
            raise ConfigError("model.classes / model.continuous_codes need model.conditioning "
                              "(cgan, projection, acgan or infogan)")
        return None
    cond = Conditioning(m.conditioning, m.classes, m.continuous_codes, m.aux_weight)
    if m.conditioning != "infogan" and m.classes < 2:
        raise ConfigError(f"model.conditioning={m.conditioning} needs model.classes >= 2 (the number of labels)")
    if m.conditioning == "infogan" and m.classes + m.continuous_codes == 0:
        raise ConfigError("model.conditioning=infogan needs codes: model.classes and/or model.continuous_codes")
    if m.continuous_codes and m.conditioning != "infogan":
        raise ConfigError("model.continuous_codes are InfoGAN's; set model.conditioning=infogan")
    if cond.needs_real_labels and getattr(source, "labels", None) is None:
        raise ConfigError(f"model.conditioning={m.conditioning} needs labelled data; '{cfg.data.name}' has no labels")
    if loss_kind not in ("logit", "critic"):
        raise ConfigError(f"model.conditioning={m.conditioning} needs a discriminator network, "
                          f"not the '{cfg.model.loss.name}' loss")
    if cfg.techniques.feature_matching and cond.d_sees_labels:
        raise ConfigError("techniques.feature_matching is not supported with a label-conditioned D (cgan, projection)")
    return cond


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
    if cfg.model.self_condition:
        source = self_condition(cfg, source)
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
    if t.diff_augment:
        parse_policy(t.diff_augment)  # a misspelt policy fails now, not at the first step
    if cfg.model.discriminator.reference_batch:
        raise ConfigError("model.discriminator.reference_batch: reference-batch norm is for G "
                          "(its reference is a fixed batch of noise); set model.generator.reference_batch")
    prior = build_prior(cfg)
    g = generator if generator is not None else build_generator(cfg.model.generator, prior.dim, shape)
    d: nn.Module | None = None
    cond = build_conditioning(cfg, source, loss.kind)
    if loss.kind != "moment":
        if discriminator is not None:
            d = discriminator
        else:
            dcfg = cfg.model.discriminator
            if loss.kind == "energy" and dcfg.name in ("mlp", "dcgan"):
                # BEGAN's discriminator must be an auto-encoder: the one of the same family.
                dcfg = dataclasses.replace(dcfg, name=f"{dcfg.name}-autoencoder")
            if cond is not None and cond.mode == "projection":
                dcfg = dataclasses.replace(dcfg, conditioning="projection")
            d = build_discriminator(dcfg, shape, cfg.model.classes if cond is not None and cond.d_sees_labels else 0)
        if cond is not None and cond.needs_features:
            # AC-GAN's classifier / InfoGAN's Q share D's trunk: the head is a child of D, so D's
            # optimizer, checkpoints and device moves include it.
            if not hasattr(d, "forward_features"):
                raise ConfigError(f"model.conditioning={cond.mode} needs a discriminator with forward_features(x)")
            with torch.no_grad():
                was = d.training
                feature_dim = d.eval().forward_features(torch.zeros(2, *shape))[1].shape[1]
                d.train(was)
            cond.head = build_head(cond.mode, feature_dim, cfg.model.classes, cfg.model.continuous_codes)
            d.add_module("aux_head", cond.head)
    device = torch.device(cfg.train.device)
    g.to(device)
    if d is not None:
        d.to(device)
    return GANParts(
        generator=g,
        discriminator=d,
        loss=loss,
        loss_cfg=cfg.model.loss,
        prior=prior,
        data=source,
        opt_g=build_optimizer(g.parameters(), cfg.optim_g, "optim_g"),
        opt_d=build_optimizer(d.parameters(), cfg.optim_d, "optim_d") if d is not None else None,
        regularizers=build_regularizers(cfg, d),
        g_history=HistoricalAverage(g, t.historical_average) if t.historical_average > 0 else None,
        techniques=cfg.techniques,
        conditioning=cond,
    )
