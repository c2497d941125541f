"""Image metrics during training, as a callback; the best generator so far is kept by a chosen metric.

An evaluation never costs the run: when the feature network cannot be had here (the Inception file
cannot be downloaded on an offline machine, a wrong file is in its place, a package is missing), the
image metrics are skipped with one warning in the log naming the file and where to put it, the run
trains on, saves, and its summary says what was skipped (``image_metrics_skipped``); ``ganforge eval
RUN`` computes them once the file is there.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganforge.config import Config
from ganforge.metrics.evaluate import HELDOUT, check_extractor_name, evaluate, parse_metrics
from ganforge.metrics.inception import ExtractorUnavailable
from ganforge.registry import ConfigError

# Metrics where a larger number is better; the rest (fid, kid, kl_to_uniform) are distances.
HIGHER_IS_BETTER = {"inception_score", "precision", "recall", "density", "coverage", "modes_covered"}
_METRIC_KEYS = {"fid": "fid", "kid": "kid", "is": "inception_score", "modes": "modes_covered"}


class HeldOut:
    """The held-out part of a data set built from the run's own data options (an image folder's
    ``split: heldout``): what a run on the user's images is measured against by default."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name, self.options = name, {**options, "split": "heldout"}
        self._images: Any = None
        path = options.get("path", "")
        self.description = f"{name}:{path} (held out: {options.get('holdout', 0.1):.0%} of its files)"

    def images(self) -> Any:
        """The held-out images (decoded once)."""
        if self._images is None:
            from ganforge.data import build_dataset

            self._images = build_dataset(self.name, {**self.options, "stream": False}).x
        return self._images


# Data sets built from the user's files whose held-out part is the default reference.
OWN_DATA = {"image-folder"}


def resolve_reference(cfg: Config) -> str | HeldOut | None:
    """The configured reference, or for ``auto`` the data set's held-out split (a named split, or the
    held-out part of the user's own folder); None when it has none."""
    if cfg.eval.reference != "auto":
        return cfg.eval.reference
    if cfg.data.name in OWN_DATA:
        options = dict(cfg.data.options)
        if cfg.data.path:
            options["path"] = cfg.data.path
        return HeldOut(cfg.data.name, options)
    return HELDOUT.get(cfg.data.name)


