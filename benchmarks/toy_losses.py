#!/usr/bin/env python3
"""Every adversarial loss on PacGAN's ring and grid, several seeds: modes captured, high-quality
fraction, KL of the mode histogram to uniform, wall time. Writes a Markdown table.

Each loss starts from the data set's preset (ring2d / grid2d: MLPs 3x128, batch 512) and changes
only what that loss's paper prescribes (LOSS_SETTINGS, or the presets DATA-wgan and DATA-wgan-gp).
The Wasserstein critics take 5 D steps per G step, so their presets have a third of the G steps.

The JSON beside the table holds date, command line, CPU, torch version, thread count and commit,
and every run's figures (``rows``).

Usage: python benchmarks/toy_losses.py [--seeds 0 1 2] [--data ring2d grid2d] [--losses ...] [--jobs 2]
           [--out docs/results/toy_losses.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

LOSS_SETTINGS: dict[str, list[str]] = {
    "nonsaturating": [],
    "minimax": ["model.loss.name=minimax"],
    # The presets ring2d-wgan / grid2d-wgan (and -wgan-gp) hold these recipes; see their comments.
    "wgan": [],
    "wgan-gp": [],
    "lsgan": ["model.loss.name=lsgan"],
    "hinge": ["model.loss.name=hinge"],
    # BEGAN (Berthelot et al. 2017): auto-encoder D, gamma 0.5, lambda_k 0.001, Adam 1e-4.
    "began": ["model.loss.name=began", "optim_g.lr=1e-4", "optim_d.lr=1e-4"],
    # GMMN (Li et al. 2015): no D; kernel bandwidths spanning the data's scales.
    "mmd": ["model.loss.name=mmd", "model.loss.mmd_bandwidths=[0.01,0.03,0.1,0.3,1,3]"],
}
KEYS = ("modes_captured", "high_quality_fraction", "reverse_kl_modes", "wall_seconds")


def run_one(data: str, loss: str, seed: int, threads: int) -> dict:
    from ganforge.config import preset_names

    # A loss with a preset of its own for this data set uses it as is.
    preset = f"{data}-{loss}" if f"{data}-{loss}" in preset_names() else data
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "ganforge", "train", preset, "--out", str(out), "--seed", str(seed),
               "--no-progress", "--set", "train.tensorboard=false"]
        for s in LOSS_SETTINGS[loss]:
            cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        summary = out / "summary.json"
        if not summary.is_file():
            return {"data": data, "loss": loss, "seed": seed, "error": proc.stderr.strip().splitlines()[-1:]}
        s = json.loads(summary.read_text())
        return {"data": data, "loss": loss, "seed": seed, "status": s.get("status"),
                **{k: s.get(k) for k in KEYS}}


def fmt(values: list[float], pct: bool = False, digits: int = 2) -> str:
    if pct:
        values = [100 * v for v in values]
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def table(rows: list[dict], datasets: list[str]) -> str:
    lines = []
    for data in datasets:
        total = 8 if data == "ring2d" else 25
        lines += [f"\n**{data}** ({total} modes)\n",
                  "| loss | modes captured | high-quality % | KL(modes ‖ uniform) | wall s | seeds |",
                  "|---|---|---|---|---|---|"]
        for loss in LOSS_SETTINGS:
            rs = [r for r in rows if r["data"] == data and r["loss"] == loss and "error" not in r
                  and r.get("modes_captured") is not None]
            failed = [r for r in rows if r["data"] == data and r["loss"] == loss and r not in rs]
            if not rs:
                lines.append(f"| {loss} | failed | | | | {len(failed)} |")
                continue
            lines.append(
                f"| {loss} | {fmt([r['modes_captured'] for r in rs], digits=1)} "
                f"| {fmt([r['high_quality_fraction'] for r in rs], pct=True, digits=1)} "
                f"| {fmt([r['reverse_kl_modes'] for r in rs], digits=3)} "
                f"| {statistics.mean(r['wall_seconds'] for r in rs):.0f} "
                f"| {len(rs)}{f' ({len(failed)} failed)' if failed else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", nargs="+", default=["ring2d", "grid2d"])
    ap.add_argument("--losses", nargs="+", default=list(LOSS_SETTINGS))
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    ap.add_argument("--out", default=None, help="write the Markdown table and raw JSON here")
    args = ap.parse_args()
    jobs = [(d, loss, s) for d in args.data for loss in args.losses for s in args.seeds]
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    rows = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda j: run_one(*j, threads), jobs):
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    cmd = "python benchmarks/toy_losses.py " + " ".join(sys.argv[1:])
    md = table(rows, args.data) + f"\n\nReproduce: `{cmd.strip()}`\n"
    print(md)
    if args.out:
        Path(args.out).write_text(md)
        results_file.write(Path(args.out).with_suffix(".json"),
                           {**results_file.header("benchmarks/toy_losses.py"), "jobs": args.jobs,
                            "threads_per_run": threads, "rows": rows})


if __name__ == "__main__":
    main()
