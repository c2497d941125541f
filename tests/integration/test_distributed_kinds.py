"""Data-parallel training of text, text-to-image and table GANs: 2 processes make the updates of 1.

As in ``test_distributed.py``, the reference is one process drawing the global batch as 2
micro-batches (``train.accumulate=2``). These kinds draw their real samples without replacement
(an epoch sampler, cut into one shard per micro-batch of the global batch) and use torch's global
random stream inside the networks (dropout masks, Gumbel noise), which also runs one stream per
shard: the layouts see the same samples, noise and masks, so their parameters must agree.

Left out by construction: batch norm's running statistics (one process updates them once per
micro-batch, DDP broadcasts rank 0's before each forward pass), and spectral norm's power
iteration, a buffer for the same reason (the text-to-image run switches spectral norm off).
Each of these tests failed on the previous main (d4f1977), whose samplers were cut per process
and whose global stream was one per process: weights apart by 0.0135 (text), 0.00175
(text to image) and 0.00168 (CTGAN) after 4 steps.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from procs import assert_same, ok, one, torchrun
from safetensors.torch import load_file

# serial: 2 processes each; one xdist worker runs these one after another (`--dist loadgroup`).
pytestmark = [pytest.mark.serial, pytest.mark.xdist_group("serial"),
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="this torch build has no gloo backend")]

QUIET = ["--set", "train.eval_every=0", "--set", "train.sample_every=0", "--set", "train.tensorboard=false",
         "--no-progress"]


def twice(tmp_path: Path, preset: str, steps: int, *args: str) -> tuple[Path, Path]:
    """The run in 2 processes and in 1 with 2 micro-batches."""
    two, single = tmp_path / "two", tmp_path / "one"
    common = ["--steps", str(steps), *args, *QUIET]
    ok(torchrun("-m", "ganforge", "train", preset, "--out", str(two), *common, timeout=300))
    ok(one("train", preset, "--out", str(single), "--set", "train.accumulate=2", *common, timeout=300))
    return two, single


def logged_steps(run: Path, key: str) -> list[int]:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if key in r]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("corpus")
    subjects, verbs, objects = ["a man", "a dog", "two cats"], ["sits on", "looks at"], ["a bench .", "the red car ."]
    paths = []
    for name, n, seed in (("train.txt", 120, 0), ("test.txt", 40, 1)):
        rng = random.Random(seed)
        (d / name).write_text("".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}\n"
                                      for _ in range(n)))
        paths.append(d / name)
    return ["--set", f"data.path={paths[0]}", "--set", f"data.options.test_path={paths[1]}"]


TEXT = ["model.generator.width=16", "model.generator.hidden=[24]", "model.discriminator.width=8",
        "model.discriminator.filter_scale=0.04", "train.batch_size=16", "train.log_every=1",
        "model.text.eval_samples=40", "model.text.rollouts=2"]


@pytest.mark.parametrize("preset, schedule", [
    # MLE pretraining, D pretraining, then policy-gradient steps with Monte Carlo rollouts.
    ("coco-seqgan", ["model.text.pretrain_steps=3", "model.text.d_pretrain_steps=2"]),
    # The Gumbel-softmax relaxation (noise from the shard's stream) on its temperature schedule.
    ("coco-gumbel", ["model.text.pretrain_steps=3", "model.text.d_pretrain_steps=1"]),
])
def test_text_two_processes_make_the_updates_of_one(tmp_path, corpus, preset, schedule):
    two, single = twice(tmp_path, preset, 7, *corpus, *[a for s in TEXT + schedule for a in ("--set", s)])
    assert_same(two, single)
    assert logged_steps(two, "g_loss")[-1] == 7  # the adversarial steps ran


def test_text_to_image_two_processes_make_the_updates_of_one(tmp_path):
    small = ["data.options.n_train=240", "data.options.n_test=150", "data.options.encoder.steps=40",
             "eval.classifier_steps=40", "train.batch_size=16", "train.fresh_g_noise=true",
             "model.discriminator.spectral_norm=false"]  # (power iteration: see the module's docstring)
    two, single = twice(tmp_path, "shapes-t2i", 4, *[a for s in small for a in ("--set", s)])
    assert_same(two, single, running_stats=False)
    # Both fitted one caption encoder, the same: it travels in the checkpoint and the exported generator.
    encoders = [load_file(run / "caption_encoder.safetensors") for run in (two, single)]
    assert encoders[0].keys() == encoders[1].keys()
    assert all(torch.equal(encoders[0][k], encoders[1][k]) for k in encoders[0])


def test_ctgan_two_processes_make_the_updates_of_one(tmp_path):
    rng = random.Random(0)
    table = tmp_path / "t.csv"
    table.write_text("age,city,income\n" + "".join(
        f"{rng.randint(18, 80)},{rng.choice('abc')},{rng.gauss(50, 10):.2f}\n" for _ in range(300)))
    # Batch 40: 20 rows per process, 2 packs of 10 each; dropout 0.5 and Gumbel noise as in the preset.
    two, single = twice(tmp_path, "tabular-ctgan", 4, "--set", f"data.path={table}", "--set", "train.batch_size=40",
                        "--set", "model.generator.hidden=[32,32]", "--set", "model.discriminator.hidden=[32,32]")
    assert_same(two, single, running_stats=False)


def test_text_resumed_across_layouts_draws_the_sentences_of_an_uninterrupted_run(tmp_path, corpus):
    """2 processes for 5 steps, then 1 process with 2 micro-batches to 10: each shard of the corpus
    goes on from its place in its permutation (mid-epoch here: 60 sentences a shard, 8 a step)."""
    tiny = [*corpus, *[a for s in TEXT for a in ("--set", s)], "--set", "train.lr_decay=none",
            "--set", "train.checkpoint_every=0", *QUIET]
    ref, run = tmp_path / "ref", tmp_path / "two_then_one"
    ok(torchrun("-m", "ganforge", "train", "coco-mle", "--out", str(ref), "--steps", "10", *tiny, timeout=300))
    ok(torchrun("-m", "ganforge", "train", "coco-mle", "--out", str(run), "--steps", "5", *tiny, timeout=300))
    ok(one("train", "--resume", str(run), "--steps", "10", "--set", "train.accumulate=2", "--no-progress"))
    assert_same(ref, run)
