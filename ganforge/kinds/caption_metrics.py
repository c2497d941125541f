"""Text-to-image metrics during training, as a callback, and the pictures of a captioned run."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganforge.data.captioned import normalize_caption
from ganforge.metrics.captioned import attribute_net_for, evaluate_captioned
from ganforge.report.pictures import caption_grid


class CaptionMetrics:
    """Caption consistency (held-out phrasings and combinations), R-precision, classifier FID and
    fixed-caption diversity of the sampling model (:func:`ganforge.metrics.captioned.evaluate_captioned`).
    Logs ``eval/<headline metric>``; ``last`` holds the latest full result. The attribute classifier
    is trained once, at the first call, and kept in ``cache`` (the run folder)."""

    state_key = "CaptionMetrics"

    def __init__(self, artifact: Any, data: Any, record: Callable[[int, dict[str, Any]], None],
                 cache: Path | None = None, n: int = 2000, classifier_steps: int = 1500,
                 progress: bool = False) -> None:
        from ganforge.registry import ConfigError

        if n < 1 or classifier_steps < 1:
            raise ConfigError(f"eval.captions and eval.classifier_steps must be at least 1 "
                              f"(got {n}, {classifier_steps})")
        self.artifact, self.data, self.record, self.cache, self.n = artifact, data, record, cache, n
        self.classifier_steps = classifier_steps
        self.progress = progress
        self.net: Any = None
        self.last: dict[str, Any] = {}

    @staticmethod
    def applies(data: Any) -> bool:
        return bool(getattr(data, "eval_sets", None))

    def summary(self) -> dict[str, Any]:
        """The headline numbers, then the whole final evaluation and the caption encoder's record."""
        if not self.last:
            return {}
        captions = {k: v for k, v in self.last.items() if k != "headline"}
        return {**self.last["headline"], "captions": {**captions, "encoder": self.data.summary()}}

    def __call__(self, trainer: Any) -> None:
        train = self.data.train
        if self.net is None and train.attributes is not None:
            self.net = attribute_net_for(train, self.cache, steps=self.classifier_steps, progress=self.progress)
        self.last = evaluate_captioned(self.artifact, train, self.data.eval_sets, self.net, n=self.n)
        self.record(trainer.step_num, {f"eval/{k}": v for k, v in self.last["headline"].items()})


def demo_captions(data: Any, k: int = 8) -> list[str]:
    """Captions for a run's picture: two from each evaluation split (held-out phrasings and
    combinations included), then training captions, ``k`` in all."""
    t = data.transform
    known = set(t.vocab.tokens[3:])

    def readable(text: str) -> bool:  # a user's test caption may hold no word the encoder knows
        return any(w in known for w in t.vocab.tokenize(normalize_caption(text)))

    out: list[str] = []
    for cs in getattr(data, "eval_sets", {}).values():
        out += [c for c in cs.texts[:200] if readable(c)][:2]
    out += [c for c in t.pool if c not in out][:max(0, k - len(out))]
    return out[:k]


def caption_pictures(artifact: Any, data: Any, out: Path, per: int = 8, seed: int = 0) -> None:
    """``captions.png``: a row per caption, the same noise down each column (style fixed, caption changed)."""
    caps = demo_captions(data)
    if caps:
        x = artifact.sample(per, seed=seed, captions=caps, same_noise=True)
        caption_grid(x, caps, out / "captions.png")
