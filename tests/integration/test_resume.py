"""Resuming a killed run gives bitwise the same result as never stopping.

Run A trains uninterrupted. Run B, the same command, is killed with SIGKILL between two checkpoints
and continued with ``ganforge train --resume B``. Every tensor of B's final checkpoint (G, D, EMA,
optimizer moments, RNG states) and of its exported generator must equal A's.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from procs import ENV, small
from safetensors.torch import load_file

from ganforge.training.checkpoint import atomic_write, load_state, save_state

SMALL = small(eval_samples=500)
STEPS = 400
EVERY = 50  # checkpoint interval
CKPT = "checkpoints/last.safetensors"


def train_cmd(out: Path, extra: list[str], steps: int = STEPS, every: int = EVERY) -> list[str]:
    return [sys.executable, "-m", "ganforge", "train", "ring2d", "--out", str(out), "--steps", str(steps),
            "--set", f"train.checkpoint_every={every}", *SMALL, *extra]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=ENV, stdout=f, stderr=subprocess.STDOUT)


def logged_steps(run: Path) -> list[int]:
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):  # a line being written
            pass
    return steps


def kill_mid_run(proc: subprocess.Popen, run: Path, past_step: int, timeout: float = 240) -> int:
    """Wait until ``run`` has a checkpoint and has logged a step beyond ``past_step``, then SIGKILL it.

    Returns the last step logged before the kill.
    """
    deadline = time.monotonic() + timeout
    while True:
        steps = logged_steps(run)
        if (run / CKPT).is_file() and steps and max(steps) > past_step:
            break
        if proc.poll() is not None:
            pytest.fail(f"run {run.name} ended (rc {proc.returncode}) before it could be killed: raise STEPS")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"run {run.name} made no progress past step {past_step} in {timeout} s")
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before the kill: raise STEPS"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return max(logged_steps(run))


def assert_same(a: Any, b: Any, where: str = "") -> int:
    """Bitwise equality of two nested states; returns the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"tensor differs at {where}"
        return 1
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys() if isinstance(a, dict) else a)
        return sum(assert_same(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        return sum(assert_same(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)))
    assert a == b, f"{where}: {a!r} != {b!r}"
    return 0


def train_records(run: Path) -> dict[int, dict[str, Any]]:
    """The training records of log.jsonl by step (the last one wins: a resumed run logs some twice)."""
    out = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "d_loss" in r:
            out[r["step"]] = r
    return out


CASES = {
    "plain": [],
    "ema": ["--set", "techniques.ema=0.99"],
    # A warning that fires early and stands: the resumed run neither loses it nor fires it again.
    "d_steps2": ["--set", "train.d_steps=2", "--set", "health.grad_explode=1e-9"],
    # Every source of randomness at once: dropout and batch norm (global RNG), instance noise and
    # label flipping (the trainer's RNG), a gradient penalty on interpolates, RMSProp and SGD.
    "stochastic": ["--set", "model.discriminator.dropout=0.2", "--set", "model.generator.batch_norm=true",
                   "--set", "techniques.instance_noise=0.1", "--set", "techniques.label_flip=0.05",
                   "--set", "model.loss.r1=0.5", "--set", "model.loss.reg_interval=2",
                   "--set", "optim_d.name=rmsprop", "--set", "optim_g.name=sgd", "--set", "optim_g.momentum=0.9",
                   "--set", "techniques.ema=0.9", "--set", "techniques.ema_start=300",
                   "--set", "train.lr_decay=cosine"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_sigkill_is_bitwise_identical(case: str, tmp_path: Path) -> None:
    extra = CASES[case]
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    # A and B-until-the-kill run side by side, one thread each.
    proc_a = start(train_cmd(a_dir, extra), tmp_path / "A.out")
    proc_b = start(train_cmd(b_dir, extra), tmp_path / "B.out")
    try:
        killed_at = kill_mid_run(proc_b, b_dir, past_step=2 * EVERY + 10)
    finally:
        if proc_b.poll() is None:
            proc_b.kill()
    assert proc_a.wait(timeout=300) == 0, (tmp_path / "A.out").read_text()

    # The kill left a loadable checkpoint from before it, and no finished run.
    state = load_state(b_dir / CKPT)
    assert 0 < state["step"] <= killed_at < STEPS
    assert state["step"] % EVERY == 0
    assert not (b_dir / "summary.json").exists() and not (b_dir / "generator.safetensors").exists()

    resumed = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(b_dir), "--no-progress"],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["out"] == str(b_dir)

    final_a, final_b = load_state(a_dir / CKPT), load_state(b_dir / CKPT)
    assert final_a["step"] == final_b["step"] == STEPS
    n = assert_same(final_a, final_b, "checkpoint")
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        assert part in final_b
    if "ema" in case or "stochastic" in case:
        assert final_b["callbacks"]["EMA"]["model"]
    assert n > 20

    gen_a, gen_b = load_file(str(a_dir / "generator.safetensors")), load_file(str(b_dir / "generator.safetensors"))
    assert gen_a.keys() == gen_b.keys()
    for k in gen_a:
        assert torch.equal(gen_a[k], gen_b[k]), k
    raw_a, raw_b = load_file(str(a_dir / CKPT)), load_file(str(b_dir / CKPT))
    assert raw_a.keys() == raw_b.keys() and all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)

    # The trajectory after the resume point matches step for step (losses, D outputs, gradient norms).
    rec_a, rec_b = train_records(a_dir), train_records(b_dir)
    assert rec_a == rec_b
    summary_a = json.loads((a_dir / "summary.json").read_text())
    summary_b = json.loads((b_dir / "summary.json").read_text())
    for key in ("modes_captured", "high_quality_fraction", "reverse_kl_modes", "steps", "final", "warnings"):
        assert summary_a[key] == summary_b[key], key


def test_kill_during_frequent_checkpoints_never_leaves_a_broken_file(tmp_path: Path) -> None:
    """With a checkpoint every step the kill very likely lands inside a write; the file still loads."""
    run = tmp_path / "run"
    proc = start(train_cmd(run, [], steps=3000, every=1), tmp_path / "run.out")
    try:
        kill_mid_run(proc, run, past_step=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_state(run / CKPT)  # never half-written: this parses every tensor
    assert 0 < state["step"] < 3000
    assert all(torch.isfinite(t).all() for t in load_file(str(run / CKPT)).values() if t.is_floating_point())
    resumed = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run), "--steps",
                              str(state["step"] + 20), "--no-progress"],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_state(run / CKPT)["step"] == state["step"] + 20
    for line in (run / "log.jsonl").read_text().splitlines():
        json.loads(line)


def test_resume_after_a_kill_mid_log_line(tmp_path: Path) -> None:
    """A kill can cut log.jsonl inside a record; the resumed run still writes valid JSON lines."""
    run = tmp_path / "run"
    first = subprocess.run(train_cmd(run, [], steps=40, every=20), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    (run / "summary.json").unlink()  # as if killed after the checkpoint at step 40 ...
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 50, "d_loss": 0.6')  # ... in the middle of writing a record
    resumed = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run), "--steps", "60",
                              "--no-progress"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 60
    assert json.loads((run / "summary.json").read_text())["steps"] == 60


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    save_state(path, {"step": 1, "w": torch.arange(4.0)})
    before = path.read_bytes()

    def half_write(tmp: str) -> None:
        Path(tmp).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_write)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file is gone
    assert load_state(path)["step"] == 1