class ImageMetrics:
    """Evaluates the sampling model (the EMA generator when EMA is on) against the reference.

    Called by :class:`~ganforge.training.callbacks.Every`; logs ``eval/<metric>`` and, with
    ``eval.best`` set, exports the best generator so far to ``best_path`` (atomically). The best
    so far is state: it is checkpointed, so a resumed run never replaces the best by a worse model.

    The evaluation's own warnings (digit features of colour images, too few samples) and a skipped
    evaluation go to ``warn(step, kind, message)`` (default: the run's
    logger, found among the trainer's callbacks by its ``warn``), each once a run.
    A skipped evaluation is retried only once the file that was missing (or wrong) is in place.
    """

    state_key = "ImageMetrics"

    def __init__(self, cfg: Config, artifact: Any, record: Callable[[int, dict[str, Any]], None],
                 export: Callable[[Path], None] | None = None, best_path: Path | None = None,
                 warn: Callable[[int, str, str], None] | None = None) -> None:
        self.cfg, self.artifact, self.record, self.warn = cfg, artifact, record, warn
        self.metrics = parse_metrics(cfg.eval.metrics)
        check_extractor_name(cfg.eval.extractor)  # a typo fails at the start, not at the first evaluation
        self.reference = resolve_reference(cfg)
        if self.reference is None and any(m != "modes" for m in self.metrics):
            raise ConfigError(f"eval.reference: data set '{cfg.data.name}' has no held-out split to compare "
                              "with; set eval.reference (e.g. mnist:heldout) or eval.metrics=[]")
        self.best_key = _METRIC_KEYS.get(cfg.eval.best, cfg.eval.best)
        self.export, self.best_path = export, best_path
        self.last: dict[str, Any] = {}
        self.best: dict[str, Any] = {}
        self.fid_history: list[tuple[int, float]] = []  # (step, FID) of every evaluation: the final check's best
        self.unavailable: ExtractorUnavailable | None = None  # why the image metrics were last skipped
        self._warned: set[tuple[str, str]] = set()

    def _warn(self, trainer: Any, kind: str, message: str) -> None:
        """A warning into the run's log (once a run for each message), or to stderr without a logger."""
        if (kind, message) in self._warned:
            return
        self._warned.add((kind, message))
        warn = self.warn
        if warn is None:
            # (the run's Logger: the callback that warns and records)
            logger = next((cb for cb in getattr(trainer, "callbacks", [])
                           if hasattr(cb, "warn") and hasattr(cb, "record")), None)
            warn = logger.warn if logger is not None else None
        if warn is not None:
            warn(trainer.step_num, kind, message)
        else:
            print(f"[ganforge] step {trainer.step_num}: {message}", file=sys.stderr)

    def _evaluate(self, metrics: list[str]) -> dict[str, Any]:
        e = self.cfg.eval
        return evaluate(self.artifact, reference=self.reference or "mnist:heldout", metrics=metrics, n=e.n,
                        extractor=e.extractor, progress=False, warn=False)

    def _skipped(self, trainer: Any, error: ExtractorUnavailable) -> dict[str, Any]:
        """What an evaluation without its feature network still gives: the warning, the mode metrics
        (their classifier ships with ganforge) and a line for the summary."""
        # Kept without its traceback, whose frames hold the evaluation's images.
        self.unavailable = error = ExtractorUnavailable(str(error), error.path)
        skipped = ", ".join(m for m in self.metrics if m != "modes")
        self._warn(trainer, "eval_skipped", (
            f"image metrics {skipped} skipped: {error}; training goes on without them, and "
            "`ganforge eval <run folder>` computes them once the file is in place"))
        result = self._evaluate(["modes"]) if "modes" in self.metrics else {}
        result.pop("protocol", None)
        result["image_metrics_skipped"] = f"{skipped}: {error}"
        return result

    def __call__(self, trainer: Any) -> None:
        missing = self.unavailable.path if self.unavailable is not None else None
        if self.unavailable is not None and (missing is None or not missing.is_file()):
            # Nothing changed since the last try: skip without another download attempt (a dead network
            # can take a minute to say so).
            result = self._skipped(trainer, self.unavailable)
        else:
            try:
                result = self._evaluate(self.metrics)
                self.unavailable = None
            except ExtractorUnavailable as error:
                result = self._skipped(trainer, error)
        for w in result.get("warnings", []):
            self._warn(trainer, w["warning"], w["message"])
        self.last = result
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "fid" in numbers and math.isfinite(numbers["fid"]):  # the checkpoint holds finite numbers only
            self.fid_history.append((trainer.step_num, float(numbers["fid"])))
        if numbers:
            self.record(trainer.step_num, {f"eval/{k}": v for k, v in numbers.items()})
        # Skipped: no number to keep the best by this time (unless it is a mode metric, still computed).
        if self.best_key and not (self.unavailable is not None and self.best_key not in numbers):
            if self.best_key not in numbers:
                raise ConfigError(f"eval.best: '{self.cfg.eval.best}' is not among the computed metrics "
                                  f"({', '.join(numbers)})")
            value = float(numbers[self.best_key])
            old = self.best.get("value")
            better = old is None or (value > old if self.best_key in HIGHER_IS_BETTER else value < old)
            if better and math.isfinite(value):
                self.best = {"metric": self.best_key, "value": value, "step": trainer.step_num}
                if self.export is not None and self.best_path is not None:
                    self.export(self.best_path)

    def summary(self) -> dict[str, Any]:
        """The final evaluation's numbers, its protocol and the best model's step, for ``summary.json``."""
        out: dict[str, Any] = {k: v for k, v in self.last.items() if k != "protocol"}
        out["eval_protocol"] = self.last.get("protocol", {})
        if self.best:
            out["best"] = self.best
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "fid_history": [list(e) for e in self.fid_history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state.get("best", {}))
        self.fid_history = [(int(s), float(v)) for s, v in state.get("fid_history", [])]
