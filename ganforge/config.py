"""Typed configuration: dataclasses are the one source of defaults.

YAML presets and ``--set a.b=value`` overrides are checked against the dataclass fields: an unknown
key or a value of the wrong type raises :class:`~ganforge.registry.ConfigError` naming the key and
the closest valid one.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ganforge.registry import ConfigError, closest


@dataclass
class NetConfig:
    """A network chosen by name from the network registry."""

    name: str = "mlp"
    # Hidden widths: MLP layers; lstm/gru: the state size of each layer; text-rnn: [state size].
    # text-cnn has no hidden layers (its size is filter_scale): leave hidden at its default there
    hidden: list[int] = field(default_factory=lambda: [128, 128])  # layer widths (text-cnn: see filter_scale)
    activation: str = "relu"  # relu | leaky_relu | tanh | elu
    batch_norm: bool | None = None  # null = the network's own default (off for MLPs, on for DCGAN)
    dropout: float = 0.0  # dropout after each hidden layer (a D technique)
    spectral_norm: bool = False
    output: str = "linear"  # linear | tanh | sigmoid: G's output head (MLPs)
    width: int = 64  # convolutional networks: channels of D's first / G's last hidden layer
    minibatch_std: bool = False  # D: append the batch's feature standard deviation (a collapse signal)
    conditioning: str = "concat"  # concat (CGAN) | projection (projection discriminator)
    minibatch_discrimination: int = 0  # D: number of minibatch-discrimination kernels (Salimans et al.); 0 = off
    # DCGAN: a fully connected hidden layer of this width after z (G) and before the output (D),
    # as in InfoGAN's networks; heads (InfoGAN's Q, AC-GAN's classifier) read its output. 0 = off
    fc: int = 0
    # G: virtual batch norm (Salimans et al. 2016, sec. 3.4): its 2-D batch-norm layers take their
    # statistics from a fixed reference batch of this many noise vectors, re-captured after every
    # update, so one sample's output does not depend on the rest of its batch. 0 = ordinary batch norm
    reference_batch: int = 0
    # D: PacGAN packing (Lin et al. 2018): this many samples are judged together as one; the batch
    # must be a multiple of it (the ctgan discriminator). 1 = off
    pac: int = 1
    # text-cnn: each of SeqGAN's filter counts (12 window sizes) times this, rounded, at least 1
    filter_scale: float = 1.0  # text-cnn: x SeqGAN's filter counts (1.0 = the paper's 1,720; 0.25 = 430)


@dataclass
class LossConfig:
    """The adversarial loss and the regularizers that go with it."""

    name: str = "nonsaturating"  # an adversarial loss (`ganforge.objectives.LOSSES`), or began / mmd
    weight_clip: float = 0.0  # WGAN: clip D's weights to [-c, c] after each D step; 0 = off
    gradient_penalty: float = 0.0  # WGAN-GP lambda; 0 = off
    r1: float = 0.0  # R1 penalty gamma on real data; 0 = off
    # Lazy regularization: gradient_penalty and r1 run in their own phase every N iterations, scaled
    # by the D updates they stand for (N x train.d_steps); 1 = in every D update
    reg_interval: int = 1
    began_gamma: float = 0.5  # BEGAN diversity ratio gamma = E[L(G(z))] / E[L(x)]
    began_lambda_k: float = 0.001  # BEGAN learning rate of the balance term k_t
    mmd_bandwidths: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.5, 1.0, 2.0])


@dataclass
class OptimConfig:
    """A gradient-based update rule."""

    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # adam
    momentum: float = 0.0  # sgd (the paper uses momentum), rmsprop
    alpha: float = 0.99  # rmsprop smoothing
    weight_decay: float = 0.0
    fused: bool = False  # adam: the fused kernel (one pass over all parameters; faster for small networks)


@dataclass
class TechniquesConfig:
    """Stabilization tricks, each a switch (0 / false = off)."""

    label_smoothing: float = 0.0  # one-sided: D's real target is 1 - s, fake stays 0
    label_flip: float = 0.0  # probability of flipping each of D's labels
    instance_noise: float = 0.0  # initial std of Gaussian noise added to D's inputs
    instance_noise_anneal_steps: int = 0  # linear decay to 0 over this many steps (0 = run length)
    ema: float = 0.0  # decay of the exponential moving average of G's weights; 0 = off
    ema_start: int = 0  # step from which the average is taken (before: copied)
    feature_matching: bool = False  # G matches the mean of D's penultimate features
    historical_average: float = 0.0  # weight of ||theta - mean of past theta||^2 for G and D; 0 = off
    diff_augment: str = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"; "" = off


@dataclass
class T2IConfig:
    """Text-to-image terms (Reed et al. 2016) for data with captions (``shapes-t2i``, ``mnist-t2i``)."""

    # GAN-CLS: D also sees real images with mismatched captions and must call them fake (the fake
    # side of its loss averages these and G's samples)
    cls: bool = False
    interpolate: float = 0.0  # GAN-INT: weight of G's term on interpolated caption embeddings (0 = off)
    beta: float = 0.5  # GAN-INT: the interpolation beta * c1 + (1 - beta) * c2
    # Mode seeking (Mao et al. 2019, MSGAN): weight of G's term 1 / (|G(z1, c) - G(z2, c)| / |z1 - z2|)
    # on two noises for the same caption, against the collapse to one image per caption (0 = off)
    mode_seeking: float = 0.0


@dataclass
class TextConfig:
    """Text GANs: MLE pretraining, SeqGAN's policy gradient, the Gumbel-softmax relaxation."""

    # Iterations of maximum-likelihood training of G before the adversarial phases (the MLE model
    # they start from), then of D alone on real against G's samples
    pretrain_steps: int = 0
    d_pretrain_steps: int = 0
    rollouts: int = 16  # SeqGAN: Monte-Carlo rollouts per token for its reward
    rollout_update: float = 0.8  # SeqGAN: the rollout network keeps this share of its weights per G update
    baseline: str = "none"  # SeqGAN's policy gradient: none (the paper's) | mean (subtract the batch's mean reward)
    # Gumbel-softmax temperature over the adversarial iterations, by RelGAN's schedules of beta = 1 / tau from
    # 1 / tau_start to 1 / tau_end (objectives/text.py, tau_at): no (tau_end throughout), lin, exp (tau =
    # tau_start * (tau_end / tau_start) ** (i / N)), log, sigmoid, quad, sqrt; or constant (tau_start throughout).
    # N = the adversarial iterations of train.steps when the run starts; a resumed run keeps its N whatever its
    # --steps (past N, tau stays tau_end)
    tau_start: float = 1.0
    tau_end: float = 0.01
    tau_schedule: str = "exp"  # RelGAN's no | lin | exp | log | sigmoid | quad | sqrt (on 1/tau), or constant
    mle_weight: float = 0.0  # weight of an MLE term added to G's adversarial loss (0 = pure adversarial)
    # G's learning rate from the first adversarial iteration on (RelGAN pretrains at 1e-2 and plays
    # at 1e-4); 0 = optim_g.lr throughout (SeqGAN)
    adversarial_lr_g: float = 0.0
    eval_samples: int = 2000  # sentences generated for the metrics logged during training


