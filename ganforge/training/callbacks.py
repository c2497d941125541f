"""Callbacks: everything around the step (logging, EMA, checkpoints, plots, metrics, health).

A callback is any object with some of ``on_train_start(trainer)``, ``on_step_end(trainer, out)``,
``on_train_end(trainer)``, ``wants_stats(trainer) -> bool`` and ``state_dict()`` /
``load_state_dict(state)``; no base class is needed.

This module holds the run's two exceptions and the small callbacks (EMA, the reference batch,
checkpoints, periodic calls); the logger is in :mod:`ganforge.training.logger`, the health checks
in :mod:`ganforge.training.health` and the learning-rate schedules in
:mod:`ganforge.training.lr_schedule`. All of them can be imported from here.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.nn.techniques import set_reference_batch
from ganforge.training.checkpoint import save_state
from ganforge.training.health import NAN_POLICIES, FinalChecks, Health, NanRollback, final_warnings
from ganforge.training.logger import Logger
from ganforge.training.lr_schedule import LRDecay, LRScale, SetLR, lr_factor


class TrainingDiverged(RuntimeError):
    """The run produced NaN or Inf; the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training; a checkpoint of the step reached was saved.

    ``resume`` is how to continue, as the front end that started the run can do it (a command
    line, or a Python call); each front end fills in its own, and the message shows it.
    """

    def __init__(self, signal_name: str, step: int, out: Any, resume: str | None = None) -> None:
        super().__init__(signal_name, step, out)
        self.signal_name, self.step, self.out, self.resume = signal_name, step, out, resume

    def __str__(self) -> str:
        text = f"interrupted at step {self.step} ({self.signal_name})"
        if self.out is None:
            return text
        text += f"; checkpoint saved in {self.out}"
        return text + (f"; continue with: {self.resume}" if self.resume else "")


class EMA:
    """Exponential moving average of G's weights (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float, start: int = 0) -> None:
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src = model

    @torch.no_grad()
    def update(self, step: int) -> None:
        src = list(self._src.parameters())
        dst = list(self.model.parameters())
        if step < self.start:
            torch._foreach_copy_(dst, src)
        else:
            # ema <- decay * ema + (1 - decay) * param
            torch._foreach_lerp_(dst, src, 1.0 - self.decay)
        for b_dst, b_src in zip(self.model.buffers(), self._src.buffers(), strict=True):
            b_dst.copy_(b_src)

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        self.update(trainer.step_num)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])


class ReferenceBatch:
    """Virtual batch norm's reference (Salimans et al. 2016): a fixed batch of G's inputs, passed
    through G before the first step and after every step, so each reference-batch-norm layer holds
    the statistics of the reference under G's current weights."""

    def __init__(self, prior: Any, n: int, seed: int = 0) -> None:
        self.v = prior.sample(n, torch.Generator().manual_seed(seed + 7919))

    def capture(self, trainer: Any) -> None:
        set_reference_batch(trainer.G, self.v)

    def on_train_start(self, trainer: Any) -> None:
        self.v = self.v.to(trainer.device)  # once, not in every step
        self.capture(trainer)

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        self.capture(trainer)


def _all_finite(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def finite_state(trainer: Any, state: dict[str, Any] | None = None) -> bool:
    """True when every float of the training state is finite (nothing bad may be checkpointed).

    Weights alone are not enough: Adam's second moments overflow to inf (a gradient above ~1e19)
    while the weights stay finite, and such a state cannot be resumed.
    """
    return _all_finite(trainer.state_dict() if state is None else state)


class Checkpoint:
    """Saves the whole training state atomically every ``every`` steps and at the end.

    In a multi-process run every process has one (``path`` None except on rank 0): gathering the
    state is collective, and the trainer has every process agree on stopping before it runs.
    """

    collective = True

    def __init__(self, path: Path | None, every: int) -> None:
        self.path, self.every = path, every

    def save(self, trainer: Any) -> bool:
        if trainer.stop_reason is not None:
            return False
        state = trainer.state_dict()
        if not finite_state(trainer, state):
            trainer.stop_reason = (f"non-finite values in the training state (weights or optimizer) "
                                   f"at step {trainer.step_num}")
            return False
        if self.path is not None:
            save_state(self.path, state)
        return True

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        if self.every and trainer.step_num % self.every == 0:
            self.save(trainer)

    def on_train_end(self, trainer: Any) -> None:
        self.save(trainer)


class Every:
    """Calls ``fn(trainer)`` every ``every`` steps and once at the end of training.

    When ``fn`` has state (``state_dict`` / ``load_state_dict``, e.g. the image metrics' best-model
    bookkeeping), it is checkpointed under ``fn``'s ``state_key`` (or class name), with the step of
    the last call, so a resumed run neither forgets it nor repeats the last call.
    """

    def __init__(self, every: int, fn: Callable[[Any], None]) -> None:
        self.every, self.fn = every, fn
        self._last = -1
        self.state_key = f"Every:{getattr(fn, 'state_key', None) or getattr(fn, '__name__', type(fn).__name__)}"

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"last": self._last}
        if hasattr(self.fn, "state_dict"):
            state["fn"] = self.fn.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last = int(state.get("last", -1))
        if "fn" in state and hasattr(self.fn, "load_state_dict"):
            self.fn.load_state_dict(state["fn"])

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        if self.every and trainer.step_num % self.every == 0 and trainer.stop_reason is None:
            self._last = trainer.step_num
            self.fn(trainer)

    def on_train_end(self, trainer: Any) -> None:
        if self._last != trainer.step_num and trainer.stop_reason is None:
            self.fn(trainer)


__all__ = [
    "EMA", "NAN_POLICIES", "Checkpoint", "Every", "FinalChecks", "Health", "Interrupted", "LRDecay", "LRScale",
    "Logger", "NanRollback", "ReferenceBatch", "SetLR", "TrainingDiverged", "final_warnings", "finite_state",
    "lr_factor",
]
