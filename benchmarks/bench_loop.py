#!/usr/bin/env python3
"""Does ganforge's training loop add overhead? The "dcgan-28" networks of the plain baseline
(`../shared/bench/plain_dcgan.py`) are trained through ganforge's user-modules path
(``GAN(generator=G, discriminator=D, ...).fit(tensor)``) and by the plain loop, alternating in one
process, same batch size, same optimizers, same data in memory.

Both do the same computation per step: ganforge is run with ``train.fresh_g_noise=false`` because
the plain script reuses D's fakes for its G step (Algorithm 1 draws new noise, which costs one
more G forward). ganforge keeps its default logging (every 10 steps, with gradient norms),
health checks and progress accounting; it writes no run folder (``out=None``).

With ``--fast``, ganforge runs with the speed settings its image presets use by default
(``train.channels_last`` and ``train.autocast``, read from the preset); the network and batch size
stay those of the baseline. Both modes skip D's weight gradients in G's step (the step needs only
the gradient with respect to D's input). ``--device cuda`` runs both loops on a GPU.

The statistic: in each round both loops run once (order alternating between rounds), the round's
ratio is ganforge's images/s over the plain loop's in that round, and the figure reported is the
**median of the per-round ratios** (every per-round ratio is printed too). The medians of each
loop's images/s are reported beside it, for scale only.

Last line: JSON with the per-round images/s of both loops, the per-round ratios and their median
(``ratio``). ``--out PATH`` writes the same, plus date, command line, CPU model and speed flags,
torch version and thread count, as a results file (e.g. docs/results/bench_loop.json).
Usage: python benchmarks/bench_loop.py [--fast] [--device cpu|cuda] [--steps 40] [--warmup 5] [--rounds 3]
           [--batch-size 64] [--baseline PATH] [--out docs/results/bench_loop.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT.parent / "shared" / "bench" / "plain_dcgan.py"


def load_plain(path: Path = PLAIN):
    if not path.is_file():
        print(f"skipped: the baseline {path} is not here (it lives in ../shared/bench beside the repo)")
        sys.exit(0)
    spec = importlib.util.spec_from_file_location("plain_dcgan", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer reads finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_run(mod, data: torch.Tensor, b: int, warmup: int, steps: int, device: str = "cpu") -> float:
    """The baseline's own step, verbatim in substance (see plain_dcgan.py)."""
    torch.manual_seed(0)
    nz = 100
    g, d = (m.to(device) for m in mod.build(nz))
    data = data.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(b, 1, device=device), torch.zeros(b, 1, device=device)

    def step(i: int) -> None:
        x = data[(i * b) % (len(data) - b):][:b]
        fake = g(torch.randn(b, nz, 1, 1, device=device))
        loss_d = bce(d(x), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    for i in range(warmup):
        step(i)
    sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    return steps * b / (time.perf_counter() - t)


class StepTimer:
    """A callback that times steps warmup+1 .. warmup+steps."""

    def __init__(self, warmup: int, steps: int, device: str = "cpu") -> None:
        self.warmup, self.steps, self.device, self.t0, self.t1 = warmup, steps, device, 0.0, 0.0

    def on_step_end(self, trainer, out) -> None:
        if trainer.step_num == self.warmup:
            sync(self.device)
            self.t0 = time.perf_counter()
        elif trainer.step_num == self.warmup + self.steps:
            sync(self.device)
            self.t1 = time.perf_counter()


def ganforge_run(mod, data: torch.Tensor, b: int, warmup: int, steps: int, extra: dict,
                 device: str = "cpu") -> float:
    import ganforge

    torch.manual_seed(0)
    g, d = mod.build(100)
    # The user's G takes (n, 100, 1, 1); ganforge's prior draws (n, 100).
    g = nn.Sequential(nn.Unflatten(1, (100, 1, 1)), *g)
    timer = StepTimer(warmup, steps, device)
    train = {"steps": warmup + steps, "batch_size": b, "fresh_g_noise": False, "progress": False,
             "tensorboard": False, "device": device, **extra.get("train", {})}
    adam = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    gan = ganforge.GAN(generator=g, discriminator=d, loss="nonsaturating", z_dim=100,
                       train=train, optim_g=adam, optim_d=adam)
    gan.fit(data, callbacks=[timer])
    return steps * b / (timer.t1 - timer.t0)


def fast_settings() -> dict:
    """The speed settings the image presets use by default, read from the `mnist-dcgan` preset (so
    the benchmark cannot drift from them). Both are off there: measured no faster on the reference
    CPU, and bf16 autocast was slower on an H100 too for this small network (docs/BENCHMARKS.md)."""
    from ganforge.config import load_config

    t = load_config("mnist-dcgan").train
    return {"train": {"channels_last": t.channels_last, "autocast": t.autocast}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fast", action="store_true",
                    help="ganforge with the image presets' speed settings (channels-last, autocast)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both loops run there)")
    ap.add_argument("--baseline", type=Path, default=PLAIN, help="the plain script (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write a JSON results file here (e.g. docs/results/bench_loop.json)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: --device cuda but no CUDA GPU here")
        sys.exit(0)
    extra = fast_settings() if args.fast else {}
    mod = load_plain(args.baseline)
    torch.manual_seed(0)
    data = torch.rand(4096, 1, 28, 28) * 2 - 1
    plain, ours, ratios = [], [], []
    for r in range(args.rounds):
        # Alternate the order so drift in machine load does not favour either side.
        runs = [("plain", plain), ("ganforge", ours)]
        for name, acc in (runs if r % 2 == 0 else runs[::-1]):
            if name == "plain":
                acc.append(plain_run(mod, data, args.batch_size, args.warmup, args.steps, args.device))
            else:
                acc.append(ganforge_run(mod, data, args.batch_size, args.warmup, args.steps, extra, args.device))
            print(f"round {r + 1} {name:9s} {acc[-1]:8.1f} images/s", file=sys.stderr)
        ratios.append(ours[-1] / plain[-1])
        print(f"round {r + 1} ratio     {ratios[-1]:8.3f} (ganforge / plain, this round)", file=sys.stderr)
    ratio = statistics.median(ratios)
    print("per-round ratios: " + ", ".join(f"{x:.3f}" for x in ratios)
          + f"; median of per-round ratios: {ratio:.3f}", file=sys.stderr)
    cmd = results_file.command_line("benchmarks/bench_loop.py")
    print(f"reproduce: {cmd}", file=sys.stderr)
    result = {
        "ratio": round(ratio, 3),
        "ratio_statistic": "median over rounds of (ganforge images/s / plain images/s in the same round)",
        "per_round_ratio": [round(x, 4) for x in ratios],
        "ganforge_images_per_second_per_round": [round(x, 1) for x in ours],
        "plain_images_per_second_per_round": [round(x, 1) for x in plain],
        "ganforge_images_per_second_median": round(statistics.median(ours), 1),
        "plain_images_per_second_median": round(statistics.median(plain), 1),
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
        "fast": args.fast, "device": args.device, "settings": extra.get("train", {}),
        "baseline": str(args.baseline),
    }
    results_file.write(args.out, {**results_file.header("benchmarks/bench_loop.py", args.device), **result})
    print(json.dumps({**result, "threads": torch.get_num_threads(), "command": cmd}))


if __name__ == "__main__":
    main()
