"""How labels and latent codes enter the game: what D sees beside x, and the auxiliary terms.

- ``cgan``: the label is part of G's input and given to D (as constant feature maps for
  convolutional D, concatenated for MLPs) (Mirza & Osindero 2014).
- ``projection``: G as in CGAN; D adds <embed(y), features(x)> to its output (Miyato & Koyama 2018).
- ``acgan``: G as in CGAN; D is unconditional but has an auxiliary classifier head; both players
  add its cross-entropy to their losses (Odena et al. 2017): :class:`ACGANTerm`.
- ``infogan``: G gets categorical and continuous codes; a Q head sharing D's trunk recovers them,
  and both players add ``weight`` times the resulting mutual-information bound (Chen et al. 2016):
  :class:`InfoGANTerm`.
- captions (data conditions ``c``): G's input and D's condition are a caption embedding the data
  supplies (:class:`DataCondition`); GAN-CLS's mismatched pairs and GAN-INT's interpolated captions
  (:class:`CaptionInterpolation`) are options of the adversarial objective (``model.t2i``).

Labels and codes are part of the prior's vector (see :class:`~ganforge.generator.Prior`), which also
hands them to the objective as the batch entries ``y`` and ``codes``. The heads are children of D
(:class:`~ganforge.nn.WithHead`), reached through D's forward call with ``aux=True``.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.objectives.base import Batch
from ganforge.registry import ConfigError

MODES = ("none", "cgan", "projection", "acgan", "infogan")
# InfoGAN's paper weighs continuous codes less than categorical ones (lambda = 0.1 vs 1).
CONTINUOUS_WEIGHT = 0.1


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"model.conditioning: unknown mode '{mode}' (choices: {', '.join(MODES)})")
    return mode


class LabelCondition:
    """What D sees beside a sample: the one-hot label of a real sample, or the label G was given."""

    def __init__(self, classes: int) -> None:
        self.classes = classes

    def __call__(self, batch: Batch) -> Tensor:
        return F.one_hot(batch["y"].long(), self.classes).float()


class DataCondition:
    """What D sees beside a sample: the condition vector ``c`` the data (or G's input) carries."""

    def __call__(self, batch: Batch) -> Tensor:
        return batch["c"]


class CaptionInterpolation:
    """GAN-INT (Reed et al. 2016): conditions ``beta * c1 + (1 - beta) * c2`` of two training
    captions drawn from the data, on which G's extra term asks D to call its samples real."""

    def __init__(self, beta: float = 0.5, weight: float = 1.0) -> None:
        self.beta, self.weight = beta, weight

    def conditions(self, game: Any) -> Tensor:
        c1 = game.data.fake_conditions(game.batch_size, game.rng)["c"]
        c2 = game.data.fake_conditions(game.batch_size, game.rng)["c"]
        return self.beta * c1 + (1 - self.beta) * c2


class ModeSeeking:
    """MSGAN's mode-seeking term (Mao et al. 2019) for G: with a second noise for the same conditions,
    ``weight / (mean|x1 - x2| / mean|z1 - z2| + eps)``, large when different noises give the same image."""

    def __init__(self, weight: float, z_dim: int) -> None:
        self.weight, self.z_dim = weight, z_dim

    def __call__(self, game: Any, fake: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        other = game.fake(condition=fake["c"])
        dx = (fake["x"] - other["x"]).abs().mean()
        dz = (fake["v"][:, :self.z_dim] - other["v"][:, :self.z_dim]).abs().mean()
        loss = self.weight / (dx / dz + 1e-5)
        return loss, {"mode_seeking": loss.detach()}


class ACGANTerm:
    """AC-GAN: D's head classifies real and fake samples; G wants its samples classified as the
    label it was given."""

    needs_real = True  # D's head reads real samples too

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def d_loss(self, real: Batch, real_aux: Tensor | None, fake: Batch, fake_aux: Tensor) -> Tensor:
        assert real_aux is not None
        return self.weight * (F.cross_entropy(real_aux, real["y"].long()) + F.cross_entropy(fake_aux, fake["y"]))

    def g_loss(self, fake: Batch, fake_aux: Tensor) -> Tensor:
        return self.weight * F.cross_entropy(fake_aux, fake["y"])


class InfoGANTerm:
    """InfoGAN: the Q head recovers G's codes from its samples (a variational bound on their mutual
    information); both players minimize it."""

    needs_real = False

    def __init__(self, classes: int, continuous: int, weight: float = 1.0) -> None:
        self.classes, self.continuous, self.weight = classes, continuous, weight

    def _info(self, fake: Batch, pred: Tensor) -> Tensor:
        loss = pred.new_zeros(())
        if self.classes:
            loss = loss + F.cross_entropy(pred[:, :self.classes], fake["y"])
        if self.continuous:
            # A fixed-variance Gaussian Q(c|x): the log-likelihood is a squared error.
            loss = loss + CONTINUOUS_WEIGHT * F.mse_loss(pred[:, self.classes:], fake["codes"])
        return self.weight * loss

    def d_loss(self, real: Batch, real_aux: Tensor | None, fake: Batch, fake_aux: Tensor) -> Tensor:
        return self._info(fake, fake_aux)

    def g_loss(self, fake: Batch, fake_aux: Tensor) -> Tensor:
        return self._info(fake, fake_aux)


class ConditionalCrossEntropy:
    """CTGAN's conditional term of G's loss (Xu et al. 2019, sec. 4.3): for the discrete column each
    fake row was conditioned on, the cross-entropy between G's logits for that column and the
    requested category, summed over columns and averaged over the batch, so G honours its condition.

    ``spans``: (offset in G's output, width, offset in the condition vector) of each discrete column.
    """

    def __init__(self, spans: list[list[int]] | list[tuple[int, int, int]], weight: float = 1.0) -> None:
        from ganforge.nn.tabular import SegmentSoftmax

        self.spans, self.weight = [tuple(int(v) for v in s) for s in spans], weight
        # The discrete columns' logits in condition-vector order, log-softmaxed span by span at once.
        order = sorted(self.spans, key=lambda s: s[2])
        self.log_softmax = SegmentSoftmax([(a, a + w) for a, w, _ in order])

    def __call__(self, fake: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        if "logits" not in fake:
            raise ConfigError("the ctgan objective needs a generator that returns its logits (model.generator: ctgan)")
        logits, c = fake["logits"].float(), fake["c"]
        s = self.log_softmax.to(logits.device)
        logp = s(logits.index_select(1, s.idx), log=True)
        # c is the one-hot of the requested category in the chosen column and zero elsewhere, so
        # -sum(c * log p) is each row's cross-entropy for its own column only.
        loss = -self.weight * (logp * c.to(logp.dtype)).sum() / len(logits)
        return loss, {"cond_loss": loss.detach()}


def build_head(mode: str, feature_dim: int, classes: int, continuous: int) -> nn.Module | None:
    """AC-GAN's classifier or InfoGAN's Q network on D's features (None for the other modes)."""
    if mode == "acgan":
        return nn.Linear(feature_dim, classes)
    if mode == "infogan":
        return nn.Sequential(nn.Linear(feature_dim, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.2),
                             nn.Linear(128, classes + continuous))
    return None


def build_term(mode: str, classes: int, continuous: int, weight: float) -> ACGANTerm | InfoGANTerm | None:
    """The auxiliary term of a conditioning mode (None for none, cgan and projection)."""
    if mode == "acgan":
        return ACGANTerm(weight)
    if mode == "infogan":
        return InfoGANTerm(classes, continuous, weight)
    return None