@dataclass
class ModelConfig:
    """A GAN composed from named parts."""

    family: str = "gan"  # gan | vae (the baseline: decoder = generator, encoder = discriminator's trunk)
    # What each phase of training computes (`ganforge.objectives.OBJECTIVES`: adversarial, began, mmd,
    # elbo, or your own registered one); "" = implied by loss.name and family
    objective: str = ""
    z_dim: int = 2
    noise: str = "normal"  # normal | uniform (on [-1, 1])
    vae_beta: float = 1.0  # weight of the VAE's KL term
    conditioning: str = "none"  # none | cgan | projection | acgan | infogan (see objectives/auxiliary.py)
    classes: int = 0  # one-hot labels given to G (conditional GANs) or InfoGAN's categorical code size
    continuous_codes: int = 0  # InfoGAN's continuous codes, uniform on [-1, 1]
    aux_weight: float = 1.0  # weight of AC-GAN's classification loss / InfoGAN's mutual-information term
    # Self-conditioning: k-means clusters of the training images stand in for labels (none are read);
    # the number of clusters, 0 = off. Needs conditioning cgan, projection or acgan.
    self_condition: int = 0
    class_probs: list[float] = field(default_factory=list)  # how often G draws each class; [] = uniform
    generator: NetConfig = field(default_factory=lambda: NetConfig(output="linear"))
    discriminator: NetConfig = field(default_factory=lambda: NetConfig(activation="leaky_relu"))
    loss: LossConfig = field(default_factory=LossConfig)
    text: TextConfig = field(default_factory=TextConfig)
    t2i: T2IConfig = field(default_factory=T2IConfig)


