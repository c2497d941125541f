#!/usr/bin/env python3
"""`make demo`'s training + report against 1,000 steps of the plain PyTorch DCGAN loop, in one run.

The issue-16 budget: the demo may cost at most the time of 1,000 steps of ``../shared/bench/plain_dcgan.py``
(batch 64) measured on the same machine, at no worse FID than before. Prints and records both wall
times, their ratio (demo / plain 1,000 steps) and the demo's FID.

Usage: python benchmarks/demo_time.py [--out docs/results/demo_time.json] [--runs /tmp/demo-time]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT.parent / "shared" / "bench" / "plain_dcgan.py"
# What the Makefile's demo target runs (kept in step by tests/unit/test_readme.py's demo check).
DEMO_TRAIN = ["train", "mnist-dcgan", "--set", "train.eval_every=0", "--set", "train.sample_every=500"]


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/demo-time"))
    args = ap.parse_args()
    if not PLAIN.is_file():
        raise SystemExit(f"the plain loop is not here: {PLAIN}")
    shutil.rmtree(args.runs, ignore_errors=True)
    results = results_file.header("benchmarks/demo_time.py")
    plain_s, plain_out = timed([sys.executable, str(PLAIN), "--steps", "1000", "--warmup", "0"])
    results["plain_1000_steps"] = {"wall_seconds": round(plain_s, 2), **json.loads(plain_out.splitlines()[-1])}
    results_file.write(args.out, results)
    run = args.runs / "demo"
    train_s, train_out = timed([sys.executable, "-m", "ganforge", *DEMO_TRAIN, "--out", str(run), "--no-progress"])
    report_s, _ = timed([sys.executable, "-m", "ganforge", "report", str(run)])
    summary = json.loads((run / "summary.json").read_text())
    results["demo"] = {"command": "ganforge " + " ".join(DEMO_TRAIN) + " --out RUN && ganforge report RUN",
                       "train_wall_seconds": round(train_s, 2), "report_wall_seconds": round(report_s, 2),
                       "wall_seconds": round(train_s + report_s, 2), "steps": summary["steps"],
                       "fid": summary.get("fid"), "kid": summary.get("kid"), "status": summary.get("status")}
    results["ratio_demo_over_plain_1000"] = round((train_s + report_s) / plain_s, 3)
    results["plain_step_equivalents"] = round(1000 * (train_s + report_s) / plain_s)
    results_file.write(args.out, results)
    print(json.dumps({k: results[k] for k in ("plain_1000_steps", "demo", "ratio_demo_over_plain_1000",
                                              "plain_step_equivalents")}))


if __name__ == "__main__":
    main()
