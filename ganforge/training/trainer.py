"""The training loop: phases of an objective, optimizers, callbacks and state.

Each iteration runs the objective's phases in order (Algorithm 1 of Goodfellow et al. 2014 is a
``D`` phase repeated k times and a ``G`` phase; lazy regularization adds a ``Dreg`` phase with an
interval). For each phase the objective computes a loss (:mod:`ganforge.objectives`); the trainer
zeroes the phase's player's gradients, backpropagates and steps its optimizer. Everything else
(logging, EMA, checkpoints, sample plots, metrics, health checks) is a callback.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.config import TrainConfig
from ganforge.generator import Prior
from ganforge.objectives.base import Phase
from ganforge.registry import ConfigError
from ganforge.training.distributed import (
    World,
    any_true,
    gather,
    local_batch,
    no_sync,
    participation,
    replicate,
    unreached,
)
from ganforge.training.game import Game, shard_data
from ganforge.training.precision import Precision, maybe_compile

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
    """Runs the objective's phases on :class:`GANParts`; callbacks see every step's outputs.

    In a multi-process run (``world``, see :mod:`ganforge.training.distributed`) G and D are
    replicated with DDP, each process draws its own share of the global batch, and the processes
    agree after every step whether one of them stopped, so all stop together.
    """

    def __init__(self, parts: GANParts, cfg: TrainConfig, callbacks: list[Any] | None = None,
                 device: str | torch.device = "cpu", rank: int = 0, world: World | None = None) -> None:
        self.parts, self.cfg, self.objective = parts, cfg, parts.objective
        self.G, self.D = parts.generator, parts.discriminator
        self.callbacks = list(callbacks or [])
        self.device = torch.device(device)
        self.world = world if world is not None else World(rank, 1)
        self.rank = self.world.rank
        if not isinstance(cfg.accumulate, int) or cfg.accumulate < 1:
            raise ConfigError(f"train.accumulate must be a positive integer, got {cfg.accumulate!r}")
        self.accumulate = cfg.accumulate
        if self.accumulate > 1 and not cfg.fresh_g_noise:
            raise ConfigError("train.accumulate > 1 needs train.fresh_g_noise: true (G would reuse one "
                              "micro-batch's fakes for all)")
        local = local_batch(cfg.batch_size, self.world, self.accumulate)
        # One random stream per shard of the global batch (a process's micro-batch): shard s is
        # seeded seed + 1 + s * stride, so a run of N processes draws what one process drawing N
        # micro-batches draws, and a checkpoint's streams continue under either layout.
        self.shards = [self.rank * self.accumulate + k for k in range(self.accumulate)]
        self.rngs = [torch.Generator(device="cpu").manual_seed(cfg.seed + 1 + RANK_SEED_STRIDE * s)
                     for s in self.shards]
        self.rng = self.rngs[0]
        # torch's global RNG (dropout masks, Gumbel noise inside the networks) runs one stream per
        # shard too: shard 0 goes on from the weights' initialisation, shard s > 0 is seeded
        # seed + s * stride; with several micro-batches the trainer swaps them around each one.
        self.torch_rngs = [torch.get_rng_state() if s == 0 else
                           torch.Generator().manual_seed(cfg.seed + RANK_SEED_STRIDE * s).get_state()
                           for s in self.shards]
        torch.set_rng_state(self.torch_rngs[0])
        self.step_num = 0  # completed iterations
        self.want_stats = False  # callbacks set this when they need gradient norms this step
        self.stop_reason: str | None = None  # training diverged (NaN, a health stop)
        # The signal (SIGINT, SIGTERM) that asked training to stop: ``_signal`` as this process
        # received it, ``interrupted`` once every process agreed (the loop reads only the agreed one,
        # so no process leaves it while another enters the next step's collectives).
        self._signal: str | None = None
        self.interrupted: str | None = None
        self.early_stop: str | None = None  # a callback ended training early (no improvement): not a failure
        self._halted = False  # every process agreed to stop (multi-process runs)
        self._unreached: dict[str, list[Tensor]] = {}  # per phase: the player's parameters its loss never reaches
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
        if self.world.distributed or self.accumulate > 1:
            shard_data(parts.data, self.rank, self.world.size, cfg.seed, lanes=self.accumulate)
        self.precision = Precision(cfg.autocast, self.device)
        g_net, d_net = (maybe_compile(m, cfg.compile) if m is not None else None for m in (self.G, self.D))
        self.nets = {"g": replicate(g_net, self.world, self.device, cfg.sync_batchnorm),
                     "d": replicate(d_net, self.world, self.device, cfg.sync_batchnorm) if d_net is not None else None}
        self.game = Game(self.nets["g"], self.nets["d"], parts.prior, parts.data, self.rng, self.device, local,
                         cfg.steps, self.precision.mode, channels_last, world=self.world)

    # -- the step ---------------------------------------------------------------------------

    def run_phase(self, phase: Phase) -> dict[str, Tensor]:
        """One update of the phase's player: the objective's loss on each micro-batch, backward,
        the optimizer's step (gradients averaged over micro-batches and processes)."""
        opt = self.optimizers[phase.player]
        assert opt is not None, f"phase {phase.name}: no optimizer for player '{phase.player}'"
        frozen = [p for who in phase.freeze for p in self.params[who] if p.requires_grad]
        # Frozen players take no gradient: their DDP wrappers must not wait for one.
        frozen_nets = [self.nets[who] for who in phase.freeze]
        player = self.nets[phase.player]
        parts = len(self.rngs)
        for p in frozen:
            p.requires_grad_(False)
        micro: list[dict[str, Tensor]] = []
        opt.zero_grad(set_to_none=True)
        try:
            for k, rng in enumerate(self.rngs):
                self.game.rng, self.game.micro = rng, k
                if parts > 1:
                    torch.set_rng_state(self.torch_rngs[k])
                # Gradients are reduced across processes once, in the last micro-batch's backward.
                with no_sync(*frozen_nets, *([player] if k < parts - 1 else [])):
                    loss, logs = self.objective.loss(phase, self.game)
                    if self.world.distributed:
                        if phase.name not in self._unreached:
                            self._unreached[phase.name] = unreached(loss, self.params[phase.player])
                        loss = loss + participation(self.params[phase.player])
                    self.precision.backward(phase.player, loss / parts if parts > 1 else loss)
                micro.append(logs)
                if parts > 1:
                    self.torch_rngs[k] = torch.get_rng_state()
        finally:
            for p in frozen:
                p.requires_grad_(True)
            self.game.rng, self.game.micro = self.rngs[0], 0
            if parts > 1:
                torch.set_rng_state(self.torch_rngs[0])
        for p in self._unreached.get(phase.name, ()):
            # The zero gradient of participation only kept DDP from waiting: a parameter the loss
            # does not reach keeps no gradient, so the optimizer leaves it alone, as in one process.
            p.grad = None
        logs = micro[0] if parts == 1 else {k: torch.stack([m[k].float() for m in micro]).mean()
                                            for k in micro[0]}
        self.precision.unscale(phase.player, opt)
        if self.want_stats:
            # A player's main phase reports its gradient norm; an occasional phase (lazy
            # regularization) reports under its own name, so it never masks the main one.
            key = phase.player if phase.interval == 1 else phase.name
            logs[f"grad_norm_{key}"] = grad_norm(self.params[phase.player])
        self.precision.step(phase.player, opt)
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

    def halted(self) -> bool:
        """Whether training ends now: diverged or stopped early (on any process, once agreed)."""
        if self.world.distributed:
            return self._halted
        return self.stop_reason is not None or self.early_stop is not None

    def agree(self) -> None:
        """Every process learns whether any stopped (NaN, a health stop, an early stop) or received
        a signal, and why.

        Called after each step before the first collective callback (the checkpoint, which every
        process takes part in), so no process waits in a collective the others have left. A signal
        that reaches one process only (or each at a different step) stops all of them at the same step.
        """
        if not self.world.distributed:
            if self.interrupted is None:
                self.interrupted = self._signal
            return
        stopped, early, signalled = any_true(
            [self.stop_reason is not None, self.early_stop is not None, self._signal is not None],
            self.world, self.device)
        if not (stopped or early or signalled):
            return
        reasons = gather((self.stop_reason, self.early_stop, self._signal), self.world)
        if stopped and self.stop_reason is None:
            rank, why = next((r, s) for r, (s, _, _) in enumerate(reasons) if s is not None)
            self.stop_reason = f"{why} (on process {rank})"
        if early and self.early_stop is None and not stopped:
            self.early_stop = next(e for _, e, _ in reasons if e is not None)
        if signalled and self.interrupted is None:
            self.interrupted = next(sig for _, _, sig in reasons if sig is not None)
        self._halted = self._halted or stopped or early

    def clear_stop(self) -> None:
        """Training goes on after all: a callback undid what stopped it (a NaN rollback restored a good state)."""
        self.stop_reason = None
        self._halted = self.early_stop is not None

    def _step_end(self, out: dict[str, Tensor]) -> None:
        agreed = False
        for cb in self.callbacks:
            if getattr(cb, "collective", False) and not agreed:
                self.agree()
                agreed = True
            fn = getattr(cb, "on_step_end", None)
            if fn is not None:
                fn(self, out)
        if not agreed:
            self.agree()

    def fit(self, steps: int | None = None) -> None:
        """Train until ``steps`` iterations are done (counting those of a resumed run)."""
        total = steps if steps is not None else self.cfg.steps
        self.G.train()
        if self.D is not None:
            self.D.train()
        self._emit("on_train_start")
        self.precision.choose(self)
        if self.precision.note:
            self._emit("on_note", self.precision.note)
        with self.stopping_on_signals():
            while self.step_num < total and not self.halted() and self.interrupted is None:
                self.want_stats = any(getattr(cb, "wants_stats", lambda t: False)(self) for cb in self.callbacks)
                out = self.step()
                self._step_end(out)
            if self.interrupted is not None:
                # Only what keeps the run: the checkpoint (whatever step it is) and the log; no final
                # evaluation or export, which the resumed run will do.
                for cb in self.callbacks:
                    if hasattr(cb, "save") and getattr(cb, "collective", False):
                        cb.save(self)
                    elif hasattr(cb, "close_bar"):
                        cb.close_bar()
                return
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

    def _process_state(self) -> dict[str, Any]:
        """What differs between processes: their random streams and their data position."""
        torch_rngs = [torch.get_rng_state(), *self.torch_rngs[1:]]  # lane 0's stream is the global one now
        state: dict[str, Any] = {"rngs": [g.get_state() for g in self.rngs], "torch_rngs": torch_rngs,
                                 "noise_rngs": self.game.noise_states(self.rngs)}
        if hasattr(self.parts.data, "state_dict"):
            state["data"] = self.parts.data.state_dict()
        if self.game.sampler is not None:
            state["samples"] = self.game.sampler.lane_states()
        return state

    def state_dict(self) -> dict[str, Any]:
        """The whole training state; in a multi-process run every process must call this (it
        gathers each process's random streams and data position into the one checkpoint)."""
        procs = gather(self._process_state(), self.world)
        mine = procs[0]
        state: dict[str, Any] = {
            "step": self.step_num,
            "updates": dict(self.updates),
            "generator": self.G.state_dict(),
            "opt_g": self.parts.opt_g.state_dict(),
            "rng": mine["rngs"][0],
            "torch_rng": mine["torch_rngs"][0],
            # Every shard's stream in shard order, and the other processes' states: a run resumed
            # with another number of processes (or micro-batches) picks up the streams it has.
            "shard_rngs": [g for p in procs for g in p["rngs"]],
            # The GPU noise generator of each shard (None on the CPU, or before its first draw).
            "shard_noise_rngs": [g for p in procs for g in p["noise_rngs"]],
            # torch's global stream of each shard (dropout masks, Gumbel noise in the networks).
            "shard_torch_rngs": [g for p in procs for g in p["torch_rngs"]],
            # The epoch sampler's position in each shard's permutation (data held in memory).
            **({"shard_samples": [g for p in procs for g in p["samples"]]} if "samples" in mine else {}),
            "processes": [{k: v for k, v in p.items() if k not in ("rngs", "noise_rngs", "torch_rngs", "samples")}
                          for p in procs[1:]],
            "layout": {"processes": self.world.size, "accumulate": self.accumulate},
        }
        if self.D is not None:
            state["discriminator"] = self.D.state_dict()
            assert self.parts.opt_d is not None
            state["opt_d"] = self.parts.opt_d.state_dict()
        if "data" in mine:
            state["data"] = mine["data"]
        if hasattr(self.objective, "state_dict"):
            state["objective"] = self.objective.state_dict()
        state["precision"] = self.precision.state_dict()
        state["callbacks"] = {key: cb.state_dict() for key, cb in self._callback_keys()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_num = int(state["step"])
        self.updates.update({k: int(v) for k, v in state.get("updates", {}).items()})
        self.G.load_state_dict(state["generator"])
        self.parts.opt_g.load_state_dict(state["opt_g"])
        streams = state.get("shard_rngs") or [state["rng"]]
        for s, g in zip(self.shards, self.rngs, strict=True):
            if s < len(streams):  # a shard the saved run had continues its stream; a new one starts fresh
                g.set_state(streams[s])
        noise = state.get("shard_noise_rngs") or []
        self.game.load_noise_states(self.rngs, [noise[s] if s < len(noise) else None for s in self.shards])
        if self.rank == 0:
            mine: dict[str, Any] | None = {"torch_rng": state["torch_rng"]}
            if "data" in state:
                mine["data"] = state["data"]
        else:
            others = state.get("processes", [])
            mine = others[self.rank - 1] if self.rank - 1 < len(others) else None
        # (Checkpoints before per-shard global streams kept one per process, as ``torch_rng``.)
        globals_ = state.get("shard_torch_rngs") or [state["torch_rng"]]
        for k, s in enumerate(self.shards):
            if s < len(globals_):
                self.torch_rngs[k] = globals_[s]
            elif k == 0 and mine is not None and "torch_rng" in mine:
                self.torch_rngs[k] = mine["torch_rng"]
        torch.set_rng_state(self.torch_rngs[0])
        if self.D is not None:
            self.D.load_state_dict(state["discriminator"])
            assert self.parts.opt_d is not None
            self.parts.opt_d.load_state_dict(state["opt_d"])
        if mine is not None and "data" in mine and hasattr(self.parts.data, "load_state_dict"):
            self.parts.data.load_state_dict(mine["data"])
        layout = state.get("layout", {})
        saved_shards = int(layout.get("processes", 1)) * int(layout.get("accumulate", 1))
        samples = state.get("shard_samples")
        if self.game.sampler is not None and samples and saved_shards == self.accumulate * self.world.size:
            # The same cut of the data into shards: every shard continues where it was, whichever
            # process (or micro-batch) held it, so a resume across layouts draws the same samples.
            for k, s in enumerate(self.shards):
                self.game.sampler.load_lane(k, samples[s])
        if "objective" in state and hasattr(self.objective, "load_state_dict"):
            self.objective.load_state_dict(state["objective"])
        if "precision" in state:
            self.precision.load_state_dict(state["precision"])
        saved = state.get("callbacks", {})
        for key, cb in self._callback_keys():
            if key in saved and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved[key])

    def stopping_on_signals(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the first SIGINT or SIGTERM asks this trainer to stop (see ``fit``).

        ``fit`` holds it; a caller that has work to do after an interrupt (a checkpoint gather, a
        barrier) holds it around both, so that a signal landing late on one process of a run (a
        preemption reaching the nodes at different moments) is caught there too, instead of killing
        that process while the others wait for it in a collective."""
        return _stop_on_signals(self)


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """While training, the first SIGINT or SIGTERM asks the trainer to stop after the current step
    (it then saves a checkpoint); a second one stops at once, as without this."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if trainer._signal is not None:  # the second signal: the default behaviour
            for sig, old in previous.items():
                signal.signal(sig, old)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        trainer._signal = signal.Signals(signum).name

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
