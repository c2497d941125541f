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

from ganforge.nn import call_d
from ganforge.objectives.base import Batch
from ganforge.registry import ConfigError

AUTOCAST = ("none", "bf16")


class Game:
    """The minibatches and network calls of one training run (see :class:`ganforge.objectives.Game`)."""

    def __init__(self, G: nn.Module, D: nn.Module | None, prior: Any, data: Any, rng: torch.Generator,
                 device: torch.device, batch_size: int, total_steps: int, autocast: str = "none",
                 channels_last: bool = False) -> None:
        if autocast not in AUTOCAST:
            raise ConfigError(f"train.autocast: unknown mode '{autocast}' (choices: {', '.join(AUTOCAST)})")
        self.G, self.D, self.prior, self.data, self.rng = G, D, prior, data, rng
        self.device, self.batch_size, self.total_steps = device, batch_size, total_steps
        self.autocast, self.channels_last = autocast, channels_last
        self.step = 0  # the iteration being computed (completed iterations so far)

    def amp(self) -> torch.autocast:
        """bf16 autocast for forward passes when configured (losses are computed in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast == "bf16")

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
        drawn = self.prior.draw(n, self.rng, labels=given.get("y"), condition=given.get("c"))
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
