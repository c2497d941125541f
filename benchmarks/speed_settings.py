#!/usr/bin/env python3
"""Which speed switches help on this machine? Times ganforge's training step on the
mnist-dcgan-plain preset (the demo's networks, without the k-means set-up) at half and full
DCGAN width with float32 NCHW, channels-last, bf16 autocast and both, in rounds (the order of the
configurations reversed every other round); prints images/s and the ratio of each setting to
float32 NCHW at the same width.

The ratio of a configuration is computed per round (its images/s over float32 NCHW's at the same
width in the same round) and the figure reported is the median of those per-round ratios; the
images/s reported beside it is the median over rounds. Every round's figures are printed and kept.

Usage: python benchmarks/speed_settings.py [--rounds 3] [--steps 60] [--warmup 5] [--widths 32 64]
           [--out docs/results/speed_settings.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

from ganforge.config import load_config  # noqa: E402
from ganforge.training.assemble import assemble  # noqa: E402
from ganforge.training.trainer import Trainer  # noqa: E402

SETTINGS = {"fp32": [], "channels_last": ["train.channels_last=true"], "bf16": ["train.autocast=bf16"],
            "channels_last+bf16": ["train.channels_last=true", "train.autocast=bf16"]}


def images_per_second(overrides: list[str], steps: int, warmup: int = 5) -> float:
    cfg = load_config("mnist-dcgan-plain", overrides)
    cfg.train.progress = False
    trainer = Trainer(assemble(cfg), cfg.train)
    for _ in range(warmup):
        trainer.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return steps * cfg.train.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None,
                    help="write a JSON results file here (e.g. docs/results/speed_settings.json)")
    args = ap.parse_args()
    configs = [(width, name) for width in args.widths for name in SETTINGS]
    results: dict[str, list[float]] = {f"{w}/{n}": [] for w, n in configs}
    for r in range(args.rounds):
        for width, name in configs if r % 2 == 0 else configs[::-1]:
            w = [f"model.generator.width={width}", f"model.discriminator.width={width}"]
            results[f"{width}/{name}"].append(images_per_second(w + SETTINGS[name], args.steps, args.warmup))
            print(f"round {r + 1} width {width:3d} {name:20s} {results[f'{width}/{name}'][-1]:8.1f} images/s",
                  file=sys.stderr)
    out = {}
    for key, values in results.items():
        base = results[f"{key.split('/')[0]}/fp32"]
        per_round = [v / b for v, b in zip(values, base, strict=True)]
        out[key] = {"images_per_second": round(statistics.median(values), 1),
                    "ratio_to_fp32": round(statistics.median(per_round), 3),
                    "images_per_second_per_round": [round(v, 1) for v in values],
                    "per_round_ratio_to_fp32": [round(x, 4) for x in per_round]}
        print(f"width {key:28s} {out[key]['images_per_second']:8.1f} images/s  x{out[key]['ratio_to_fp32']:.3f}"
              f"  (per round: {', '.join(f'{x:.3f}' for x in per_round)})")
    cmd = results_file.command_line("benchmarks/speed_settings.py")
    print(f"reproduce: {cmd}")
    result = {"preset": "mnist-dcgan-plain", "settings": SETTINGS, "configurations": out,
              "ratio_statistic": "median over rounds of (images/s / fp32 NCHW images/s at the same width, same round)",
              "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "widths": args.widths}
    results_file.write(args.out, {**results_file.header("benchmarks/speed_settings.py"), **result})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
