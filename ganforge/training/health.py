"""Health checks of a run: warnings on the logged values (:class:`Health`), what happens on NaN/Inf
(:class:`NanRollback`, ``train.nan_policy``), and the checks of the final evaluation
(:func:`final_warnings`, :class:`FinalChecks`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from ganforge.config import HealthConfig
from ganforge.training.logger import Logger, _floats


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

    def __init__(self, logger: Logger, cfg: HealthConfig, health: Health, evaluations: Sequence[Any] = ()) -> None:
        self.logger, self.cfg, self.health, self.evaluations = logger, cfg, health, list(evaluations)
        self.fired: list[tuple[str, str]] = []

    def on_train_end(self, trainer: Any) -> None:
        if trainer.stop_reason is not None:
            return
        final: dict[str, Any] = dict(self.health.last_modes)
        history: list[tuple[int, float]] = []
        # The FID check reads the evaluation that keeps an FID history (the image metrics).
        fid = next((e for e in self.evaluations if hasattr(e, "fid_history") and "fid" in e.last), None)
        if fid is not None:
            final["fid"] = fid.last["fid"]
            history = list(fid.fid_history)
        self.fired = final_warnings(final, self.cfg, history)
        for kind, message in self.fired:
            self.logger.warn(trainer.step_num, kind, message, screen=f"ganforge: warning: {message}", final=True)
