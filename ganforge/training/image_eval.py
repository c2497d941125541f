"""Image metrics during training, as a callback; the best generator so far is kept by a chosen metric."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganforge.config import Config
from ganforge.metrics.evaluate import HELDOUT, evaluate, parse_metrics
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
    """

    state_key = "ImageMetrics"

    def __init__(self, cfg: Config, artifact: Any, record: Callable[[int, dict[str, Any]], None],
                 export: Callable[[Path], None] | None = None, best_path: Path | None = None) -> None:
        self.cfg, self.artifact, self.record = cfg, artifact, record
        self.metrics = parse_metrics(cfg.eval.metrics)
        self.reference = resolve_reference(cfg)
        if self.reference is None and any(m != "modes" for m in self.metrics):
            raise ConfigError(f"eval.reference: data set '{cfg.data.name}' has no held-out split to compare "
                              "with; set eval.reference (e.g. mnist:heldout) or eval.metrics=[]")
        self.best_key = _METRIC_KEYS.get(cfg.eval.best, cfg.eval.best)
        self.export, self.best_path = export, best_path
        self.last: dict[str, Any] = {}
        self.best: dict[str, Any] = {}

    def __call__(self, trainer: Any) -> None:
        e = self.cfg.eval
        result = evaluate(self.artifact, reference=self.reference or "mnist:heldout",
                          metrics=self.metrics, n=e.n, extractor=e.extractor, progress=False)
        self.last = result
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        self.record(trainer.step_num, {f"eval/{k}": v for k, v in numbers.items()})
        if self.best_key:
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

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state.get("best", {}))
