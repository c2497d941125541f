"""Objectives chosen by name (``model.objective``; by default from ``model.loss.name`` and the family).

Registered here: ``adversarial`` (the losses of :data:`~ganforge.objectives.losses.LOSSES` with
conditioning, auxiliary terms, techniques and penalties as parts), ``ctgan``, ``began``, ``mmd``,
``elbo``, and for text ``mle``, ``seqgan`` and ``gumbel`` (:mod:`ganforge.objectives.text`).
Your own: :func:`register_objective` (see docs/guide/own-objective.md).
"""
from __future__ import annotations

from collections.abc import Callable

from ganforge.config import Config
from ganforge.nn.techniques import HistoricalAverage, parse_policy
from ganforge.objectives.adversarial import AdversarialObjective, BEGANBalance, d_targets, instance_noise_std
from ganforge.objectives.auxiliary import (
    CaptionInterpolation,
    ConditionalCrossEntropy,
    DataCondition,
    LabelCondition,
    ModeSeeking,
    build_term,
    check_mode,
)
from ganforge.objectives.base import (
    OBJECTIVES,
    Batch,
    Game,
    Objective,
    ObjectiveSpec,
    Phase,
    Setup,
    readout,
    register_objective,
)
from ganforge.objectives.losses import LOSSES, AdversarialLoss, began_d_loss, began_g_loss, register_loss
from ganforge.objectives.moments import ELBOObjective, MMDObjective
from ganforge.objectives.regularizers import GradientPenalty, R1Penalty, WeightClip
from ganforge.objectives.text import TextObjective, build_text_objective
from ganforge.registry import ConfigError

__all__ = ["AdversarialLoss", "AdversarialObjective", "BEGANBalance", "Batch", "ELBOObjective", "Game",
           "GradientPenalty", "LOSSES", "MMDObjective", "OBJECTIVES", "Objective", "ObjectiveSpec", "Phase",
           "R1Penalty", "Setup", "TextObjective", "WeightClip", "build_adversarial", "d_targets", "instance_noise_std",
           "objective_name", "readout", "register_loss", "register_objective"]

BEGAN_LOSS = AdversarialLoss("began", began_d_loss, began_g_loss, "critic", False,
                             "BEGAN: L_D = L(x) - k_t L(G(z)), L_G = L(G(z)) on auto-encoder errors")


def objective_name(cfg: Config) -> str:
    """``model.objective``, or the one the loss and family imply: ``elbo`` for a VAE, ``began`` and
    ``mmd`` for those losses, ``adversarial`` for every registered adversarial loss."""
    m = cfg.model
    if m.objective:
        return m.objective
    if m.family == "vae":
        return "elbo"
    if m.loss.name in OBJECTIVES:
        return m.loss.name
    if m.loss.name not in LOSSES:
        LOSSES.get(m.loss.name)  # the one-line error naming the closest loss
    return "adversarial"


def build_adversarial(setup: Setup, balance: BEGANBalance | None = None,
                loss: AdversarialLoss | None = None) -> AdversarialObjective:
    """The adversarial objective a config describes, after checking that its parts fit together."""
    cfg, m, t = setup.cfg, setup.cfg.model, setup.cfg.techniques
    loss = loss if loss is not None else LOSSES.get(m.loss.name)
    if (t.label_smoothing or t.label_flip) and not loss.soft_targets:
        raise ConfigError(f"techniques.label_smoothing/label_flip apply to losses with targets, "
                          f"not '{loss.name}' (use minimax, nonsaturating or lsgan)")
    if not 0 <= t.label_smoothing < 1 or not 0 <= t.label_flip < 1:
        raise ConfigError("techniques.label_smoothing and label_flip must lie in [0, 1)")
    if t.diff_augment:
        parse_policy(t.diff_augment)  # a misspelt policy fails now, not at the first step
    mode = check_mode(m.conditioning)
    condition = (LabelCondition(m.classes) if mode in ("cgan", "projection")
                 else DataCondition() if setup.spec.condition_dim else None)
    if t.feature_matching and condition is not None:
        raise ConfigError("techniques.feature_matching is not supported with a conditioned D (cgan, projection)")
    penalties: list[GradientPenalty | R1Penalty] = []
    pac = m.discriminator.pac
    if pac < 1 or cfg.train.batch_size % pac:
        raise ConfigError(f"model.discriminator.pac={pac}: must be at least 1 and divide train.batch_size "
                          f"({cfg.train.batch_size})")
    if pac > 1 and not hasattr(setup.discriminator, "pac"):
        raise ConfigError(f"model.discriminator.pac={pac}: the '{m.discriminator.name}' discriminator does not "
                          "pack samples (use ctgan)")
    if m.loss.reg_interval < 1:
        raise ConfigError(f"model.loss.reg_interval must be at least 1, got {m.loss.reg_interval}")
    if m.loss.gradient_penalty > 0:
        penalties.append(GradientPenalty(m.loss.gradient_penalty, m.loss.reg_interval, pack=m.discriminator.pac))
    if m.loss.r1 > 0:
        penalties.append(R1Penalty(m.loss.r1, m.loss.reg_interval))
    assert setup.discriminator is not None
    ha = t.historical_average
    tt = m.t2i
    if (tt.cls or tt.interpolate or tt.mode_seeking) and not setup.spec.extra.get("captions"):
        raise ConfigError(f"model.t2i (GAN-CLS / GAN-INT) needs captioned images (shapes-t2i, mnist-t2i, "
                          f"captioned-images); '{cfg.data.name}' has no captions")
    if tt.interpolate < 0 or tt.mode_seeking < 0 or not 0 <= tt.beta <= 1:
        raise ConfigError(f"model.t2i: interpolate and mode_seeking must be >= 0 and beta in [0, 1] "
                          f"(got {tt.interpolate}, {tt.mode_seeking}, {tt.beta})")
    if tt.cls and balance is not None:
        raise ConfigError("model.t2i.cls: GAN-CLS's mismatched pairs do not apply to BEGAN's balance")
    return AdversarialObjective(
        criterion=loss, techniques=t, condition=condition,
        aux=build_term(mode, m.classes, m.continuous_codes, m.aux_weight),
        penalties=penalties,
        weight_clip=WeightClip(m.loss.weight_clip) if m.loss.weight_clip > 0 else None,
        d_history=HistoricalAverage(setup.discriminator, ha) if ha > 0 else None,
        g_history=HistoricalAverage(setup.generator, ha) if ha > 0 else None,
        balance=balance, d_steps=cfg.train.d_steps, g_steps=cfg.train.g_steps,
        fresh_g_noise=cfg.train.fresh_g_noise, noise_anneal_steps=cfg.train.steps, mismatch=tt.cls,
        interpolation=CaptionInterpolation(tt.beta, tt.interpolate) if tt.interpolate > 0 else None,
        mode_seeking=ModeSeeking(tt.mode_seeking, m.z_dim) if tt.mode_seeking > 0 else None)