@dataclass
class DataConfig:
    """A data set chosen by name; ``options`` are passed to its constructor."""

    name: str = "ring2d"
    options: dict[str, Any] = field(default_factory=dict)
    # Your own file or folder (a text corpus, a table, an image folder, caption pairs): passed to the data
    # set as its `path` option. The older spelling `data.options.path` is read as this, with a warning.
    path: str = ""


@dataclass
class TrainConfig:
    """Algorithm 1's loop and the run's bookkeeping."""

    steps: int = 5000  # generator updates (outer iterations of Algorithm 1)
    batch_size: int = 256  # the global batch: split over the processes of a torchrun run (and accumulation)
    d_steps: int = 1  # k in Algorithm 1
    g_steps: int = 1
    fresh_g_noise: bool = True  # Algorithm 1 samples new noise for G; false reuses D's fakes
    lr_decay: str = "none"  # none | linear | cosine: both learning rates decay to 0 over the run
    seed: int = 0
    device: str = "cpu"
    channels_last: bool = False  # images: NHWC memory layout for G, D and batches (faster convolutions on CPU)
    # Mixed precision for the forward passes (weights stay float32): none | bf16 | fp16 (with a
    # gradient scaler) | auto (bf16, or fp16 on GPUs without it, only where a few timed steps at the
    # start show it faster for this model on this machine; the log says what was picked and why).
    autocast: str = "none"
    compile: bool = False  # torch.compile G and D (falls back to eager, with a warning, where it fails)
    accumulate: int = 1  # micro-batches per update in each process (gradient accumulation)
    sync_batchnorm: bool = False  # multi-process runs on GPUs: batch norm statistics over the global batch
    # CPU: flush denormal floats to zero while training. Small networks trained for long (tables)
    # drift into denormal values, which x86 CPUs compute many times slower (measured: a TVAE step
    # went from 14 to 27 ms over 25 epochs; flat with this on). Values below 1e-38 become 0.
    flush_denormal: bool = False
    log_every: int = 10
    sample_every: int = 1000  # sample plots; 0 = only at the end
    checkpoint_every: int = 1000  # 0 = only at the end
    eval_every: int = 1000  # metrics during training (toy modes; image metrics of `eval`); 0 = only at the end
    eval_samples: int = 2500  # samples for the toy-data mode metrics
    progress: bool = True
    tensorboard: bool = True  # when the tensorboard package is installed
    # NaN/Inf in the losses or the training state: `stop` ends the run as diverged, the last good checkpoint
    # kept; `rollback` reloads the last checkpoint, multiplies every learning rate by nan_lr_factor and goes on.
    nan_policy: str = "stop"  # stop | rollback: reload the last checkpoint with lower learning rates, go on
    nan_lr_factor: float = 0.5  # rollback: every learning rate is multiplied by this at each rollback
    nan_max_rollbacks: int = 3  # rollback: after this many rollbacks in a run, NaN stops it as under stop


@dataclass
class EvalConfig:
    """Image metrics during and after training (see ``ganforge eval``)."""

    metrics: list[str] = field(default_factory=lambda: ["fid", "kid"])  # fid, kid, is, pr, dc, modes
    reference: str = "auto"  # a data set spec such as mnist:heldout; auto = the data set's held-out split
    extractor: str = "auto"  # auto: digits for 1x28x28 grey images, else inception; or a registered extractor
    n: int = 5000  # generated samples per evaluation (the reference uses all of its images)
    best: str = ""  # keep checkpoints/best.safetensors by this metric (lower is better for fid/kid)
    captions: int = 2000  # text to image: captions (one generated image each) per evaluation split
    classifier_steps: int = 1500  # text to image: training steps of the attribute classifier the metrics read


@dataclass
class HealthConfig:
    """Thresholds of the health checks (warnings in the log and on screen)."""

    saturation: float = 0.99  # D(x) above and D(G(z)) below 1 - this: D separates perfectly
    saturation_patience: int = 20  # consecutive logged steps before warning
    grad_vanish: float = 1e-6
    grad_explode: float = 1e3
    mode_drop: int = 1  # warn when modes captured falls by at least this much between evals
    # The final evaluation (status "warning" in summary.json when one fires; 0 turns a check off):
    min_modes_fraction: float = 0.5  # toy data: warn when the final modes captured are below this fraction
    fid_blowup: float = 2.0  # images: warn when the final FID is more than this many times the run's best


