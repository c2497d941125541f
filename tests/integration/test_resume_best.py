"""An image run with a best checkpoint, stopped and resumed, ends bitwise equal to one never stopped:
the final generator, the best generator and the best-so-far bookkeeping all included."""
from __future__ import annotations

import json
from pathlib import Path

from procs import ganforge
from safetensors.torch import load_file

# A tiny DCGAN on the embedded MNIST, FID on 500 samples every 2 steps, the best kept by FID.
SETS = ["--set", "model.generator.width=8", "--set", "model.discriminator.width=8", "--set", "train.batch_size=32",
        "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0",
        "--set", "eval.metrics=[fid]", "--set", "eval.best=fid", "--set", "eval.n=500",
        "--set", "train.tensorboard=false", "--no-progress"]


def tensors(path: Path) -> dict:
    return load_file(str(path))


def test_resumed_image_run_keeps_its_best_checkpoint_bitwise(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = ganforge("train", "mnist-dcgan-plain", "--out", str(a), "--steps", "8", *SETS)
    assert r.returncode == 0, r.stderr[-2000:]
    r = ganforge("train", "mnist-dcgan-plain", "--out", str(b), "--steps", "4", *SETS)
    assert r.returncode == 0, r.stderr[-2000:]
    r = ganforge("train", "--resume", str(b), "--steps", "8", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (a, b))
    assert sa["best"] == sb["best"] and sa["fid"] == sb["fid"]
    for name in ("generator.safetensors", "checkpoints/best.safetensors"):
        ta, tb = tensors(a / name), tensors(b / name)
        assert ta.keys() == tb.keys() and all(ta[k].equal(tb[k]) for k in ta), name
    # The FID trajectory of the resumed run's log is the uninterrupted one's, and the best is its minimum.
    fids = [json.loads(line) for line in (a / "log.jsonl").read_text().splitlines() if "eval/fid" in line]
    assert sa["best"]["value"] == min(f["eval/fid"] for f in fids)