def _no_adversary(setup: Setup, name: str) -> None:
    t = setup.cfg.techniques
    for key in ("feature_matching", "historical_average", "label_smoothing", "label_flip", "instance_noise",
                "diff_augment"):
        if getattr(t, key):
            raise ConfigError(f"techniques.{key} needs a discriminator; the '{name}' objective has none")


def _mmd(setup: Setup) -> MMDObjective:
    _no_adversary(setup, "mmd")
    return MMDObjective(setup.cfg.model.loss.mmd_bandwidths, setup.cfg.train.g_steps)


def _elbo(setup: Setup) -> ELBOObjective:
    _no_adversary(setup, "elbo")
    return ELBOObjective(setup.cfg.train.g_steps)


def _ctgan(setup: Setup) -> AdversarialObjective:
    """CTGAN (Xu et al. 2019): the adversarial objective as configured (WGAN-GP with PacGAN packing in
    its preset) plus the generator's conditional cross-entropy on the data's condition vectors."""
    objective = build_adversarial(setup)
    for reg in objective.penalties:
        if isinstance(reg, GradientPenalty):
            reg.interpolate_condition = True
    spans = setup.spec.extra.get("condition_spans") if setup.spec.condition_dim else None
    if spans:
        objective.g_terms.append(ConditionalCrossEntropy(spans))
    return objective


def _began(setup: Setup) -> AdversarialObjective:
    lc = setup.cfg.model.loss
    return build_adversarial(setup, BEGANBalance(lc.began_gamma, lc.began_lambda_k), BEGAN_LOSS)


register_objective("adversarial", build_adversarial, "network",
                   "D and G phases of an adversarial loss (model.loss.name) with conditioning, penalties, techniques")
register_objective("ctgan", _ctgan, "network",
                   "CTGAN: the adversarial objective plus G's conditional cross-entropy (training-by-sampling)")
register_objective("began", _began, "autoencoder", "BEGAN: auto-encoder D, k_t balance, convergence measure")
register_objective("mmd", _mmd, None,
                   "generative moment matching: MMD with a mixture of Gaussian kernels, no D network")
register_objective("elbo", _elbo, None, "the VAE baseline: negative evidence lower bound on real data")


def _text(method: str) -> Callable[[Setup], TextObjective]:
    """The builder of one text method (its own ``mle`` checks: no discriminator techniques)."""

    def build(setup: Setup) -> TextObjective:
        if method == "mle":
            _no_adversary(setup, "mle")
        return build_text_objective(setup, method)

    return build


register_objective("mle", _text("mle"), None,
                   "text: maximum likelihood (teacher forcing) of a sequence generator; the baseline of text GANs")
register_objective("seqgan", _text("seqgan"), "network",
                   "text: SeqGAN, MLE pretraining then policy gradient with Monte-Carlo rollout rewards")
register_objective("gumbel", _text("gumbel"), "network",
                   "text: MLE pretraining then the Gumbel-softmax relaxation with a temperature schedule (RelGAN)")