@dataclass
class Config:
    """A whole run."""

    preset: str = ""
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim_g: OptimConfig = field(default_factory=OptimConfig)
    optim_d: OptimConfig = field(default_factory=OptimConfig)
    techniques: TechniquesConfig = field(default_factory=TechniquesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    # `ganforge sample / eval / report` import them too, from the run's config (see ganforge.kinds).
    plugins: list[str] = field(default_factory=list)  # modules imported first: plug-ins (data kinds, data sets)


# --------------------------------------------------------------------------------------------
# Building from dicts, with validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            names = [f.name for f in dataclasses.fields(tp)]
            first = "name" if "name" in names else names[0]
            raise ConfigError(f"{key} is a section, not a value: got {value!r}; set its keys, e.g. "
                              f"{key}.{first} (in YAML `{key.rsplit('.', 1)[-1]}: {{{first}: ...}}`)")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}; write it in brackets, e.g. "
                              f"--set {key}=[256,256] or `{key.rsplit('.', 1)[-1]}: [256, 256]` in YAML")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'{closest(key, names)}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    # Nested dataclasses given partially are merged onto their defaults.
    obj = cls()
    for key, value in kwargs.items():
        setattr(obj, key, value)
    return obj


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``base``, nested mappings key by key (neither is modified)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """:func:`merge` for whole configs: when ``over`` names another data set, its ``data`` section
    starts from that data set's defaults instead of inheriting the base's options (a preset's
    ``split: fit`` means nothing to an image folder)."""
    new = over.get("data", {}).get("name") if isinstance(over.get("data"), dict) else None
    old = base.get("data", {}).get("name") if isinstance(base.get("data"), dict) else None
    if new is not None and new != old:
        base = {k: v for k, v in base.items() if k != "data"}
    return merge(base, over)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted keys (``model.loss.name``); lists and empty dicts stay values."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """The plain-dict form of a config (for YAML and JSON)."""
    return dataclasses.asdict(cfg)


def _data_path_alias(data: dict[str, Any]) -> dict[str, Any]:
    """``data.options.path``, the older spelling of ``data.path``, moved to ``data.path`` with a
    FutureWarning (shown to users, unlike DeprecationWarning); both set to different files is an error."""
    section = data.get("data")
    options = section.get("options") if isinstance(section, dict) else None
    if not isinstance(options, dict) or "path" not in options:
        return data
    options = dict(options)
    old = options.pop("path")
    old = os.fspath(old) if isinstance(old, os.PathLike) else old
    new = section.get("path") or ""
    if new and old and str(new) != str(old):
        raise ConfigError(f"data.path ({new}) and data.options.path ({old}) name different files: "
                          "set data.path only")
    warnings.warn("data.options.path is deprecated: use data.path (the same value)", FutureWarning, stacklevel=3)
    return {**data, "data": {**section, "options": options, "path": new or old}}


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from a (possibly partial) nested dict."""
    cfg = _build(Config, merge(to_dict(Config()), _data_path_alias(data)))
    validate(cfg)
    return cfg


