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
With ``--mfu`` the run also reports model FLOP utilization. The FLOPs of one training iteration
(D on real, D on G(z).detach(), backward, Adam step; then G's step) are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and backward) on
the plain loop's step and on one ganforge ``Trainer.step()`` (the counts differ: ganforge freezes
D's weights in G's step, so it skips their gradients; the plain loop computes them; a plain step with
D frozen in G's step is counted too, to show that this is the whole difference). The peak is that of
a large square matmul timed in the same run (n=2048 on CPU, 8192 on CUDA, repeated for >= 0.5 s,
2n^3 FLOPs each), in fp32 and, where the machine has fast bf16 (CUDA: native bf16; CPU: the
avx512_bf16 or amx_bf16 flag and a bf16 matmul peak above fp32's), in bf16. Achieved FLOP/s is a
loop's FLOPs per step times its steps/s (median images/s of its timed rounds over the batch size);
MFU is achieved over peak. fp32 uses the rounds above; for bf16 both loops are timed again in as
many rounds, ganforge with ``train.autocast=bf16`` and the plain loop under
``torch.autocast(device, torch.bfloat16)`` (forwards and losses; backward outside), against the bf16
peak. The table goes to stderr; the JSON gets ``flops_per_step``, ``peak_flops``,
``achieved_flops``, ``mfu``, ``bf16_available`` and ``bf16_reason``.
Usage: python benchmarks/bench_loop.py [--fast] [--device cpu|cuda] [--steps 40] [--warmup 5] [--rounds 3]
           [--batch-size 64] [--baseline PATH] [--out docs/results/bench_loop.json]
           [--mfu [--peak-n N] [--peak-seconds 0.5]]
"""
from __future__ import annotations

import argparse
import contextlib
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

from ganforge.training.precision import BF16_CPU_FLAGS  # noqa: E402  (the one list ganforge uses too)

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


def plain_step(mod, data: torch.Tensor, b: int, device: str = "cpu", bf16: bool = False,
               freeze_d_in_g: bool = False):
    """The baseline's own step, verbatim in substance (see plain_dcgan.py), as a function of the
    iteration. ``bf16``: forwards and losses under ``torch.autocast(device, torch.bfloat16)``,
    backward outside it. ``freeze_d_in_g`` (for the FLOP count only): D's weights take no gradient in
    G's step, as in ganforge."""
    torch.manual_seed(0)
    nz = 100
    g, d = (m.to(device) for m in mod.build(nz))
    data = data.to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(b, 1, device=device), torch.zeros(b, 1, device=device)
    amp = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16
           else contextlib.nullcontext())

    def step(i: int) -> None:
        x = data[(i * b) % (len(data) - b):][:b]
        with amp:
            fake = g(torch.randn(b, nz, 1, 1, device=device))
            loss_d = bce(d(x), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        if freeze_d_in_g:
            d.requires_grad_(False)
        with amp:
            loss_g = bce(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if freeze_d_in_g:
            d.requires_grad_(True)

    return step


def plain_run(mod, data: torch.Tensor, b: int, warmup: int, steps: int, device: str = "cpu",
              bf16: bool = False) -> float:
    step = plain_step(mod, data, b, device, bf16)
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


def ganforge_fit(mod, data: torch.Tensor, b: int, total_steps: int, extra: dict, device: str,
                 callbacks: list) -> None:
    import ganforge

    torch.manual_seed(0)
    g, d = mod.build(100)
    # The user's G takes (n, 100, 1, 1); ganforge's prior draws (n, 100).
    g = nn.Sequential(nn.Unflatten(1, (100, 1, 1)), *g)
    train = {"steps": total_steps, "batch_size": b, "fresh_g_noise": False, "progress": False,
             "tensorboard": False, "device": device, **extra.get("train", {})}
    adam = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    gan = ganforge.GAN(generator=g, discriminator=d, loss="nonsaturating", z_dim=100,
                       train=train, optim_g=adam, optim_d=adam)
    gan.fit(data, callbacks=callbacks)


def ganforge_run(mod, data: torch.Tensor, b: int, warmup: int, steps: int, extra: dict,
                 device: str = "cpu") -> float:
    timer = StepTimer(warmup, steps, device)
    ganforge_fit(mod, data, b, warmup + steps, extra, device, [timer])
    return steps * b / (timer.t1 - timer.t0)


def fast_settings() -> dict:
    """The speed settings the image presets use by default, read from the `mnist-dcgan` preset (so
    the benchmark cannot drift from them). Both are off there: measured no faster on the reference
    CPU, and bf16 autocast was slower on an H100 too for this small network (docs/BENCHMARKS.md)."""
    from ganforge.config import load_config

    t = load_config("mnist-dcgan").train
    return {"train": {"channels_last": t.channels_last, "autocast": t.autocast}}


# -- --mfu: FLOPs per step, matmul peak, utilization -----------------------------------------


def count_flops(fn, *args) -> int:
    """The FLOPs ``fn(*args)`` runs as torch's FLOP counter counts them: matmuls, convolutions and
    attention, forward and backward (2 per multiply-add); elementwise ops, norms, reductions and
    optimizer updates count 0."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def plain_flops(mod, data: torch.Tensor, b: int, device: str = "cpu", freeze_d_in_g: bool = False) -> int:
    """FLOPs of one plain iteration (counted on the second, after Adam's state exists)."""
    step = plain_step(mod, data, b, device, freeze_d_in_g=freeze_d_in_g)
    step(0)
    return count_flops(step, 1)


class CountStep:
    """A callback that, after ganforge's first step, runs further ``trainer.step()`` calls inside
    the FLOP counter: one without and one with the gradient norms its logger asks for every
    ``log_every`` steps."""

    def __init__(self) -> None:
        self.flops: dict[str, int] = {}

    def on_step_end(self, trainer, out) -> None:
        if trainer.step_num != 1 or self.flops:
            return
        wanted = trainer.want_stats
        for key, stats in (("no_grad_norms", False), ("with_grad_norms", True)):
            trainer.want_stats = stats
            self.flops[key] = count_flops(trainer.step)
        trainer.want_stats = wanted


def ganforge_flops(mod, data: torch.Tensor, b: int, extra: dict, device: str = "cpu") -> dict[str, int]:
    counter = CountStep()
    ganforge_fit(mod, data, b, 3, extra, device, [counter])  # 1 step, then the 2 counted ones
    return counter.flops


def matmul_flops(n: int) -> int:
    """FLOPs of one (n, n) @ (n, n) matmul: n^2 outputs, n multiply-adds each."""
    return 2 * n ** 3


def matmul_peak(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
                min_seconds: float = 0.5) -> float:
    """FLOP/s of back-to-back (n, n) matmuls in ``dtype``, timed over at least ``min_seconds``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.matmul(a, b)  # warm-up: kernel choice, caches, clocks
    reps = 1
    while True:
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=c)
        sync(device)
        dt = time.perf_counter() - t
        if dt >= min_seconds:
            return matmul_flops(n) * reps / dt
        reps = max(2 * reps, int(reps * 1.2 * min_seconds / max(dt, 1e-9)) + 1)




def bf16_flags(flags: dict) -> list[str]:
    """The CPU flags (of ``results_file.cpu_info()["flags"]``) that give bf16 matmuls hardware support."""
    return [f for f in BF16_CPU_FLAGS if flags.get(f)]


def bf16_decision(device_type: str, *, cuda_supported: bool = False, flags: dict | None = None,
                  peak_fp32: float | None = None, peak_bf16: float | None = None) -> tuple[bool, str]:
    """Whether this machine has fast bf16, and why. CUDA: native bf16 (``torch.cuda.
    is_bf16_supported(including_emulation=False)``). CPU: the avx512_bf16 or amx_bf16 flag, and a
    measured bf16 matmul peak above the fp32 one."""
    if device_type == "cuda":
        if cuda_supported:
            return True, "CUDA: torch.cuda.is_bf16_supported(including_emulation=False) is True"
        return False, "CUDA: the GPU has no native bf16 (torch.cuda.is_bf16_supported(including_emulation=False))"
    have = bf16_flags(flags or {})
    if not have:
        return False, "CPU: neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo flags (bf16 matmul not timed)"
    if peak_bf16 is None or peak_fp32 is None:
        return False, f"CPU: {'+'.join(have)} present, but the bf16 matmul peak was not measured"
    cmp = (f"bf16 matmul peak {peak_bf16 / 1e9:.1f} GFLOP/s vs fp32 {peak_fp32 / 1e9:.1f}")
    if peak_bf16 > peak_fp32:
        return True, f"CPU: {'+'.join(have)} in /proc/cpuinfo flags and {cmp}"
    return False, f"CPU: {'+'.join(have)} in /proc/cpuinfo flags, but {cmp} (not faster)"


def achieved_flops(flops_per_step: float, images_per_second: float, batch_size: int) -> float:
    """FLOP/s: FLOPs per step times steps per second (images/s over the batch size)."""
    return flops_per_step * images_per_second / batch_size


def mfu(achieved: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over the peak (None without a peak)."""
    return achieved / peak if peak else None


def mfu_table(rows: list[dict]) -> str:
    """The stderr table: one row per (loop, dtype)."""
    head = (f"{'loop':9s} {'dtype':5s} {'GFLOP/step':>10s} {'steps/s':>8s} {'GFLOP/s':>9s}"
            f" {'peak GFLOP/s':>12s} {'MFU':>7s}")
    lines = [head]
    for r in rows:
        u = f"{100 * r['mfu']:6.2f}%" if r["mfu"] is not None else "    n/a"
        peak = f"{r['peak'] / 1e9:12.1f}" if r["peak"] else f"{'n/a':>12s}"
        lines.append(f"{r['loop']:9s} {r['dtype']:5s} {r['flops_per_step'] / 1e9:10.3f} {r['steps_per_second']:8.2f}"
                     f" {r['achieved'] / 1e9:9.2f} {peak} {u}")
    return "\n".join(lines)


def run_mfu(args, mod, data: torch.Tensor, extra: dict, images_per_second: dict) -> dict:
    """The --mfu part of the run; ``images_per_second[loop]`` are the fp32 rounds' medians."""
    device, b = args.device, args.batch_size
    dev_type = torch.device(device).type
    # FLOPs per iteration.
    flops_plain = plain_flops(mod, data, b, device)
    flops_plain_frozen = plain_flops(mod, data, b, device, freeze_d_in_g=True)
    gf = ganforge_flops(mod, data, b, extra, device)
    flops = {"plain": flops_plain, "ganforge": gf["no_grad_norms"],
             "ganforge_with_grad_norms": gf["with_grad_norms"], "plain_with_d_frozen_in_g_step": flops_plain_frozen}
    print(f"FLOPs per step (FlopCounterMode): plain {flops_plain / 1e9:.4f} G,"
          f" ganforge {gf['no_grad_norms'] / 1e9:.4f} G"
          f" ({gf['with_grad_norms'] / 1e9:.4f} G in a step that logs gradient norms)", file=sys.stderr)
    if flops_plain != gf["no_grad_norms"]:
        print(f"  they differ by {(flops_plain - gf['no_grad_norms']) / 1e9:.4f} G: ganforge freezes D's weights in"
              f" G's step (only the gradient w.r.t. D's input is needed), the plain loop computes D's weight"
              f" gradients there too; the plain step with D frozen in G's step counts"
              f" {flops_plain_frozen / 1e9:.4f} G"
              + (" (= ganforge's)" if flops_plain_frozen == gf["no_grad_norms"]
                 else " (still differs from ganforge's)"),
              file=sys.stderr)
    if gf["with_grad_norms"] == gf["no_grad_norms"]:
        print("  gradient-norm logging adds no counted FLOPs (norms are not matmuls/convolutions)", file=sys.stderr)
    # Peaks.
    n = args.peak_n or (8192 if dev_type == "cuda" else 2048)
    peak = {"fp32": matmul_peak(n, torch.float32, device, args.peak_seconds), "bf16": None}
    cuda_supported, flags = False, {}
    if dev_type == "cuda":
        cuda_supported = torch.cuda.is_bf16_supported(including_emulation=False)
        try_bf16 = cuda_supported
    else:
        flags = results_file.cpu_info()["flags"]
        try_bf16 = bool(bf16_flags(flags))
    if try_bf16:
        peak["bf16"] = matmul_peak(n, torch.bfloat16, device, args.peak_seconds)
    available, reason = bf16_decision(dev_type, cuda_supported=cuda_supported, flags=flags,
                                      peak_fp32=peak["fp32"], peak_bf16=peak["bf16"])
    print(f"matmul peak (n={n}): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s"
          + (f", bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s" if peak["bf16"] else ""), file=sys.stderr)
    print(f"fast bf16: {'yes' if available else 'no'} ({reason})", file=sys.stderr)
    # The ganforge fp32 row is the rounds above, whose autocast is what --fast's settings say.
    gf_dtype = "bf16" if extra.get("train", {}).get("autocast") == "bf16" else "fp32"
    ips = {("plain", "fp32"): images_per_second["plain"], ("ganforge", gf_dtype): images_per_second["ganforge"]}
    bf16_rounds: dict[str, list[float]] = {}
    if available:
        extra_bf16 = {**extra, "train": {**extra.get("train", {}), "autocast": "bf16"}}
        loops = ["plain"] + ([] if ("ganforge", "bf16") in ips else ["ganforge"])
        bf16_rounds = {name: [] for name in loops}
        for r in range(args.rounds):
            for name in (loops if r % 2 == 0 else loops[::-1]):
                if name == "plain":
                    x = plain_run(mod, data, b, args.warmup, args.steps, device, bf16=True)
                else:
                    x = ganforge_run(mod, data, b, args.warmup, args.steps, extra_bf16, device)
                bf16_rounds[name].append(x)
                print(f"round {r + 1} {name:9s} {x:8.1f} images/s (bf16)", file=sys.stderr)
        for name, xs in bf16_rounds.items():
            ips[(name, "bf16")] = statistics.median(xs)
    rows = []
    for (loop, dtype), x in ips.items():
        f = flops[loop]
        a = achieved_flops(f, x, b)
        rows.append({"loop": loop, "dtype": dtype, "flops_per_step": f, "steps_per_second": x / b,
                     "achieved": a, "peak": peak[dtype], "mfu": mfu(a, peak[dtype])})
    print(mfu_table(rows), file=sys.stderr)
    if dev_type == "cuda" and torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32:
        print("note: on CUDA, fp32 convolutions may use TF32 (torch.backends.cudnn.allow_tf32 is True) while the"
              " fp32 matmul peak is strict fp32, so fp32 MFU can read high", file=sys.stderr)
    out: dict = {
        "flops_per_step": flops,
        "flops_counter": "torch.utils.flop_counter.FlopCounterMode: matmuls/convolutions, forward+backward;"
                         " ganforge counted on Trainer.step() after one step, plain on its step function",
        "peak_flops": {k: (round(v) if v else None) for k, v in peak.items()},
        "peak_matmul_n": n, "peak_seconds": args.peak_seconds,
        "bf16_available": available, "bf16_reason": reason,
        "achieved_flops": {}, "mfu": {}, "steps_per_second": {},
    }
    for r in rows:
        out["achieved_flops"].setdefault(r["loop"], {})[r["dtype"]] = round(r["achieved"])
        out["mfu"].setdefault(r["loop"], {})[r["dtype"]] = None if r["mfu"] is None else round(r["mfu"], 5)
        out["steps_per_second"].setdefault(r["loop"], {})[r["dtype"]] = round(r["steps_per_second"], 3)
    for name, xs in bf16_rounds.items():
        out[f"{name}_bf16_images_per_second_per_round"] = [round(x, 1) for x in xs]
    if dev_type == "cuda":
        out["tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    return out


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
    ap.add_argument("--mfu", action="store_true",
                    help="also count FLOPs per step, time a matmul peak, report achieved FLOP/s and MFU (fp32, bf16)")
    ap.add_argument("--peak-n", type=int, default=None, help="--mfu: matmul size for the peak (2048 CPU, 8192 CUDA)")
    ap.add_argument("--peak-seconds", type=float, default=0.5, help="--mfu: time each peak over at least this")
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
    if args.mfu:
        result.update(run_mfu(args, mod, data, extra, {"plain": statistics.median(plain),
                                                       "ganforge": statistics.median(ours)}))
    results_file.write(args.out, {**results_file.header("benchmarks/bench_loop.py", args.device), **result})
    print(json.dumps({**result, "threads": torch.get_num_threads(), "command": cmd}))


if __name__ == "__main__":
    main()
