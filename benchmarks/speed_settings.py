#!/usr/bin/env python3
"""Which speed switches help on this machine? Times ganforge's training step on the
mnist-dcgan-plain preset (the demo's networks, without the k-means set-up) at half and full
DCGAN width with float32 NCHW, channels-last, bf16 autocast and both, alternating
rounds; prints images/s and the ratio of each setting to float32 NCHW at the same width.

Usage: python benchmarks/speed_settings.py [--rounds 3] [--steps 60]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from ganforge.config import load_config
from ganforge.training.assemble import assemble
from ganforge.training.trainer import Trainer

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
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for width in args.widths:
            for name, over in SETTINGS.items():
                w = [f"model.generator.width={width}", f"model.discriminator.width={width}"]
                results.setdefault(f"{width}/{name}", []).append(images_per_second(w + over, args.steps))
    out = {}
    for key, values in results.items():
        width = key.split("/")[0]
        base = statistics.median(results[f"{width}/fp32"])
        out[key] = {"images_per_second": round(statistics.median(values), 1),
                    "ratio_to_fp32": round(statistics.median(values) / base, 3)}
        print(f"width {key:28s} {out[key]['images_per_second']:8.1f} images/s  x{out[key]['ratio_to_fp32']:.3f}")
    print("reproduce: python benchmarks/speed_settings.py " + f"--rounds {args.rounds} --steps {args.steps}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
