"""Objectives without an adversary: generative moment matching (MMD) and the VAE's ELBO."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ganforge.objectives.base import Game, Phase
from ganforge.objectives.losses import mmd2


class MMDObjective:
    """Generative moment matching (Li et al. 2015; Dziugaite et al. 2015): G minimizes the squared
    MMD between a fake and a real minibatch under a mixture of Gaussian kernels; no D network."""

    probabilistic = False

    def __init__(self, bandwidths: Sequence[float], g_steps: int = 1) -> None:
        self.bandwidths, self.g_steps = list(bandwidths), g_steps

    def phases(self, train: Any = None) -> list[Phase]:
        return [Phase("G", "g", repeat=self.g_steps)]

    def loss(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        fake = game.fake()
        real = game.real(len(fake["x"]))
        loss = mmd2(real["x"], fake["x"], self.bandwidths)
        return loss, {"g_loss": loss.detach()}


class ELBOObjective:
    """The VAE baseline (Kingma & Welling 2014): the model in G's seat minimizes its negative ELBO on
    real minibatches; its forward call with ``elbo=True`` computes it (see :mod:`ganforge.baselines.vae`)."""

    probabilistic = False

    def __init__(self, g_steps: int = 1) -> None:
        self.g_steps = g_steps

    def phases(self, train: Any = None) -> list[Phase]:
        return [Phase("G", "g", repeat=self.g_steps)]

    def loss(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        loss, terms = game.G(game.real()["x"], elbo=True, generator=game.rng)
        return loss, {"g_loss": loss.detach(), **terms}