# The allowed range of every number that has one: (low, low inclusive, high, high inclusive); None = open.
# Keys name a field of any section ("*.lr" = the lr of optim_g and optim_d), checked by validate().
_POSITIVE_INT = (1, True, None, False)
_NON_NEGATIVE = (0, True, None, False)
_POSITIVE = (0, False, None, False)
_FRACTION = (0, True, 1, False)  # [0, 1)
RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "train.steps": _POSITIVE_INT, "train.batch_size": _POSITIVE_INT, "train.d_steps": _POSITIVE_INT,
    "train.g_steps": _POSITIVE_INT, "train.accumulate": _POSITIVE_INT, "train.log_every": _POSITIVE_INT,
    "train.sample_every": _NON_NEGATIVE, "train.checkpoint_every": _NON_NEGATIVE, "train.eval_every": _NON_NEGATIVE,
    "train.eval_samples": _POSITIVE_INT, "train.seed": _NON_NEGATIVE,
    "train.nan_lr_factor": (0, False, 1, False), "train.nan_max_rollbacks": _POSITIVE_INT,
    "optim_*.lr": _NON_NEGATIVE,  # 0 freezes a network (a test of the other one)
    "optim_*.betas": _FRACTION, "optim_*.momentum": _FRACTION,
    "optim_*.alpha": _FRACTION, "optim_*.weight_decay": _NON_NEGATIVE,
    "model.z_dim": _NON_NEGATIVE, "model.classes": _NON_NEGATIVE, "model.continuous_codes": _NON_NEGATIVE,
    "model.aux_weight": _NON_NEGATIVE, "model.vae_beta": _NON_NEGATIVE, "model.self_condition": _NON_NEGATIVE,
    "model.class_probs": _NON_NEGATIVE,
    "model.*.hidden": _POSITIVE_INT, "model.*.width": _POSITIVE_INT, "model.*.dropout": _FRACTION,
    "model.*.minibatch_discrimination": _NON_NEGATIVE, "model.*.fc": _NON_NEGATIVE,
    "model.*.reference_batch": _NON_NEGATIVE, "model.*.pac": _POSITIVE_INT, "model.*.filter_scale": _POSITIVE,
    "model.loss.weight_clip": _NON_NEGATIVE, "model.loss.gradient_penalty": _NON_NEGATIVE,
    "model.loss.r1": _NON_NEGATIVE, "model.loss.reg_interval": _POSITIVE_INT,
    "model.loss.began_gamma": _POSITIVE, "model.loss.began_lambda_k": _NON_NEGATIVE,
    "model.loss.mmd_bandwidths": _POSITIVE,
    "model.text.pretrain_steps": _NON_NEGATIVE, "model.text.d_pretrain_steps": _NON_NEGATIVE,
    "model.text.rollouts": _POSITIVE_INT, "model.text.rollout_update": (0, True, 1, True),
    "model.text.tau_start": _POSITIVE, "model.text.tau_end": _POSITIVE, "model.text.mle_weight": _NON_NEGATIVE,
    "model.text.adversarial_lr_g": _NON_NEGATIVE, "model.text.eval_samples": _POSITIVE_INT,
    "model.t2i.interpolate": _NON_NEGATIVE, "model.t2i.beta": (0, True, 1, True),
    "model.t2i.mode_seeking": _NON_NEGATIVE,
    "techniques.label_smoothing": _FRACTION, "techniques.label_flip": _FRACTION,
    "techniques.instance_noise": _NON_NEGATIVE, "techniques.instance_noise_anneal_steps": _NON_NEGATIVE,
    "techniques.ema": _FRACTION, "techniques.ema_start": _NON_NEGATIVE,
    "techniques.historical_average": _NON_NEGATIVE,
    "eval.n": _POSITIVE_INT, "eval.captions": _POSITIVE_INT, "eval.classifier_steps": _POSITIVE_INT,
    "health.saturation": (0, False, 1, False), "health.saturation_patience": _POSITIVE_INT,
    "health.min_modes_fraction": (0, True, 1, True), "health.fid_blowup": _NON_NEGATIVE,
    "health.grad_vanish": _NON_NEGATIVE, "health.grad_explode": _POSITIVE, "health.mode_drop": _POSITIVE_INT,
}


def _range_text(low: float | None, low_in: bool, high: float | None, high_in: bool, integer: bool) -> str:
    if (low, low_in, high) == (1, True, None) and integer:
        return "a positive integer"
    if (low, low_in, high) == (0, True, None):
        return "a number >= 0"
    if (low, low_in, high) == (0, False, None):
        return "a number > 0"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _range_key(key: str) -> str | None:
    if key in RANGES:
        return key
    parts = key.split(".")
    for i in range(len(parts) - 1):
        star = ".".join(parts[:i] + ["*"] + parts[i + 1:])
        if star in RANGES:
            return star
    if parts[0].startswith("optim_"):
        star = "optim_*." + ".".join(parts[1:])
        return star if star in RANGES else None
    return None


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every number of ``cfg`` against :data:`RANGES` (and that it is finite): one
    :class:`ConfigError` naming the key, the value and what is allowed."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        values = value if isinstance(value, list) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}: must be a finite number, got {v}")
        rule = _range_key(key)
        if rule is None:
            continue
        low, low_in, high, high_in = RANGES[rule]
        for v in numbers:
            bad = (low is not None and (v < low or (v == low and not low_in))) or \
                  (high is not None and (v > high or (v == high and not high_in)))
            if bad:
                what = _range_text(low, low_in, high, high_in, isinstance(v, int))
                raise ConfigError(f"{key} must be {what}, got {v}")


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b=value``; the value is read as YAML (so ``1e-4``, ``[1, 2]``, ``true`` work)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        value = read_yaml(raw, f"--set {key}") if raw else ""
    except ConfigError as e:
        if "invalid YAML" not in str(e):  # a tag or an alias bomb: refused; anything else is a plain string
            raise
        value = raw
    # YAML reads 1e-4 as a string; accept it as the float it means.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return key.strip(), value


