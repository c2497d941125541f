"""Text: NLL-oracle / NLL-test, BLEU and Self-BLEU during training; sentences as the samples."""
from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path
from typing import Any

from ganforge.config import Config
from ganforge.kinds.base import DataKind, RunContext, register_kind
from ganforge.kinds.text_metrics import TextMetrics, write_samples
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec

MAX_SENTENCES = 50  # sentences on the report page


def text_eval(cfg: Config, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Text metrics of a run (``--curve``: over softmax temperatures)."""
    from ganforge.data import build_dataset
    from ganforge.metrics.text import CURVE_TEMPERATURES, evaluate_text, temperature_curve

    temps: list[float] = []
    if args.curve is not None:
        try:
            temps = [float(t) for t in args.curve.split(",")] if args.curve else list(CURVE_TEMPERATURES)
        except ValueError:
            temps = []
        if not temps or not min(temps) > 0:
            raise ConfigError(f"--curve: temperatures must be positive numbers, e.g. --curve 0.7,0.85,1.0 "
                              f"(got '{args.curve}')")
        if args.temperature is not None:
            raise ConfigError("--curve sweeps the temperature; --temperature applies without it")
    if args.n is not None and args.n < 2:
        raise ConfigError("--n must be at least 2 (Self-BLEU compares sentences with each other)")
    n = args.n or 10_000
    data = build_dataset(cfg.data.name, cfg.data.options, cfg.data.path)
    if args.curve is None:
        return evaluate_text(gen, data, n=n, fast=args.fast, temperature=args.temperature or 1.0)
    if not TextMetrics.applies(data):
        raise ConfigError("--curve needs a test set to measure quality against: train with "
                          "data.options.test_path=FILE (or use the oracle)")
    show = None if args.no_progress else (lambda m: print(
        f"temperature {m['temperature']}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()
                                                       if isinstance(v, float) and k != "temperature"),
        file=sys.stderr))
    return {"curve": temperature_curve(gen, data, temps, n=n, fast=args.fast, progress=show),
            "protocol": {"samples": n, "fast": args.fast, "temperatures": temps}}


class Text(DataKind):
    """Token sequences (a vocabulary of ids)."""

    name = "text"
    description = "text: NLL-oracle/NLL-test, BLEU, Self-BLEU; sentences"
    sample_flags = frozenset({"temperature"})
    eval_flags = frozenset({"curve", "temperature", "fast"})

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        return spec.is_text

    def evaluations(self, run: RunContext) -> list[Any]:
        if not TextMetrics.applies(run.data):
            return []
        return [TextMetrics(run.artifact, run.data, run.cfg.model.text.eval_samples, run.logger.record)]

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        write_samples(artifact, path.with_suffix(".txt"))  # sentences, not a picture
        return None

    def finish(self, run: RunContext, out: Path) -> None:
        write_samples(run.artifact, out / "samples.txt", n=200, seed=0)

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        out = Path(args.out)
        if out.suffix != ".txt":
            raise ConfigError(f"--out: a text generator writes sentences to a .txt file, got '{out}'")
        write_samples(gen, out, args.n, args.seed, args.temperature)
        return {"n": args.n, "out": str(out), "temperature": args.temperature or 1.0}

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        result = text_eval(cfg, gen, args)
        if "curve" in result:
            from ganforge.report.plots import plot_text_curves

            plot_text_curves({str(run.name): result["curve"]}, out.with_suffix(".png"))
        return result

    def report(self, run: Any) -> str:
        """The final sample sentences."""
        p = run.path / "samples.txt"
        if not p.is_file():
            return ""
        lines = [s for s in p.read_text(encoding="utf-8", errors="replace").splitlines() if s.strip()]
        items = "".join(f"<li>{escape(s)}</li>" for s in lines[:MAX_SENTENCES])
        more = f" (the first {MAX_SENTENCES} of {len(lines)})" if len(lines) > MAX_SENTENCES else ""
        return f'<h3>sample sentences{more}</h3><ol class="sentences">{items}</ol>'


register_kind(Text(), builtin=True)
