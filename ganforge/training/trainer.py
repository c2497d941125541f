"""The training loop: phases of an objective, optimizers, callbacks and state.

Each iteration runs the objective's phases in order (Algorithm 1 of Goodfellow et al. 2014 is a
``D`` phase repeated k times and a ``G`` phase; lazy regularization adds a ``Dreg`` phase with an
interval). For each phase the objective computes a loss (:mod:`ganforge.objectives`); the trainer
zeroes the phase's player's gradients, backpropagates and steps its optimizer. Everything else
(logging, EMA, checkpoints, sample plots, metrics, health checks) is a callback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.config import TrainConfig
from ganforge.generator import Prior
from ganforge.objectives.base import Phase
from ganforge.training.game import Game

# Each process of a multi-process run draws its own minibatches and noise: its seed is offset by
# rank times this (a prime, so offsets of different runs' seeds rarely collide).
RANK_SEED_STRIDE = 1_000_003


def grad_norm(params: list[Tensor]) -> Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@dataclass
class GANParts:
    """Everything the trainer needs, assembled by :mod:`ganforge.training.assemble`."""

    generator: nn.Module
    discriminator: nn.Module | None
    objective: Any  # see ganforge.objectives.base
    prior: Prior
    data: Any  # a data source (ganforge.data.source.DataSource)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    spec: Any = None  # the data's DataSpec
    transform: Any = None  # the fitted output transform exported with the generator


class Trainer:
    """Runs the objective's phases on :class:`GANParts`; callbacks see every step's outputs."""

    def __init__(self, parts: GANParts, cfg: TrainConfig, callbacks: list[Any] | None = None,
                 device: str | torch.device = "cpu", rank: int = 0) -> None:
        self.parts, self.cfg, self.objective = parts, cfg, parts.objective
        self.G, self.D = parts.generator, parts.discriminator
        self.callbacks = list(callbacks or [])
        self.device = torch.device(device)
        self.rank = rank
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1 + RANK_SEED_STRIDE * rank)
        self.step_num = 0  # completed iterations
        self.want_stats = False  # callbacks set this when they need gradient norms this step
        self.stop_reason: str | None = None  # training diverged (NaN, a health stop)
        self.early_stop: str | None = None  # a callback ended training early (no improvement): not a failure
        self.phases: list[Phase] = list(self.objective.phases(cfg))
        self.updates = {p.name: 0 for p in self.phases}
        self.optimizers = {"g": parts.opt_g, "d": parts.opt_d}
        self.params = {"g": [p for p in self.G.parameters() if p.requires_grad],
                       "d": list(self.D.parameters()) if self.D is not None else []}
        channels_last = cfg.channels_last and len(parts.data.spec.shape) == 3
        if channels_last:
            for m in (self.G, self.D):
                if m is not None:
                    m.to(memory_format=torch.channels_last)
        self.game = Game(self.G, self.D, parts.prior, parts.data, self.rng, self.device, cfg.batch_size,
                         cfg.steps, cfg.autocast, channels_last)

    # -- the step ---------------------------------------------------------------------------

    def run_phase(self, phase: Phase) -> dict[str, Tensor]:
        """One update of the phase's player: the objective's loss, backward, the optimizer's step."""
        opt = self.optimizers[phase.player]
        assert opt is not None, f"phase {phase.name}: no optimizer for player '{phase.player}'"
        frozen = [p for who in phase.freeze for p in self.params[who] if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            loss, logs = self.objective.loss(phase, self.game)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if self.want_stats:
            # A player's main phase reports its gradient norm; an occasional phase (lazy
            # regularization) reports under its own name, so it never masks the main one.
            key = phase.player if phase.interval == 1 else phase.name
            logs[f"grad_norm_{key}"] = grad_norm(self.params[phase.player])
        opt.step()
        self.updates[phase.name] += 1
        if hasattr(self.objective, "after_update"):
            self.objective.after_update(phase, self.game, logs)
        return logs

    def step(self) -> dict[str, Tensor]:
        """One iteration: every phase due at this step, each ``repeat`` times; returns detached scalars."""
        self.game.step = self.step_num
        out: dict[str, Tensor] = {}
        for phase in self.phases:
            if phase.due(self.step_num):
                for _ in range(phase.repeat):
                    out.update(self.run_phase(phase))
        self.step_num += 1
        return out

    # -- the loop ---------------------------------------------------------------------------

    def _emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    def fit(self, steps: int | None = None) -> None:
        """Train until ``steps`` iterations are done (counting those of a resumed run)."""
        total = steps if steps is not None else self.cfg.steps
        self.G.train()
        if self.D is not None:
            self.D.train()
        self._emit("on_train_start")
        while self.step_num < total and self.stop_reason is None and self.early_stop is None:
            self.want_stats = any(getattr(cb, "wants_stats", lambda t: False)(self) for cb in self.callbacks)
            out = self.step()
            self._emit("on_step_end", out)
        self._emit("on_train_end")

    # -- state for checkpoints -----------------------------------------------------------------

    def _callback_keys(self) -> list[tuple[str, Any]]:
        """Callbacks with state, each under a stable key (its ``state_key`` or class name; repeats numbered)."""
        keyed, seen = [], {}
        for cb in self.callbacks:
            if not hasattr(cb, "state_dict"):
                continue
            key = getattr(cb, "state_key", None) or type(cb).__name__
            seen[key] = seen.get(key, 0) + 1
            keyed.append((key if seen[key] == 1 else f"{key}#{seen[key]}", cb))
        return keyed

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step_num,
            "updates": dict(self.updates),
            "generator": self.G.state_dict(),
            "opt_g": self.parts.opt_g.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.D is not None:
            state["discriminator"] = self.D.state_dict()
            assert self.parts.opt_d is not None
            state["opt_d"] = self.parts.opt_d.state_dict()
        if hasattr(self.parts.data, "state_dict"):
            state["data"] = self.parts.data.state_dict()
        if hasattr(self.objective, "state_dict"):
            state["objective"] = self.objective.state_dict()
        state["callbacks"] = {key: cb.state_dict() for key, cb in self._callback_keys()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_num = int(state["step"])
        self.updates.update({k: int(v) for k, v in state.get("updates", {}).items()})
        self.G.load_state_dict(state["generator"])
        self.parts.opt_g.load_state_dict(state["opt_g"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.D is not None:
            self.D.load_state_dict(state["discriminator"])
            assert self.parts.opt_d is not None
            self.parts.opt_d.load_state_dict(state["opt_d"])
        if "data" in state and hasattr(self.parts.data, "load_state_dict"):
            self.parts.data.load_state_dict(state["data"])
        if "objective" in state and hasattr(self.objective, "load_state_dict"):
            self.objective.load_state_dict(state["objective"])
        saved = state.get("callbacks", {})
        for key, cb in self._callback_keys():
            if key in saved and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved[key])