def unknown_key(key: str, valid: list[str]) -> str:
    """The error for ``--set KEY=...`` with a key that is not a value: a section (``model.loss``) gets the
    keys it holds, led by its ``name`` when it has one; anything else the closest valid key."""
    inside = [k for k in valid if k.startswith(key + ".")]
    if inside:
        first = next((k for k in inside if k == key + ".name"), inside[0])
        rest = [k for k in inside if k != first]
        more = ", ".join(rest[:5]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
        return (f"'{key}' is a section, not a value: set one of its keys, e.g. --set {first}=..."
                + (f" (also {more})" if rest else ""))
    return f"unknown config key '{key}'{closest(key, valid)}"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict, rejecting unknown keys by name."""
    valid = _all_keys(Config)
    # A deep copy: merge({}, data) would share the nested dicts and the overrides would edit the caller's.
    out = copy.deepcopy(data)
    # A new data set starts from its own defaults: the base's data options are dropped before any
    # override is applied, so `--set data.path=DIR --set data.name=image-folder` works in either order.
    for text in overrides:
        key, value = parse_override(text)
        if key == "data.name" and value != (out.get("data") or {}).get("name"):
            out["data"] = {}
    for text in overrides:
        key, value = parse_override(text)
        if key not in valid and not key.startswith("data.options."):
            raise ConfigError(unknown_key(key, valid))
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


# The most nodes a config may expand to once its aliases are followed. A real config has a few hundred;
# a "billion laughs" file of a few hundred bytes expands to 10^9 and would hang every later step.
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int], stack: set[int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (memoised: linear in the file)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in stack:
        raise ConfigError("a YAML alias refers to itself (a recursive structure is not a config)")
    stack.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, stack)
        if total > MAX_YAML_NODES:
            break
    stack.discard(key)
    sizes[key] = total
    return total


def read_yaml(text: str, where: str) -> Any:
    """Plain data from YAML ``text`` (``where`` names it in errors): one :class:`ConfigError` line for
    anything that is not a plain config.

    Only YAML's plain types are built (SafeLoader: a ``!!python/...`` tag is refused, never run), and
    aliases are followed only up to :data:`MAX_YAML_NODES` nodes in all, so an anchor bomb is refused
    before it is built rather than exhausting memory in whatever walks it next.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_YAML_NODES:
            raise ConfigError(f"{where}: its aliases expand to more than {MAX_YAML_NODES:,} values "
                              "(an anchor bomb?); write the values out")
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as e:
        tag = getattr(e, "problem", "") or ""
        if "constructor for the tag" in tag:
            raise ConfigError(f"{where}: {tag.split('for the ')[-1]} is not allowed; configs hold plain "
                              "values (numbers, strings, lists, mappings)") from None
        raise ConfigError(f"{where}: invalid YAML ({' '.join(str(e).split())})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: invalid YAML ({e.problem or e.context}{at})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None
    except ConfigError as e:  # from _expanded_size: it does not know the file's name
        raise e if str(e).startswith(where) else ConfigError(f"{where}: {e}") from None
    finally:
        loader.dispose()


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    files = resources.files("ganforge.presets").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".yaml"))


def load_yaml(path_or_preset: str) -> dict[str, Any]:
    """Read a preset by name or a YAML file by path, as a dict."""
    path = Path(path_or_preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text()
    else:
        names = preset_names()
        if path_or_preset not in names:
            raise ConfigError(
                f"unknown preset '{path_or_preset}'{closest(path_or_preset, names)} "
                f"(run `ganforge presets`)"
            )
        text = resources.files("ganforge.presets").joinpath(path_or_preset + ".yaml").read_text()
    data = read_yaml(text, path_or_preset) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path_or_preset}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is not None:
        # A preset may extend another one (by name, or a path relative to this file).
        if str(base).endswith((".yaml", ".yml")) and path.suffix:
            base = str(path.parent / base)
        data = merge_config({k: v for k, v in load_yaml(base).items() if k not in ("preset", "description")}, data)
    data.setdefault("preset", path.stem if path.suffix else path_or_preset)
    return data


def load_config(path_or_preset: str, overrides: list[str] | None = None) -> Config:
    """Load a preset or YAML file, apply ``--set`` overrides, and validate."""
    return from_dict(apply_overrides(load_yaml(path_or_preset), overrides or []))
