"""`ganforge eval` and image metrics during training, on a tiny VAE run (the mnist-vae preset, shortened)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from procs import ganforge

import ganforge as gf
from ganforge.metrics import digits

KEYS = {"fid", "kid", "inception_score", "precision", "recall", "density", "coverage", "protocol"}
TINY = ["--steps", "30", "--no-progress", "--set", "train.batch_size=32", "--set", "model.generator.width=8",
        "--set", "model.discriminator.width=8", "--set", "train.eval_every=15", "--set", "eval.n=500",
        "--set", "train.sample_every=15", "--set", "train.tensorboard=false"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vae"
    r = ganforge("train", "mnist-vae", "--out", str(out), *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_vae_run_has_image_metrics_and_best_checkpoint(vae_run):
    s = json.loads((vae_run / "summary.json").read_text())
    assert s["status"] == "ok" and s["fid"] > 0 and "kid" in s
    assert s["eval_protocol"]["extractor_sha256"] == digits.WEIGHTS_SHA256
    assert s["best"]["metric"] == "fid" and s["best"]["step"] in (15, 30)
    evals = [json.loads(line) for line in (vae_run / "log.jsonl").read_text().splitlines() if "eval/fid" in line]
    assert [e["step"] for e in evals] == [15, 30]
    steps = [json.loads(line) for line in (vae_run / "log.jsonl").read_text().splitlines() if "g_loss" in line]
    assert {"recon", "kl"} <= set(steps[0])
    best = gf.load(vae_run / "checkpoints" / "best.safetensors")
    assert tuple(best.sample(4).shape) == (4, 1, 28, 28)
    assert (vae_run / "samples" / "step_0000015.png").is_file() and (vae_run / "curves.png").is_file()


def test_eval_command_writes_eval_json_with_protocol(vae_run):
    r = ganforge("eval", str(vae_run), "--n", "500", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    saved = json.loads((vae_run / "eval.json").read_text())
    assert KEYS <= set(saved) and printed["fid"] == saved["fid"]
    p = saved["protocol"]
    assert p["extractor"] == "digits" and p["extractor_sha256"] == digits.WEIGHTS_SHA256
    assert p["n_fake"] == 500 and p["n_real"] == 5000 and p["reference"] == "mnist:heldout"
    # Same seed, same numbers.
    again = ganforge("eval", str(vae_run), "--n", "500", "--metrics", "fid", "--no-progress", "--out",
                     str(vae_run / "fid.json"))
    assert json.loads(again.stdout.strip().splitlines()[-1])["fid"] == pytest.approx(saved["fid"], rel=1e-9)


def test_eval_of_real_images_and_bad_input(tmp_path):
    r = ganforge("eval", "mnist:train5k", "--metrics", "fid,pr", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    real = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0 < real["fid"] < 10 and real["precision"] > 0.7
    for args, needle in ((["eval", str(tmp_path / "nope")], "no such run folder"),
                         (["eval", "mnist:train5k", "--metrics", "fid,bogus"], "unknown metric 'bogus'"),
                         (["eval", "mnist:train5k", "--extractor", "inceptoin"], "did you mean 'inception'")):
        bad = ganforge(*args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert needle in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_image_samples_command(vae_run, tmp_path):
    assert ganforge("sample", str(vae_run), "--n", "16", "--out", str(tmp_path / "grid.png")).returncode == 0
    assert ganforge("sample", str(vae_run), "--n", "5", "--out", str(tmp_path / "pngs")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert ganforge("sample", str(vae_run), "--n", "7", "--out", str(tmp_path / "x.npz")).returncode == 0
    import numpy as np
    assert np.load(tmp_path / "x.npz")["samples"].shape == (7, 1, 28, 28)
