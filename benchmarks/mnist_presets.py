#!/usr/bin/env python3
"""Every MNIST preset, trained and evaluated by the same commands a user runs; writes a Markdown table.

For each preset: `ganforge train PRESET --out runs/bench-mnist/PRESET`, then
`ganforge eval RUN --metrics fid,kid,pr --n 5000` (digit-classifier features, against the held-out
half of the test set). The real-data floor is the same evaluation of the 5,000 MNIST training images
(`ganforge eval mnist:train5k`), same extractor, same sample count. Conditional presets add label
accuracy, InfoGAN its code accuracy, Stacked MNIST its modes covered of 1,000 (26,000 samples).

``--set KEY=VALUE`` (repeatable) changes every preset's config the way ``ganforge train --set``
does (the row names carry the overrides); ``--metrics`` chooses what ``ganforge eval`` computes. The
JSON beside the table records date, command line, CPU, torch version and thread count, and for each
run its summary (wall time, steps, best checkpoint) and the evaluations logged during training.
A run folder that already exists is reused (delete it, or pass a new ``--runs``, to measure again).

Usage: python benchmarks/mnist_presets.py [--presets mnist-dcgan mnist-vae ...] [--jobs 2]
           [--steps N] [--set KEY=VALUE ...] [--metrics fid,kid,pr] [--runs runs/bench-mnist]
           [--out docs/results/mnist_presets.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

PRESETS = ["mnist-dcgan", "mnist-dcgan-plain", "mnist-vanilla", "mnist-cgan", "mnist-acgan", "mnist-infogan",
           "mnist-wgan", "mnist-wgan-gp", "mnist-lsgan", "mnist-hinge-sn", "mnist-began", "mnist-vae", "stacked-mnist"]
EXTRA = ("label_accuracy", "code_accuracy", "q_accuracy", "modes_covered", "kl_to_uniform")


def ganforge(args: list[str], threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True, env=env)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr.strip()[-300:]}


def eval_history(out: Path) -> list[dict]:
    """The evaluations logged during training (``eval/...`` records of log.jsonl), step by step."""
    log = out / "log.jsonl"
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [{"step": r.get("step"), **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
            for r in rows if any(k.startswith("eval/") for k in r)]


def run_preset(preset: str, root: Path, threads: int, steps: int | None, sets: list[str] | None = None,
               metrics: str = "fid,kid,pr") -> dict:
    sets = sets or []
    out = root / preset
    train = ["train", preset, "--out", str(out), "--no-progress", "--set", "train.tensorboard=false"]
    for kv in sets:
        train += ["--set", kv]
    if out.exists():  # a finished run is reused: delete the folder to measure again
        trained = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    else:
        trained = last_json(ganforge(train + (["--steps", str(steps)] if steps else []), threads))
        trained = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else trained
    name = preset + (f" ({', '.join(sets)})" if sets else "")
    row = {"preset": name, "wall_seconds": trained.get("wall_seconds"), "steps": trained.get("steps"),
           **{k: trained[k] for k in EXTRA if k in trained}}
    if preset != "stacked-mnist":
        ev = last_json(ganforge(["eval", str(out), "--metrics", metrics, "--n", "5000", "--no-progress"],
                                threads))
        row.update({k: ev.get(k) for k in ("fid", "kid", "kid_std", "inception_score", "precision", "recall",
                                           "density", "coverage", "error") if k in ev})
        if "protocol" in ev:
            row["eval_seconds"] = ev["protocol"].get("seconds")
    row.update({"run": str(out), "overrides": sets, "best": trained.get("best"),
                "eval_during_training": eval_history(out)})
    return row


def floor(threads: int, metrics: str = "fid,kid,pr") -> dict:
    ev = last_json(ganforge(["eval", "mnist:train5k", "--metrics", metrics, "--n", "5000", "--no-progress"],
                            threads))
    return {"preset": "real data (mnist:train5k)",
            **{k: ev.get(k) for k in ("fid", "kid", "kid_std", "inception_score", "precision", "recall",
                                      "density", "coverage") if k in ev}}


def num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def table(rows: list[dict], real: dict) -> str:
    f0 = real.get("fid")
    lines = ["| preset | FID | × floor | KID | precision | recall | other | steps | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in [real, *rows]:
        other = []
        if "label_accuracy" in r:
            other.append(f"label acc {100 * r['label_accuracy']:.1f}%")
        if "code_accuracy" in r:
            other.append(f"code acc {100 * r['code_accuracy']:.1f}%")
        if "q_accuracy" in r:
            other.append(f"Q acc {100 * r['q_accuracy']:.1f}%")
        if "modes_covered" in r:
            other.append(f"{r['modes_covered']}/1000 modes, KL {r['kl_to_uniform']:.3f}")
        if "error" in r:
            other.append(f"error: {r['error'][-80:]}")
        ratio = r["fid"] / f0 if r.get("fid") is not None and f0 else None
        lines.append(f"| {r['preset']} | {num(r.get('fid'), '.1f')} | {num(ratio, '.1f')} | {num(r.get('kid'), '.2f')} "
                     f"| {num(r.get('precision'), '.3f')} | {num(r.get('recall'), '.3f')} | {'; '.join(other)} "
                     f"| {r.get('steps') or ''} | {num(r.get('wall_seconds'), '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (threads are split between them)")
    ap.add_argument("--steps", type=int, default=None, help="override every preset's training length")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every preset (as `ganforge train --set`); repeatable")
    ap.add_argument("--metrics", default="fid,kid,pr", help="what `ganforge eval` computes (default: %(default)s)")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-mnist"))
    ap.add_argument("--out", type=Path, default=None, help="write the table (and a .json beside it)")
    args = ap.parse_args()
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    args.runs.mkdir(parents=True, exist_ok=True)
    real = floor(threads, args.metrics)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda p: run_preset(p, args.runs, threads, args.steps, args.sets, args.metrics),
                             args.presets))
    text = table(rows, real)
    cmd = "python benchmarks/mnist_presets.py " + " ".join(sys.argv[1:])
    print(text)
    print(f"reproduce: {cmd.strip()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"{text}\n\nReproduce: `{cmd.strip()}` (jobs={args.jobs}, {threads} thread(s) each)\n")
        results_file.write(args.out.with_suffix(".json"),
                           {**results_file.header("benchmarks/mnist_presets.py"), "jobs": args.jobs,
                            "threads_per_run": threads, "floor": real, "rows": rows})
    print(json.dumps({"floor_fid": real["fid"], "rows": len(rows)}))


if __name__ == "__main__":
    main()
