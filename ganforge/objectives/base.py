"""Objectives and phases: what each part of a training iteration computes.

The trainer runs a list of :class:`Phase` objects each iteration (stylegan2-ada-pytorch's ``Dmain``,
``Dreg``, ``Gmain``; an MLE pretraining phase for text). For each phase it asks the objective for a
loss, ``objective.loss(phase, game)``, and does the rest itself: zero the gradients, backward, step
the phase's player's optimizer. The objective never steps an optimizer; the trainer never looks at
what the objective is. A new model family is one objective and one :func:`register_objective` call.

An objective is any object with

- ``phases(train_cfg) -> list[Phase]``
- ``loss(phase, game) -> (loss, logs)``: a scalar to minimize for the phase's player, and detached
  scalars to log;

and optionally ``after_update(phase, game, logs)`` (after the optimizer step: weight clipping,
BEGAN's k_t, historical averages), ``state_dict()`` / ``load_state_dict(state)`` (state that must
survive a resume) and ``probabilistic`` (True when the logged ``d_real`` / ``d_fake`` are
probabilities, which the saturation check reads).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ganforge.registry import Registry

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class Phase:
    """One part of an iteration.

    ``player`` is whose optimizer steps ("g" or "d"); ``repeat`` consecutive updates per iteration
    (Algorithm 1's k for D); ``interval``: the phase runs every ``interval`` iterations counted from
    ``start`` (lazy regularization); ``freeze``: players whose weights take no gradient in this phase (D in
    G's phase: only the gradient with respect to D's input is needed). ``start`` / ``stop``: the
    phase runs in iterations ``start <= step < stop`` only (``stop`` None = to the end): a text GAN's
    MLE pretraining is a phase that stops where the adversarial phases start.
    """

    name: str
    player: str
    repeat: int = 1
    interval: int = 1
    freeze: tuple[str, ...] = ()
    start: int = 0
    stop: int | None = None

    def due(self, step: int) -> bool:
        """Whether the phase runs in iteration ``step``."""
        if step < self.start or (self.stop is not None and step >= self.stop):
            return False
        return (step - self.start) % self.interval == 0


class Game(Protocol):
    """What the trainer offers an objective (see :class:`ganforge.training.game.Game`)."""

    G: nn.Module
    D: nn.Module | None
    prior: Any
    data: Any
    rng: torch.Generator
    step: int
    total_steps: int
    batch_size: int

    def real(self, n: int | None = None) -> Batch: ...

    def noise(self, n: int | None = None, condition: Tensor | None = None) -> Batch: ...

    def fake(self, n: int | None = None, grad: bool = True, condition: Tensor | None = None) -> Batch: ...

    def judge(self, x: Tensor, c: Tensor | None = None, features: bool = False,
              aux: bool = False) -> tuple[Tensor, dict[str, Tensor]]: ...

    def amp(self) -> AbstractContextManager[Any]: ...


class Objective(Protocol):
    def phases(self, train: Any) -> list[Phase]: ...

    def loss(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]: ...


@dataclass
class Setup:
    """What an objective builder is given: the config and the assembled networks and data."""

    cfg: Any  # ganforge.config.Config
    generator: nn.Module
    discriminator: nn.Module | None
    prior: Any
    spec: Any  # ganforge.spec.DataSpec
    data: Any


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: its builder and the discriminator it needs.

    ``discriminator``: ``"network"`` (an ordinary D), ``"autoencoder"`` (BEGAN's: the auto-encoder of
    the configured network family) or ``None`` (no D: MMD, the VAE).
    """

    name: str
    build: Callable[[Setup], Any]
    discriminator: str | None = "network"
    description: str = ""


OBJECTIVES: Registry[ObjectiveSpec] = Registry("objective")


def register_objective(name: str, build: Callable[[Setup], Any], discriminator: str | None = "network",
                       help: str = "") -> ObjectiveSpec:
    """Register ``build(setup) -> objective`` under ``name`` (choose it with ``model.objective``)."""
    spec = ObjectiveSpec(name, build, discriminator, help)
    OBJECTIVES.register(name, spec, help=help)
    return spec


def readout(d: Tensor, probabilistic: bool) -> Tensor:
    """D(x) as logged: a mean probability for logit losses, the mean raw output otherwise."""
    d = d.detach().float()
    return torch.sigmoid(d).mean() if probabilistic else d.mean()
