#!/usr/bin/env python3
"""What could make the plain dcgan-28 loop faster on this CPU without changing the network or the
batch size? Each variant is the plain script's step (`../shared/bench/plain_dcgan.py`) with one
change, timed in alternating rounds in one process; the ratio is against the unchanged loop.

Variants: ``nodgrad`` (D's weights take no gradient in G's step, as ganforge's trainer does),
``linear`` (G's first layer, a transposed convolution on a 1x1 input, computed as the matrix
product it is, same weight), ``fused`` (Adam with ``fused=True``), ``compile`` (``torch.compile``
of G and D; compilation happens in the warm-up steps, not timed).

Usage: python benchmarks/loop_variants.py [--variants plain nodgrad ...] [--rounds 3] [--steps 40]
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
from bench_loop import load_plain  # noqa: E402

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
    args = ap.parse_args()
    variants = ["plain"] + [v for v in args.variants if v != "plain"]
    mod = load_plain()
    data = torch.rand(4096, 1, 28, 28) * 2 - 1
    res: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            res[v].append(images_per_second(mod, v, data, args.batch_size, args.steps, args.warmup))
            print(f"round {r + 1} {v:24s} {res[v][-1]:8.1f} images/s", file=sys.stderr)
    base = statistics.median(res["plain"])
    ratios = {v: round(statistics.median(res[v]) / base, 3) for v in variants}
    cmd = ("python benchmarks/loop_variants.py " + " ".join(sys.argv[1:])).strip()
    print(f"reproduce: {cmd}", file=sys.stderr)
    print(json.dumps({"plain_images_per_second": round(base, 1), "ratio_to_plain": ratios,
                      "batch_size": args.batch_size, "threads": torch.get_num_threads(), "command": cmd}))


if __name__ == "__main__":
    main()
