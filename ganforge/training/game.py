"""What the trainer offers an objective: minibatches, G's samples and D's judgement, on the device.

Real batches come from the data source, fake ones from the prior and G. The conditions of fakes
come from the prior (labels, InfoGAN codes) or, when the data source can draw them
(``fake_conditions``), from the data (training-by-sampling, captions). Every random number is drawn
from the trainer's seeded generator, so a run is a function of its seed, and a resumed run draws the
same numbers as an uninterrupted one.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ganforge.data.tensor import EpochSampler
from ganforge.nn import call_d
from ganforge.objectives.base import Batch
from ganforge.training.distributed import SINGLE, World, mean

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}

# The in-memory data set moves to the GPU once when it takes at most this share of free GPU memory.
GPU_DATA_SHARE = 0.25


def epoch_sampler(data: Any) -> EpochSampler | None:
    """The data source's epoch sampler, when it draws through one (in-memory tensors, text, captions)."""
    sampler = getattr(data, "sampler", None)
    return sampler if isinstance(sampler, EpochSampler) else None


def shard_data(data: Any, index: int, count: int, seed: int = 0, lanes: int = 1) -> None:
    """Give process ``index`` of ``count`` its own disjoint part of the data. An epoch sampler is
    cut into one shard per micro-batch (``lanes`` per process), so N processes draw what one
    process with N micro-batches draws; a streaming source (its own ``set_shard``) is cut per
    process. Sources that draw fresh samples need nothing (each micro-batch draws from its own
    random stream)."""
    sampler = epoch_sampler(data)
    if sampler is not None:
        sampler.set_shard(index, count, lanes)
    elif hasattr(data, "set_shard") and count > 1:
        data.set_shard(index, count, seed)


def place_data(data: Any, device: torch.device) -> None:
    """Move an in-memory data set to the GPU once, when it fits comfortably."""
    if device.type != "cuda" or not hasattr(data, "to_device"):
        return
    free, _ = torch.cuda.mem_get_info(device)
    if data.nbytes() <= GPU_DATA_SHARE * free:
        data.to_device(device)


