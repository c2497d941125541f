"""How labels and latent codes enter the game, as one composable part.

- ``cgan``: the label is concatenated to G's input and given to D (as constant feature maps for
  convolutional D, concatenated for MLPs) (Mirza & Osindero 2014).
- ``projection``: G as in CGAN; D adds <embed(y), features(x)> to its output (Miyato & Koyama 2018).
- ``acgan``: G as in CGAN; D is unconditional but has an auxiliary classifier head; both players
  add its cross-entropy to their losses (Odena et al. 2017).
- ``infogan``: G gets categorical and continuous codes; a Q head sharing D's trunk recovers them,
  and both players add ``weight`` times the resulting mutual-information bound (Chen et al. 2016).

Codes are part of the prior's vector (see :class:`~ganforge.training.trainer.Prior`), so G needs no
special call; this object only tells D what it sees and adds the auxiliary losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.registry import ConfigError

MODES = ("none", "cgan", "projection", "acgan", "infogan")
# InfoGAN's paper weighs continuous codes less than categorical ones (lambda = 0.1 vs 1).
CONTINUOUS_WEIGHT = 0.1


class Conditioning:
    """Labels and codes for D, and the auxiliary losses of AC-GAN and InfoGAN."""

    def __init__(self, mode: str, classes: int, continuous: int = 0, weight: float = 1.0,
                 head: nn.Module | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"model.conditioning: unknown mode '{mode}' (choices: {', '.join(MODES)})")
        self.mode, self.classes, self.continuous, self.weight, self.head = mode, classes, continuous, weight, head
        self.d_sees_labels = mode in ("cgan", "projection")
        self.needs_real_labels = mode in ("cgan", "projection", "acgan")
        self.needs_features = mode in ("acgan", "infogan")

    def real_input(self, labels: Tensor | None) -> Tensor | None:
        """What D gets beside a real image: its one-hot label, for CGAN and projection D."""
        if not self.d_sees_labels or labels is None:
            return None
        return F.one_hot(labels.long(), self.classes).float()

    def fake_input(self, v: Tensor) -> Tensor | None:
        """What D gets beside a fake image: the one-hot label G was given."""
        return self._one_hot(v) if self.d_sees_labels else None

    def _one_hot(self, v: Tensor) -> Tensor:
        return v[:, -(self.classes + self.continuous):v.shape[1] - self.continuous]

    def _info_loss(self, h_fake: Tensor, v: Tensor) -> Tensor:
        assert self.head is not None
        pred = self.head(h_fake)
        loss = h_fake.new_zeros(())
        if self.classes:
            loss = loss + F.cross_entropy(pred[:, :self.classes], self._one_hot(v).argmax(1))
        if self.continuous:
            # A fixed-variance Gaussian Q(c|x): the log-likelihood is a squared error.
            loss = loss + CONTINUOUS_WEIGHT * F.mse_loss(pred[:, self.classes:], v[:, -self.continuous:])
        return loss

    def d_loss(self, h_real: Tensor | None, labels: Tensor | None, h_fake: Tensor | None, v: Tensor) -> Tensor:
        """D's auxiliary loss (0 for cgan / projection / none)."""
        if self.mode == "acgan":
            assert self.head is not None and h_real is not None and h_fake is not None and labels is not None
            ce = F.cross_entropy(self.head(h_real), labels.long()) + F.cross_entropy(self.head(h_fake),
                                                                                   self._one_hot(v).argmax(1))
            return self.weight * ce
        if self.mode == "infogan":
            assert h_fake is not None
            return self.weight * self._info_loss(h_fake, v)
        return torch.zeros(())

    def g_loss(self, h_fake: Tensor | None, v: Tensor) -> Tensor:
        """G's auxiliary loss: be classified as the label it was given (AC-GAN), keep the codes
        recoverable (InfoGAN)."""
        if self.mode == "acgan":
            assert self.head is not None and h_fake is not None
            return self.weight * F.cross_entropy(self.head(h_fake), self._one_hot(v).argmax(1))
        if self.mode == "infogan":
            assert h_fake is not None
            return self.weight * self._info_loss(h_fake, v)
        return torch.zeros(())


def cluster_labels(x: Tensor, k: int, seed: int = 0) -> Tensor:
    """Unsupervised labels for self-conditioning: k-means (scikit-learn) on the flattened samples."""
    from sklearn.cluster import KMeans

    flat = x.reshape(len(x), -1).float().numpy()
    return torch.from_numpy(KMeans(k, n_init=1, random_state=seed).fit(flat).labels_.astype("int64"))


def build_head(mode: str, feature_dim: int, classes: int, continuous: int) -> nn.Module | None:
    """AC-GAN's classifier or InfoGAN's Q network on D's features (None for the other modes)."""
    if mode == "acgan":
        return nn.Linear(feature_dim, classes)
    if mode == "infogan":
        return nn.Sequential(nn.Linear(feature_dim, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.2),
                             nn.Linear(128, classes + continuous))
    return None
