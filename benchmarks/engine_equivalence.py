#!/usr/bin/env python3
"""Does a change of the engine keep the math? Short runs of many configurations, old code against new.

Each case trains a preset (with overrides) for a few steps through ``ganforge.training.run.train``
and hashes every tensor of the final generator, the sampling model (EMA when on) and the
discriminator. The same cases run in a git worktree of ``--baseline`` and in this tree, in child
processes with the same thread count; equal hashes mean bitwise equal training. Cases whose math a
change meant to alter are expected to differ, and the results say which.

Usage: python benchmarks/engine_equivalence.py [--baseline fae847c] [--out docs/results/engine_equivalence.json]
       (about 3 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOEVAL = ["eval.metrics=[]"]
CASES = {
    "ring2d": ("ring2d", [], 300),
    "grid2d": ("grid2d", [], 300),
    "ring2d-wgan-gp": ("ring2d-wgan-gp", [], 60),
    "ring2d-wgan": ("ring2d-wgan", [], 60),
    "minimax-smooth-flip": ("ring2d", ["model.loss.name=minimax", "techniques.label_smoothing=0.1",
                                       "techniques.label_flip=0.05"], 100),
    "lsgan": ("ring2d", ["model.loss.name=lsgan"], 100),
    "hinge-r1-lazy": ("ring2d", ["model.loss.name=hinge", "model.loss.r1=1.0", "model.loss.reg_interval=4"], 100),
    "began": ("ring2d", ["model.loss.name=began"], 100),
    "mmd": ("ring2d", ["model.loss.name=mmd"], 50),
    "feature-matching": ("ring2d", ["techniques.feature_matching=true"], 100),
    "historical-average-ema": ("ring2d", ["techniques.historical_average=0.01", "techniques.ema=0.99"], 100),
    "instance-noise": ("ring2d", ["techniques.instance_noise=0.1"], 100),
    "k-d-steps-reuse": ("ring2d", ["train.d_steps=3", "train.g_steps=2", "train.fresh_g_noise=false"], 60),
    "mnist-dcgan": ("mnist-dcgan", NOEVAL, 30),
    "mnist-cgan": ("mnist-cgan", NOEVAL, 20),
    "mnist-acgan": ("mnist-acgan", NOEVAL, 20),
    "mnist-infogan": ("mnist-infogan", NOEVAL, 20),
    "mnist-began": ("mnist-began", NOEVAL, 20),
    "mnist-vae": ("mnist-vae", NOEVAL, 20),
    "mnist-wgan-gp": ("mnist-wgan-gp", NOEVAL, 5),
    "diff-augment": ("mnist-dcgan-plain", NOEVAL + ["techniques.diff_augment=color,translation,cutout"], 10),
    "reference-batch": ("mnist-dcgan-plain", NOEVAL + ["model.generator.reference_batch=16"], 10),
    "minibatch-discrimination": ("mnist-dcgan-plain", NOEVAL + ["model.discriminator.minibatch_discrimination=8"], 10),
    # Text and text to image (added for issue 25's refactor of the run assembly into data kinds).
    "oracle-seqgan-small": ("oracle-seqgan", ["data.options.vocab_size=60", "data.options.length=8",
                                              "data.options.n_train=300", "data.options.n_test=100",
                                              "model.text.pretrain_steps=6", "model.text.d_pretrain_steps=2",
                                              "model.text.rollouts=2", "model.text.eval_samples=50"], 12),
    "shapes-t2i-small": ("shapes-t2i", NOEVAL + ["data.options.n_train=240", "data.options.n_test=150",
                                                 "data.options.encoder.steps=40", "train.batch_size=16"], 6),
}
# Differences made on purpose, by baseline: against fae847c, what issue 11 changed (the review's defect
# fixes, the lazy-regularization phase) and the discriminators whose parameters were renamed (a head
# is now D's child through WithHead). Against any other baseline every case must be equal.
EXPECTED_BY_BASELINE = {"fae847c": {
    "hinge-r1-lazy": "lazy regularization now runs in its own Dreg phase (its own optimizer step)",
    "instance-noise": "instance noise now also reaches D's input in G's step (defect fix)",
    "mnist-acgan": "D's parameters renamed (body.*, aux_head.*); G must be equal",
    "mnist-infogan": "D's parameters renamed (body.*, aux_head.*); G must be equal",
}}


def _digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def capture(out: str) -> None:
    """Run every case in this process's ganforge and write the hashes to ``out``."""
    from ganforge.config import load_config
    from ganforge.training.run import train

    results = {}
    for name, (preset, sets, steps) in CASES.items():
        cfg = load_config(preset, sets + [f"train.steps={steps}", "train.progress=false", "train.tensorboard=false"])
        r = train(cfg)
        d = r.trainer.D
        results[name] = {"generator": _digest(r.trainer.G.state_dict()), "model": _digest(r.model.state_dict()),
                         "discriminator": _digest(d.state_dict()) if d is not None else None,
                         "final": r.summary.get("final"), "modes": r.summary.get("modes_captured"),
                         "high_quality": r.summary.get("high_quality_fraction")}
        print(name, results[name]["generator"], flush=True)
    Path(out).write_text(json.dumps(results, indent=1))


def run_in(tree: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--capture", str(out)], cwd=tree, env=env,
                   check=True)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="fae847c", help="git revision of the code to compare with")
    p.add_argument("--out", default="docs/results/engine_equivalence.json")
    p.add_argument("--capture", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.capture:
        capture(args.capture)
        return
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.baseline], cwd=REPO, check=True,
                       capture_output=True)
        try:
            old = run_in(old_tree, Path(tmp) / "old.json")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO, capture_output=True)
        new = run_in(REPO, Path(tmp) / "new.json")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "ganforge"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    EXPECTED = EXPECTED_BY_BASELINE.get(args.baseline, {})
    cases = {}
    for name in CASES:
        a, b = old[name], new[name]
        same = {k: a[k] == b[k] for k in ("generator", "model", "discriminator")}
        cases[name] = {"bitwise_equal": same, "expected_difference": EXPECTED.get(name),
                       "baseline_final": a["final"], "new_final": b["final"]}
        flag = "equal" if all(same.values()) else ("G equal" if same["generator"] else "DIFFERENT")
        print(f"{name:26s} {flag:10s} {EXPECTED.get(name) or ''}")
    unexpected = [n for n, c in cases.items() if not c["bitwise_equal"]["generator"] and n not in EXPECTED]
    result = {"date": datetime.date.today().isoformat(), "baseline": args.baseline,
              "compared": head.strip() + (" + uncommitted changes" if dirty else ""),
              "command": "python benchmarks/engine_equivalence.py " + " ".join(sys.argv[1:]),
              "threads": int(os.environ.get("OMP_NUM_THREADS", "2")),
              "cases": cases, "equal_generators": sum(c["bitwise_equal"]["generator"] for c in cases.values()),
              "total": len(cases), "unexpected_differences": unexpected}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['equal_generators']}/{len(cases)} generators bitwise equal; unexpected differences: "
          f"{unexpected or 'none'}; wrote {args.out}")


if __name__ == "__main__":
    main()
