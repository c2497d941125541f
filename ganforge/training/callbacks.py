"""Callbacks: everything around the step (logging, EMA, checkpoints, plots, metrics, health).

A callback is any object with some of ``on_train_start(trainer)``, ``on_step_end(trainer, out)``,
``on_train_end(trainer)``, ``wants_stats(trainer) -> bool`` and ``state_dict()`` /
``load_state_dict(state)``; no base class is needed.
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.config import HealthConfig, flatten
from ganforge.nn.techniques import set_reference_batch
from ganforge.training.checkpoint import save_state


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


def _floats(out: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in out.items()}


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


def _drop_partial_last_line(path: Path) -> None:
    """Cut a log back to its last complete line.

    A run killed mid-write can leave half a record at the end of ``log.jsonl``; the resumed run
    would glue its first record to it and the file would no longer be JSON lines.
    """
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, 2)
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return  # complete
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


class Logger:
    """Writes ``log.jsonl`` (and TensorBoard events), drives the progress bar, collects warnings."""

    def __init__(self, path: Path | None, every: int, progress: bool = True,
                 tensorboard_dir: Path | None = None) -> None:
        self.path, self.every, self.progress = path, max(1, every), progress
        self.bar: Any = None
        self.tb: Any = None
        self.tb_dir = tensorboard_dir
        self.last: dict[str, float] = {}
        self.warnings: list[dict[str, Any]] = []
        self._file: Any = None

    def wants_stats(self, trainer: Any) -> bool:
        return (trainer.step_num + 1) % self.every == 0

    def on_train_start(self, trainer: Any) -> None:
        if self.path is not None:
            _drop_partial_last_line(self.path)
            self._file = open(self.path, "a", buffering=1)
        if self.tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.tb_dir))
            except ImportError:  # tensorboard is optional
                self.tb = None
        if self.progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=trainer.cfg.steps, initial=trainer.step_num, desc="train",
                            dynamic_ncols=True, leave=True)

    def record(self, step: int, values: dict[str, Any]) -> None:
        """Append one record to the log (and TensorBoard, for numbers)."""
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def image(self, step: int, tag: str, image: Any) -> None:
        """Send a picture to TensorBoard (a no-op when TensorBoard is off).

        ``image`` is an array or tensor (H, W), (H, W, C) uint8 or float in [0, 1], or the path of a
        picture file (a sample grid just written).
        """
        if self.tb is None:
            return
        import numpy as np

        if isinstance(image, (str, Path)):
            from PIL import Image

            with Image.open(image) as img:
                image = np.asarray(img.convert("RGB"))
        arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        self.tb.add_image(tag, arr, step, dataformats="HWC")

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Write the run's settings with its final metrics to TensorBoard's HParams view (no-op when
        TensorBoard is off). Nested settings are flattened to dotted keys; values that are not
        numbers, strings or booleans are written as their JSON text, ``None`` left out."""
        if self.tb_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams as hparams_summary
        except ImportError:  # tensorboard is optional
            return
        flat = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
                for k, v in flatten(hparams).items() if v is not None}
        scores = {f"hparam/{k}": float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        # The summary goes into the run's own folder (add_hparams would make a sub-run per call); the
        # metrics are also scalars there, which is where the HParams view reads their values.
        exp, ssi, sei = hparams_summary(flat, scores)
        writer = self.tb if self.tb is not None else SummaryWriter(str(self.tb_dir))
        try:
            fw = writer._get_file_writer()
            for summary in (exp, ssi, sei):
                fw.add_summary(summary)
            for k, v in scores.items():
                writer.add_scalar(k, v)
        finally:
            if writer is not self.tb:
                writer.close()

    def warn(self, step: int, kind: str, message: str, screen: str | None = None, **fields: Any) -> None:
        """Log a health warning (with ``fields``, numbers that go with it) and show it on screen above
        the progress bar (as ``screen`` when given)."""
        self.warnings.append({"step": step, "kind": kind, "message": message, **fields})
        self.record(step, {"warning": kind, "message": message, **fields})
        text = screen if screen is not None else f"[ganforge] step {step}: {message}"
        if self.bar is not None:
            self.bar.write(text)
        else:
            import sys
            print(text, file=sys.stderr)

    def on_note(self, trainer: Any, text: str) -> None:
        """A decision of the run worth knowing (what ``train.autocast: auto`` picked and why)."""
        self.record(trainer.step_num, {"note": text})
        if self.progress:
            import sys
            print(f"[ganforge] {text}", file=sys.stderr)

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        step = trainer.step_num
        if step % self.every == 0:
            self.last = _floats(out)
            self.record(step, self.last)
            if self.bar is not None:
                shown = {k: f"{v:.3g}" for k, v in self.last.items()
                         if k in ("d_loss", "g_loss", "d_real", "d_fake", "cond_loss", "reconstruction", "kl")}
                self.bar.set_postfix(shown, refresh=False)
        if self.bar is not None:
            self.bar.update(1)

    def state_dict(self) -> dict[str, Any]:
        """The warnings so far (a resumed run's summary lists those of every segment). The checks of
        a finished run's final evaluation are left out: a run continued past it is judged at its own end."""
        return {"warnings": [dict(w) for w in self.warnings if not w.get("final")]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The saved warnings first, then any this process has logged since (a NaN rollback restores
        # a checkpoint older than the warning that caused it: that warning happened and stays).
        saved = [dict(w) for w in state.get("warnings", [])]
        self.warnings = saved + [w for w in self.warnings if w not in saved]

    def rewind(self, step: int) -> None:
        """Training went back to ``step`` (a NaN rollback): the progress bar follows."""
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def close_bar(self) -> None:
        """End the progress bar (an interrupted run: the log stays open for the last records)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_end(self, trainer: Any) -> None:
        # Only the bar ends here: callbacks after this one (the final evaluation) still log; the
        # owner of the logger calls close() (train() does so in its finally).
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class Health:
    """Health checks on the logged values: NaN/Inf, D saturation, gradient norms, mode drops.

    NaN or Inf stops the run (``trainer.stop_reason``) before any checkpoint of the bad state is
    written, so the last good checkpoint survives (``train.nan_policy: rollback`` then goes back to it,
    see :class:`NanRollback`; ``on_nan`` says what happens next in the warning).
    """

    def __init__(self, logger: Logger, cfg: HealthConfig, probabilistic: bool,
                 on_nan: str = "stopping, last good checkpoint kept") -> None:
        self.logger, self.cfg, self.probabilistic, self.on_nan = logger, cfg, probabilistic, on_nan
        self._saturated_for = 0
        self._warned: set[str] = set()
        self.best_modes: int | None = None
        self.last_modes: dict[str, float] = {}  # the latest evaluation's modes (the final one, at the end)

    def _once(self, step: int, kind: str, message: str) -> None:
        # Each kind of warning is shown once until the condition clears, not at every log step.
        if kind not in self._warned:
            self._warned.add(kind)
            self.logger.warn(step, kind, message)

    def check(self, trainer: Any, values: dict[str, float]) -> None:
        step = trainer.step_num
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            trainer.stop_reason = f"non-finite values at step {step}: {', '.join(bad)}"
            self.logger.warn(step, "nan", f"{trainer.stop_reason}; {self.on_nan}")
            return
        c = self.cfg
        if self.probabilistic and "d_real" in values:
            sat = values["d_real"] > c.saturation and values["d_fake"] < 1 - c.saturation
            self._saturated_for = self._saturated_for + 1 if sat else 0
            if self._saturated_for >= c.saturation_patience:
                self._once(step, "d_saturation",
                           f"D saturates (D(x)={values['d_real']:.3f}, D(G(z))={values['d_fake']:.3f}): "
                           "G's gradient vanishes; try the non-saturating loss, label smoothing or instance noise")
            elif self._saturated_for == 0:
                self._warned.discard("d_saturation")
        for who in ("g", "d"):
            g = values.get(f"grad_norm_{who}")
            if g is None:
                continue
            if g < c.grad_vanish:
                self._once(step, f"vanishing_{who}", f"{who.upper()}'s gradient norm {g:.2e} has vanished")
            elif g > c.grad_explode:
                self._once(step, f"exploding_{who}", f"{who.upper()}'s gradient norm {g:.2e} is exploding")
            else:
                self._warned.discard(f"vanishing_{who}")
                self._warned.discard(f"exploding_{who}")

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        if trainer.step_num % self.logger.every == 0:
            self.check(trainer, self.logger.last or _floats(out))

    def modes(self, step: int, captured: int, total: int, quality: float | None = None) -> None:
        """Called by the toy-data evaluation (``quality``: the high-quality fraction): warn when modes
        captured drops."""
        self.last_modes = {"modes_captured": captured, "modes_total": total}
        if quality is not None:
            self.last_modes["high_quality_fraction"] = quality
        if self.best_modes is not None and captured <= self.best_modes - self.cfg.mode_drop:
            self._once(step, "mode_drop",
                       f"modes captured dropped from {self.best_modes} to {captured} of {total} (mode collapse?)")
        elif self.best_modes is not None and captured >= self.best_modes:
            self._warned.discard("mode_drop")
        self.best_modes = captured if self.best_modes is None else max(self.best_modes, captured)

    def state_dict(self) -> dict[str, Any]:
        """What the checks remember: the warnings standing (not repeated after a resume), the
        saturation streak and the modes seen."""
        return {"best_modes": self.best_modes, "warned": sorted(self._warned), "saturated_for": self._saturated_for,
                "last_modes": dict(self.last_modes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_modes = state.get("best_modes")
        # A rollback keeps the warnings standing in this process too: they would only fire again.
        self._warned |= set(state.get("warned", []))
        self._saturated_for = int(state.get("saturated_for", 0))
        self.last_modes = dict(state.get("last_modes", {}))


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


NAN_POLICIES = ("stop", "rollback")


class NanRollback:
    """``train.nan_policy: rollback``: when a step has stopped the run on NaN/Inf (``trainer.stop_reason``),
    go back to the last checkpoint (weights, optimizers, EMA, step, random streams: what ``--resume``
    loads), multiply every learning rate by ``factor`` and train on; after ``max_rollbacks`` rollbacks,
    or with no checkpoint to go back to, the run stops as under ``stop``.

    ``restore(trainer)`` loads the last checkpoint into the trainer and returns None, or says why it cannot.
    Learning rates are scaled in the optimizers and in every callback with ``scale_lr`` (the schedules,
    which would otherwise set them back). This callback comes after the checkpoint, so a step's state is
    judged (and a good one saved) before it acts.
    """

    state_key = "NanRollback"

    def __init__(self, logger: Logger, restore: Callable[[Any], str | None], factor: float, max_rollbacks: int) -> None:
        self.logger, self.restore, self.factor, self.max_rollbacks = logger, restore, factor, max_rollbacks
        self.rollbacks = 0  # in the whole run (checkpointed, so a resumed run keeps counting)

    def _stop(self, trainer: Any, why: str) -> None:
        trainer.stop_reason = f"{trainer.stop_reason}; {why}"
        self.logger.warn(trainer.step_num, "nan", f"{trainer.stop_reason}; stopping")

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        # Every process rolls back, or none: a stop the checkpoint found on one process alone (after the
        # trainer's agreement) is shared first (a no-op in one process).
        trainer.agree()
        if trainer.stop_reason is None:
            return
        if self.rollbacks >= self.max_rollbacks:
            self._stop(trainer, f"not rolled back again after {self.rollbacks} rollbacks (train.nan_max_rollbacks)")
            return
        step, done, cause = trainer.step_num, self.rollbacks, trainer.stop_reason
        why = self.restore(trainer)  # loads this callback's state too: the count as it was at the checkpoint
        if why is not None:
            self._stop(trainer, f"cannot roll back: {why}")
            return
        saved, self.rollbacks = self.rollbacks, done + 1
        # The checkpoint's learning rates carry the rollbacks made before it; those made since are applied again.
        scale = self.factor ** (self.rollbacks - saved)
        for opt in (trainer.parts.opt_g, trainer.parts.opt_d):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] *= scale
        for cb in trainer.callbacks:
            if hasattr(cb, "scale_lr"):
                cb.scale_lr(scale)
        trainer.clear_stop()
        self.logger.rewind(trainer.step_num)
        lr = {who: opt.param_groups[0]["lr"] for who, opt in (("g", trainer.parts.opt_g), ("d", trainer.parts.opt_d))
              if opt is not None}
        shown = ", ".join(f"{who.upper()} {v:.3g}" for who, v in lr.items())
        self.logger.warn(step, "nan_rollback",
                         f"{cause}: rolled back to the checkpoint of step {trainer.step_num} (rollback "
                         f"{self.rollbacks} of at most {self.max_rollbacks}); learning rates x{self.factor:g}: {shown}",
                         to_step=trainer.step_num, lr=lr)

    def state_dict(self) -> dict[str, int]:
        return {"rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state.get("rollbacks", 0))


def final_warnings(final: dict[str, Any], cfg: HealthConfig,
                   fid_history: list[tuple[int, float]] | tuple = ()) -> list[tuple[str, str]]:
    """What is wrong with a run's final evaluation: ``(kind, message)`` pairs, none for a good run.

    ``final`` holds the final metrics (toy data: ``modes_captured`` and ``modes_total``; images:
    ``fid``); ``fid_history`` the run's FID evaluations as ``(step, fid)``, the final one included.
    Comparing evaluations with each other (the mode-drop check) says nothing about a run evaluated
    once; these compare the end with the data and with the run's best.
    """
    out = []
    captured, total = final.get("modes_captured"), final.get("modes_total")
    if captured is not None and total and captured < cfg.min_modes_fraction * total:
        hq = final.get("high_quality_fraction")
        quality = f", {100 * hq:.1f}% of samples near a mode" if hq is not None else ""
        out.append(("few_modes", f"the final samples are far from the data: {captured} of {total} modes "
                                 f"captured{quality} (below health.min_modes_fraction={cfg.min_modes_fraction:g}); "
                                 "train longer or change the settings"))
    fid = final.get("fid")
    finite = [(s, float(v)) for s, v in fid_history if math.isfinite(float(v))]
    if fid is not None and cfg.fid_blowup > 0 and finite:
        step, best = min(finite, key=lambda sv: sv[1])
        if not math.isfinite(float(fid)) or float(fid) > cfg.fid_blowup * best:
            out.append(("fid_blowup", f"the final FID {float(fid):.1f} is more than health.fid_blowup="
                                      f"{cfg.fid_blowup:g} times the run's best, {best:.1f} at step {step}: "
                                      "training got worse (the best generator is kept with eval.best: fid)"))
    return out


class FinalChecks:
    """After the final evaluation (it comes after the evaluation callbacks): :func:`final_warnings`
    as warnings in the log, each shown as one ``ganforge: warning:`` line; ``fired`` holds them."""

    def __init__(self, logger: Logger, cfg: HealthConfig, health: Health, image_eval: Any = None) -> None:
        self.logger, self.cfg, self.health, self.image_eval = logger, cfg, health, image_eval
        self.fired: list[tuple[str, str]] = []

    def on_train_end(self, trainer: Any) -> None:
        if trainer.stop_reason is not None:
            return
        final: dict[str, Any] = dict(self.health.last_modes)
        history: list[tuple[int, float]] = []
        if self.image_eval is not None and "fid" in self.image_eval.last:
            final["fid"] = self.image_eval.last["fid"]
            history = list(self.image_eval.fid_history)
        self.fired = final_warnings(final, self.cfg, history)
        for kind, message in self.fired:
            self.logger.warn(trainer.step_num, kind, message, screen=f"ganforge: warning: {message}", final=True)


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
