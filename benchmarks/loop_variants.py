#!/usr/bin/env python3
"""What could make the plain dcgan-28 loop faster on this CPU without changing the network or the
batch size? Each variant is the plain script's step (`../shared/bench/plain_dcgan.py`) with one
change, timed in alternating rounds in one process; the ratio is against the unchanged loop.

Variants: ``nodgrad`` (D's weights take no gradient in G's step, as ganforge's trainer does),
``linear`` (G's first layer, a transposed convolution on a 1x1 input, computed as the matrix
product it is, same weight), ``fused`` (Adam with ``fused=True``), ``compile`` (``torch.compile``
of G and D; compilation happens in the warm-up steps, not timed).

Each round runs every variant once (order reversed every other round); a variant's ratio in a round
is its images/s over the unchanged loop's in the same round, and the figure reported is the median
of those per-round ratios (all of them are printed and kept).

Usage: python benchmarks/loop_variants.py [--variants plain nodgrad ...] [--rounds 3] [--steps 40]
           [--warmup 5] [--batch-size 64] [--baseline PATH] [--out docs/results/loop_variants.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402
from bench_loop import PLAIN, load_plain  # noqa: E402

VARIANTS = ["plain", "nodgrad", "linear+nodgrad", "fused+linear+nodgrad", "compile+nodgrad"]


class ProjectAsMatmul(nn.Module):
    """A ConvTranspose2d applied to 1x1 inputs, as the matrix product it is (same parameters)."""

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight  # (in, out, k, k)
        return (z.flatten(1) @ w.flatten(1)).view(len(z), *w.shape[1:])


def images_per_second(mod, variant: str, data: torch.Tensor, b: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    g, d = mod.build(100)
    if "linear" in variant:
        g = nn.Sequential(ProjectAsMatmul(g[0]), *list(g)[1:])
    fused = True if "fused" in variant else None
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999), fused=fused)
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999), fused=fused)
    d_params = list(d.parameters())
    if "compile" in variant:
        g, d = torch.compile(g), torch.compile(d)
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)

    def step(i: int) -> None:
        x = data[(i * b) % (len(data) - b):][:b]
        fake = g(torch.randn(b, 100, 1, 1))
        loss_d = bce(d(x), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        for p in d_params:
            p.requires_grad_("nodgrad" not in variant)
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)

    for i in range(warmup):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * b / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--baseline", type=Path, default=PLAIN, help="the plain script (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write a JSON results file here (e.g. docs/results/loop_variants.json)")
    args = ap.parse_args()
    variants = ["plain"] + [v for v in args.variants if v != "plain"]
    mod = load_plain(args.baseline)
    data = torch.rand(4096, 1, 28, 28) * 2 - 1
    res: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            res[v].append(images_per_second(mod, v, data, args.batch_size, args.steps, args.warmup))
            print(f"round {r + 1} {v:24s} {res[v][-1]:8.1f} images/s", file=sys.stderr)
    per_round = {v: [res[v][r] / res["plain"][r] for r in range(args.rounds)] for v in variants}
    ratios = {v: round(statistics.median(per_round[v]), 3) for v in variants}
    for v in variants[1:]:
        print(f"{v:24s} per-round ratios " + ", ".join(f"{x:.3f}" for x in per_round[v])
              + f"; median {ratios[v]:.3f}", file=sys.stderr)
    cmd = results_file.command_line("benchmarks/loop_variants.py")
    print(f"reproduce: {cmd}", file=sys.stderr)
    result = {
        "ratio_to_plain": ratios,
        "ratio_statistic": "median over rounds of (variant images/s / plain images/s in the same round)",
        "per_round_ratio_to_plain": {v: [round(x, 4) for x in per_round[v]] for v in variants},
        "images_per_second_per_round": {v: [round(x, 1) for x in res[v]] for v in variants},
        "plain_images_per_second_median": round(statistics.median(res["plain"]), 1),
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
        "baseline": str(args.baseline),
    }
    results_file.write(args.out, {**results_file.header("benchmarks/loop_variants.py"), **result})
    print(json.dumps({**result, "threads": torch.get_num_threads(), "command": cmd}))


if __name__ == "__main__":
    main()
