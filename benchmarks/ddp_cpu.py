#!/usr/bin/env python3
"""A 2-process torchrun run against the 1-process run, on this CPU: wall time and samples/s.

Both train the same preset for the same steps at the same global batch; the 1-process run uses
every core (torch's threads), each of the 2 processes one core less (``OMP_NUM_THREADS`` = cores / 2),
so both use the whole machine. Timing comes from each run's own summary (``wall_seconds``, which
includes start-up and the final evaluation; set small) and from the logged steps' clock.

Usage: python benchmarks/ddp_cpu.py [--preset mnist-dcgan] [--steps 200] [--batch-size 64]
           [--out docs/results/ddp_cpu.json]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, preset: str, steps: int, batch: int, out: Path, threads: int) -> dict:
    sets = [f"train.batch_size={batch}", "train.sample_every=0", "train.checkpoint_every=0",
            "train.eval_every=0", "eval.metrics=[]", "train.tensorboard=false"]
    args = ["train", preset, "--out", str(out), "--steps", str(steps), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    if procs == 1:
        cmd = [sys.executable, "-m", "ganforge", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_addr", "127.0.0.1", "--master_port", str(_port()), "-m", "ganforge", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{procs}-process run failed:\n{p.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"processes": procs, "threads_per_process": threads, "command_wall_seconds": round(wall, 2),
            "train_wall_seconds": summary["wall_seconds"],
            "samples_per_second": round(steps * batch / summary["wall_seconds"], 1),
            "final": summary.get("final", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mnist-dcgan")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, 2):
            rows.append(run(procs, args.preset, args.steps, args.batch_size, Path(tmp) / f"p{procs}",
                            max(1, cores // procs)))
            r = rows[-1]
            print(f"{procs} process(es) x {r['threads_per_process']} threads: {r['train_wall_seconds']:.1f} s, "
                  f"{r['samples_per_second']:.0f} samples/s", file=sys.stderr)
    ratio = rows[1]["samples_per_second"] / rows[0]["samples_per_second"]
    cmd = results_file.command_line("benchmarks/ddp_cpu.py")
    print(f"2 processes / 1 process: {ratio:.3f}x samples/s; reproduce: {cmd}", file=sys.stderr)
    result = {"preset": args.preset, "steps": args.steps, "global_batch": args.batch_size, "cores": cores,
              "runs": rows, "ratio_2_over_1": round(ratio, 3)}
    results_file.write(args.out, {**results_file.header("benchmarks/ddp_cpu.py", "cpu"), **result})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
