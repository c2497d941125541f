"""Text metrics during training, as a callback: NLL-oracle / NLL-test, and BLEU on real text."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganforge.io import atomic_write_text
from ganforge.metrics.text import evaluate_text


def write_samples(artifact: Any, path: Path, n: int = 32, seed: int = 99, temperature: float | None = None) -> None:
    """``n`` sentences from fixed seeds, one a line (comparable across steps), written atomically."""
    lines = artifact.sample(n, seed=seed, temperature=temperature)
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


class TextMetrics:
    """Evaluates the sampling model on the run's data: NLL-oracle and NLL-test on the synthetic
    oracle; NLL-test, BLEU-2..5 against the whole test set and Self-BLEU-2..5 of ``n`` generated
    sentences on text with a test set. Logs ``eval/<metric>``; ``last`` holds the latest result."""

    state_key = "TextMetrics"

    def __init__(self, artifact: Any, data: Any, n: int, record: Callable[[int, dict[str, Any]], None]) -> None:
        self.artifact, self.data, self.n, self.record = artifact, data, n, record
        self.last: dict[str, Any] = {}

    @staticmethod
    def applies(data: Any) -> bool:
        return getattr(data, "oracle", None) is not None or getattr(data, "test_tokens", None) is not None

    def summary(self) -> dict[str, Any]:
        """The final evaluation's numbers and protocol, for ``summary.json``."""
        return {**{k: v for k, v in self.last.items() if k != "protocol"},
                "eval_protocol": self.last.get("protocol", {})}

    def __call__(self, trainer: Any) -> None:
        self.last = evaluate_text(self.artifact, self.data, n=self.n)
        numbers = {k: v for k, v in self.last.items() if isinstance(v, (int, float))}
        self.record(trainer.step_num, {f"eval/{k}": v for k, v in numbers.items()})
