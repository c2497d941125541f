"""Mixed precision and compilation of the training step.

``train.autocast``:

- ``none``: float32 throughout.
- ``bf16``: forward passes under bf16 autocast; losses, gradients and weights stay float32 (bf16
  has float32's range, so no loss scaling is needed).
- ``fp16``: forward passes under fp16 autocast with a gradient scaler per player (fp16's range is
  small: gradients are computed on a scaled loss and unscaled before clipping, logging and the
  optimizer step; a step whose gradients overflowed is skipped and the scale lowered).
- ``auto``: the half type this device runs fast (bf16 on GPUs and CPUs that have it, fp16 on GPUs
  without bf16), kept only where a few timed steps at the start show it faster than float32 for
  this model on this machine; the trial steps are undone, and the run log says what was picked and
  why. Small networks are often slower in bf16 on CPUs (the casts cost more than they save).

``train.compile``: G and D through :func:`torch.compile`; where compilation fails (no C++
compiler, an unsupported operation), the network runs eagerly with one warning.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.registry import ConfigError

MODES = ("none", "bf16", "fp16", "auto")
TRIAL_STEPS = 3  # timed steps per candidate (after one warm-up step each)
MARGIN = 0.95  # the half type must be at least 5% faster to be kept


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 instructions


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 instructions (one of :data:`BF16_CPU_FLAGS`)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def half_for(device: torch.device) -> tuple[str | None, str]:
    """The half type worth trying on ``device`` and why (None: none is)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} supports bf16"
        return "fp16", f"{torch.cuda.get_device_name(device)} has no bf16: fp16 with a gradient scaler"
    if device.type == "cpu":
        if cpu_has_fast_bf16():
            return "bf16", "this CPU has bf16 instructions (avx512_bf16 / amx_bf16)"
        return None, "this CPU has no bf16 instructions"
    return None, f"no half type tried on {device.type}"


class Precision:
    """The autocast mode of a run and, for fp16, its gradient scalers (one per player)."""

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in MODES:
            raise ConfigError(f"train.autocast: unknown mode '{mode}' (choices: {', '.join(MODES)})")
        self.requested, self.device = mode, device
        self.mode = "none" if mode == "auto" else mode  # "auto" runs float32 until it has decided
        self.decided = mode != "auto"
        self.note = ""
        self.scalers: dict[str, Any] = {}

    def _scaler(self, player: str) -> Any:
        if player not in self.scalers:
            self.scalers[player] = torch.amp.GradScaler(self.device.type)
        return self.scalers[player]

    def backward(self, player: str, loss: Tensor) -> None:
        if self.mode == "fp16":
            self._scaler(player).scale(loss).backward()
        else:
            loss.backward()

    def unscale(self, player: str, opt: torch.optim.Optimizer) -> None:
        """Gradients back to their true size (before gradient norms are read)."""
        if self.mode == "fp16":
            self._scaler(player).unscale_(opt)

    def step(self, player: str, opt: torch.optim.Optimizer) -> None:
        if self.mode == "fp16":
            scaler = self._scaler(player)
            scaler.step(opt)  # skipped when the gradients overflowed
            scaler.update()
        else:
            opt.step()

    # -- auto ----------------------------------------------------------------------------------

    def _time(self, trainer: Any, mode: str) -> float:
        """Seconds per step in ``mode`` (after a warm-up step); the caller restores the state."""
        self.mode = trainer.game.autocast = mode
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        trainer.step()
        sync()
        t = time.perf_counter()
        for _ in range(TRIAL_STEPS):
            trainer.step()
        sync()
        return (time.perf_counter() - t) / TRIAL_STEPS

    def choose(self, trainer: Any) -> None:
        """For ``auto``: time float32 and the device's half type on a few real steps, keep the faster."""
        if self.decided:
            return
        half, why = half_for(self.device)
        if half is None:
            self.mode, self.note = "none", f"autocast auto: float32 ({why})"
        else:
            saved = copy.deepcopy(trainer.state_dict())
            try:
                times = {m: self._time(trainer, m) for m in ("none", half)}
            finally:
                self.mode = trainer.game.autocast = "none"
                self.scalers.clear()
                trainer.load_state_dict(saved)
            from ganforge.training.distributed import gather
            times = gather(times, trainer.world)[0]  # every process follows rank 0's measurement
            ratio = times["none"] / times[half]
            faster = times[half] < MARGIN * times["none"]
            self.mode = half if faster else "none"
            self.note = (f"autocast auto: {half if faster else 'float32'} ({why}; {TRIAL_STEPS} timed steps: "
                         f"float32 {1e3 * times['none']:.1f} ms, {half} {1e3 * times[half]:.1f} ms per step, "
                         f"{half} {ratio:.2f}x float32's speed"
                         + ("" if faster else f", not {1 / MARGIN:.2f}x or more") + ")")
        trainer.game.autocast = self.mode
        self.decided = True

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"mode": self.mode, "decided": self.decided, "note": self.note}
        if self.scalers:
            state["scalers"] = {k: s.state_dict() for k, s in self.scalers.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.requested == "auto" and state.get("decided"):
            # A resumed auto run keeps what it picked (a new trial would change the run midway).
            self.mode, self.decided, self.note = state["mode"], True, state.get("note", "")
        for k, s in state.get("scalers", {}).items():
            if self.mode == "fp16":
                self._scaler(k).load_state_dict(s)


class Compiled(nn.Module):
    """A network run through :func:`torch.compile`, falling back to the eager module (with one
    warning) when compiling or running the compiled graph fails. Weights are the module's own."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._compiled: Any = torch.compile(module)
        self._failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self._failed:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
                self._failed = True
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "running eagerly", stacklevel=2)
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["module"], name)


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """``module`` compiled when asked (see :class:`Compiled`), else ``module`` itself."""
    return Compiled(module) if enabled else module
