"""Learning-rate schedules as callbacks: :func:`lr_factor` (a pure function of the step), :class:`LRDecay`
and :class:`SetLR`, and :class:`LRScale`, the multiplier NaN rollbacks lower and checkpoints keep."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` (a pure function of the step,
    so a resumed run needs no scheduler state)."""
    if schedule == "none" or total <= 0:
        return 1.0
    frac = min(step / total, 1.0)
    if schedule == "linear":
        return 1.0 - frac
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown lr schedule '{schedule}'")


class LRScale:
    """A learning-rate multiplier that NaN rollbacks (:class:`NanRollback`) lower and checkpoints keep,
    shared by the callbacks that set learning rates (so neither a schedule nor a resume undoes it)."""

    scale: float = 1.0

    def scale_lr(self, factor: float) -> None:
        self.scale *= factor

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state.get("scale", 1.0))


class LRDecay(LRScale):
    """Sets every optimizer's learning rate to base * scale * lr_factor(step) before each step.

    ``scale`` is 1 unless NaN rollbacks (:class:`NanRollback`) lowered the learning rates; it is
    checkpointed, so neither the schedule nor a resume undoes them.
    """

    def __init__(self, schedule: str, total: int, optimizers: list[torch.optim.Optimizer]) -> None:
        self.schedule, self.total = schedule, total
        self.optimizers = [o for o in optimizers if o is not None]
        self.base = [[g["lr"] for g in o.param_groups] for o in self.optimizers]
        self.scale = 1.0

    def _apply(self, step: int) -> None:
        f = lr_factor(self.schedule, step, self.total) * self.scale
        for opt, base in zip(self.optimizers, self.base, strict=True):
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = lr * f

    def on_train_start(self, trainer: Any) -> None:
        self._apply(trainer.step_num)

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        self._apply(trainer.step_num)


class SetLR(LRScale):
    """Sets an optimizer's learning rate from iteration ``start`` on (a text GAN's adversarial
    phases after MLE pretraining); a resumed run past ``start`` gets it again at its start."""

    def __init__(self, optimizer: Any, start: int, lr: float) -> None:
        self.optimizer, self.start, self.lr = optimizer, start, lr
        self.scale = 1.0  # lowered by NaN rollbacks (checkpointed: a resume keeps it)

    def _set(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * self.scale

    def on_train_start(self, trainer: Any) -> None:
        if trainer.step_num >= self.start:
            self._set()

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        if trainer.step_num == self.start:
            self._set()