class Game:
    """The minibatches and network calls of one training run (see :class:`ganforge.objectives.Game`)."""

    def __init__(self, G: nn.Module, D: nn.Module | None, prior: Any, data: Any, rng: torch.Generator,
                 device: torch.device, batch_size: int, total_steps: int, autocast: str = "none",
                 channels_last: bool = False, world: World = SINGLE) -> None:
        self.G, self.D, self.prior, self.data, self.rng = G, D, prior, data, rng
        self.device, self.batch_size, self.total_steps = device, batch_size, total_steps
        self.autocast, self.channels_last, self.world = autocast, channels_last, world
        self.step = 0  # the iteration being computed (completed iterations so far)
        # The data's epoch sampler, if it has one: each micro-batch draws from its own shard of it.
        self.sampler = epoch_sampler(data)
        self.micro = 0  # the micro-batch being computed (gradient accumulation)
        # On a GPU, G's noise is drawn there, from a generator of its own seeded from the
        # trainer's, so no host-to-device copy sits in the step. ``noise_device`` is where those
        # generators live (None: noise comes from the trainer's CPU streams); their states are part
        # of the checkpoint (see :meth:`noise_states`).
        self.noise_device: torch.device | None = device if device.type == "cuda" else None
        self._device_rngs: dict[int, torch.Generator] = {}
        place_data(data, device)

    @property
    def micro(self) -> int:
        """The micro-batch being computed (gradient accumulation); it picks the data shard it draws from."""
        return self._micro

    @micro.setter
    def micro(self, k: int) -> None:
        self._micro = k
        if self.sampler is not None and k < self.sampler.lanes:
            self.sampler.lane = k

    def amp(self) -> torch.autocast:
        """Half-precision autocast for forward passes when configured (losses are computed in float32)."""
        dtype = HALF.get(self.autocast)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def noise_rng(self) -> tuple[torch.Generator, torch.device | str]:
        """Where G's noise is drawn: the trainer's generator on the CPU, a device generator on a GPU."""
        if self.noise_device is None:
            return self.rng, "cpu"
        g = self._device_rngs.get(id(self.rng))
        if g is None:
            seed = int(torch.randint(2**62, (1,), generator=self.rng))
            g = self._device_rngs[id(self.rng)] = torch.Generator(device=self.noise_device).manual_seed(seed)
        return g, self.noise_device

    def noise_states(self, rngs: list[torch.Generator]) -> list[Tensor | None]:
        """The state of the noise generator paired with each of ``rngs`` (None where it has none yet)."""
        return [self._device_rngs[id(r)].get_state() if id(r) in self._device_rngs else None for r in rngs]

    def load_noise_states(self, rngs: list[torch.Generator], states: list[Tensor | None]) -> None:
        """Restore what :meth:`noise_states` returned. A stream saved without a noise generator (or
        whose run drew noise on the CPU) drops this one's, so it is seeded again from the restored
        CPU stream as the saved run would have seeded it."""
        for k, r in enumerate(rngs):
            self._device_rngs.pop(id(r), None)
            state = states[k] if k < len(states) else None
            if state is not None and self.noise_device is not None:
                g = torch.Generator(device=self.noise_device)
                g.set_state(state)
                self._device_rngs[id(r)] = g

    def reduce_mean(self, t: Tensor) -> Tensor:
        """``t`` averaged over the processes of a multi-process run (statistics that must agree)."""
        return mean(t, self.world)

    def _to_device(self, batch: Batch) -> Batch:
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last and "x" in out and out["x"].dim() == 4:
            out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
        return out

    def real(self, n: int | None = None) -> Batch:
        """A real minibatch of named tensors (``x``, and ``y``, ``c``... as the data supplies them)."""
        return self._to_device(self.data.batch(n or self.batch_size, self.rng))

    def noise(self, n: int | None = None, condition: Tensor | None = None) -> Batch:
        """G's inputs: ``v`` and its parts (``y`` labels, ``codes``, ``c`` data conditions);
        ``condition`` replaces the data's conditions (GAN-INT's interpolated captions)."""
        n = n or (len(condition) if condition is not None else self.batch_size)
        if condition is not None:
            given = {"c": condition}
        else:
            given = self.data.fake_conditions(n, self.rng) if hasattr(self.data, "fake_conditions") else {}
        generator, where = self.noise_rng()
        drawn = self.prior.draw(n, generator, where, labels=given.get("y"), condition=given.get("c"))
        return self._to_device({**given, **drawn})

    def fake(self, n: int | None = None, grad: bool = True, condition: Tensor | None = None) -> Batch:
        """G's samples ``x`` with their inputs (and any other outputs G names); ``grad=False``
        keeps no graph (D's phase); ``condition`` as in :meth:`noise`."""
        batch = self.noise(n, condition)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), self.amp():
            out = self.G(batch["v"])
        # A generator may return named outputs ({"x": ..., "logits": ...}) for its objective's terms.
        batch.update(out if isinstance(out, dict) else {"x": out})
        return batch

    def judge(self, x: Tensor, c: Tensor | None = None, features: bool = False,
              aux: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """D's raw output per sample (float32, shape (n,)) and, when asked, its features and the
        output of its auxiliary head, all from one forward call of the (possibly wrapped) module."""
        assert self.D is not None, "this objective has no discriminator"
        kwargs = {"aux": True} if aux else {"features": True} if features else {}
        with self.amp():
            result = call_d(self.D, x, c, **kwargs)
        out, extras = result if isinstance(result, tuple) else (result, {})
        if isinstance(extras, Tensor):
            extras = {"features": extras}
        out = out.float()
        # A user D ending in Linear(h, 1) gives (n, 1); the losses take (n,), and (n, 1) would
        # broadcast against per-sample targets (label smoothing/flipping) into an (n, n) loss.
        return (out.squeeze(1) if out.dim() == 2 and out.shape[1] == 1 else out), extras
