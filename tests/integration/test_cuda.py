"""The CUDA path, end to end: short image runs on the GPU, evaluation and pictures included.

Skipped where no GPU is present (CI has none); run on a machine with one. These guard the places
where tensors drawn from the trainer's CPU random generator meet a model on the GPU (targets for
label smoothing, gradient-penalty mixing, sampling for metrics, Q's accuracy on real digits).
"""
from __future__ import annotations

import json

import pytest
import torch
from procs import ganforge

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")

SHRINK = ["--no-progress", "--device", "cuda", "--steps", "20", "--set", "train.batch_size=16",
          "--set", "model.generator.width=8", "--set", "model.discriminator.width=8",
          "--set", "train.eval_every=10", "--set", "eval.n=300", "--set", "train.sample_every=10",
          "--set", "train.checkpoint_every=10", "--set", "train.tensorboard=false"]


@pytest.mark.parametrize("preset, extra", [
    ("mnist-dcgan", ["--set", "model.self_condition=10"]),
    ("mnist-dcgan-plain", ["--set", "techniques.label_smoothing=0.1",
                           "--set", "techniques.diff_augment=color,translation"]),
    ("mnist-infogan", []),
    ("mnist-acgan", []),
    ("mnist-wgan-gp", []),
    ("mnist-vae", []),
])
def test_short_run_on_the_gpu(tmp_path, preset, extra):
    out = tmp_path / preset
    r = ganforge("train", preset, "--out", str(out), *SHRINK, *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["fid"] > 0 and s["status"] == "ok"
    if preset == "mnist-infogan":
        assert 0 <= s["q_accuracy"] <= 1
    r = ganforge("train", "--resume", str(out), "--steps", "30", "--device", "cuda", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    r = ganforge("sample", str(out), "--n", "8", "--out", str(tmp_path / "s.npz"))
    assert r.returncode == 0, r.stderr[-3000:]


def test_a_resumed_gpu_run_draws_the_noise_of_an_uninterrupted_one(tmp_path):
    # G's noise comes from a generator on the GPU: its state is in the checkpoint (issue 24).
    from ganforge.config import from_dict
    from ganforge.training.assemble import assemble
    from ganforge.training.checkpoint import load_state, save_state
    from ganforge.training.trainer import Trainer

    def trainer(seed: int) -> Trainer:
        cfg = from_dict({"model": {"generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
                         "train": {"steps": 10, "batch_size": 32, "seed": seed, "device": "cuda",
                                   "progress": False, "tensorboard": False}})
        torch.manual_seed(seed)
        return Trainer(assemble(cfg), cfg.train, device="cuda")

    a = trainer(0)
    for _ in range(3):
        a.step()
    save_state(tmp_path / "last.safetensors", a.state_dict())
    b = trainer(1)
    b.load_state_dict(load_state(tmp_path / "last.safetensors"))
    assert torch.equal(a.game.noise(8)["v"], b.game.noise(8)["v"])
