"""Data-parallel training with torchrun: 2 processes on this CPU (gloo).

Each test starts ``torchrun --nproc_per_node 2`` in a child process. The reference for "the same
updates" is one process drawing the same global batch as 2 micro-batches (``train.accumulate=2``):
shard s of the global batch is drawn from the random stream seeded seed + 1 + s * stride in either
layout, so the two runs see the same samples and noise, and their weights must agree.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from procs import ENV, REPO, assert_same, free_port, ok, one, torchrun

from ganforge.training.checkpoint import load_state

# serial: 2 processes each; one xdist worker runs these one after another (`--dist loadgroup`).
pytestmark = [pytest.mark.serial, pytest.mark.xdist_group("serial"),
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="this torch build has no gloo backend")]

SMALL = ["--set", "model.generator.hidden=[32,32]", "--set", "model.discriminator.hidden=[32,32]",
         "--set", "train.batch_size=64", "--set", "train.eval_samples=500", "--no-progress"]


@pytest.mark.parametrize("preset, extra", [
    ("ring2d-wgan-gp", []),  # the gradient penalty in every D update (5 per G update)
    ("ring2d", ["--set", "model.loss.r1=1.0", "--set", "model.loss.reg_interval=4"]),  # lazy R1: its own phase
])
def test_two_processes_make_the_updates_of_one_process_with_the_global_batch(tmp_path, preset, extra):
    two, single = tmp_path / "two", tmp_path / "one"
    ok(torchrun("-m", "ganforge", "train", preset, "--out", str(two), "--steps", "6", "--set", "train.log_every=2",
                *SMALL, *extra))
    ok(one("train", preset, "--out", str(single), "--steps", "6", "--set", "train.accumulate=2", *SMALL, *extra))
    assert_same(two, single)
    # Control: the same number of steps with each process alone (no reduction) ends elsewhere, so
    # the agreement above is the gradients being averaged, not the runs being too short to differ.
    alone = tmp_path / "alone"
    ok(one("train", preset, "--out", str(alone), "--steps", "6", "--set", "train.batch_size=32", *SMALL[:4],
           "--set", "train.eval_samples=500", "--no-progress", *extra))
    with pytest.raises(AssertionError, match="weights differ"):
        assert_same(two, alone)
    # Only rank 0 wrote, and one log line per logged step (not one per process).
    steps = [line for line in (two / "log.jsonl").read_text().splitlines() if '"d_loss"' in line]
    assert [json.loads(line)["step"] for line in steps] == [2, 4, 6]
    assert (two / "summary.json").is_file() and (two / "generator.safetensors").is_file()


def test_a_checkpoint_of_two_processes_resumes_on_one_and_back(tmp_path):
    # No learning-rate decay: its schedule depends on the total steps, which the resumed runs change.
    preset, s = "ring2d-wgan-gp", ["--set", "train.checkpoint_every=0", "--set", "train.lr_decay=none"]
    ref = tmp_path / "ref"
    ok(torchrun("-m", "ganforge", "train", preset, "--out", str(ref), "--steps", "8", *SMALL, *s))
    # 2 processes for 4 steps, then 1 process (2 micro-batches) to 8: the same weights as 2 throughout.
    a = tmp_path / "two_then_one"
    ok(torchrun("-m", "ganforge", "train", preset, "--out", str(a), "--steps", "4", *SMALL, *s))
    ok(one("train", "--resume", str(a), "--steps", "8", "--set", "train.accumulate=2", "--no-progress"))
    assert_same(ref, a)
    # 1 process (2 micro-batches) for 4 steps, then 2 processes to 8.
    b = tmp_path / "one_then_two"
    ok(one("train", preset, "--out", str(b), "--steps", "4", "--set", "train.accumulate=2", *SMALL, *s))
    p = torchrun("-m", "ganforge", "train", "--resume", str(b), "--steps", "8", "--set", "train.accumulate=1",
                 "--no-progress")
    ok(p)
    assert_same(ref, b)
    # A plain 1-process resume (one stream for the whole batch) continues too, from step 4.
    c = tmp_path / "two_then_plain"
    ok(torchrun("-m", "ganforge", "train", preset, "--out", str(c), "--steps", "4", *SMALL, *s))
    ok(one("train", "--resume", str(c), "--steps", "6", "--no-progress"))
    assert load_state(c / "checkpoints" / "last.safetensors")["step"] == 6


@pytest.mark.parametrize("mode, expect", [
    ("nan", "non-finite values at step 10"),  # NaN weights on process 1: both see NaN at the next log step
    ("stop", "a health stop injected by the test (on process 1)"),  # process 1 alone stops, between log steps
])
def test_a_stop_on_one_process_ends_both_without_a_hang(tmp_path, mode, expect):
    out = tmp_path / mode
    p = torchrun(str(REPO / "tests" / "integration" / "ddp_worker.py"), mode, str(out), timeout=90)
    assert p.returncode != 0
    assert f"rank 0: stopped: {expect}" in p.stdout, p.stdout + p.stderr[-2000:]
    assert "rank 1: stopped" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] < 200


def test_a_global_batch_that_does_not_divide_is_one_line(tmp_path):
    p = torchrun("-m", "ganforge", "train", "ring2d", "--out", str(tmp_path / "r"), "--steps", "2",
                 "--set", "train.batch_size=63", "--no-progress")
    assert p.returncode != 0
    assert "ganforge: error: train.batch_size 63 is the global batch and must divide by 2 processes" in p.stderr
    assert str(REPO / "ganforge") not in p.stderr  # no traceback from ganforge (torchrun prints its own summary)
    assert not (tmp_path / "r").exists()


def _workers(parent: int) -> dict[int, int]:
    """The worker processes torchrun (process ``parent``) started: rank -> pid (Linux's /proc)."""
    ranks = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        rank = next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)
        if ppid == parent and rank is not None:
            ranks[rank] = int(proc.name)
    return ranks


def _train_records(run: Path) -> list[int]:
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()
            if line.endswith("}") and '"d_loss"' in line]


@pytest.mark.parametrize(("targets", "late"), [((1,), False), ((0, 1), False), ((0, 1), True)],
                         ids=["one-rank", "both-at-different-steps", "the-other-after-the-checkpoint"])
def test_sigterm_to_some_ranks_stops_all_at_one_step_with_one_checkpoint(tmp_path, targets, late):
    # A preemption reaches the processes of a run at different moments (or only one of them): they must
    # agree to stop at the same step, else one waits in the checkpoint's gather while another waits in
    # the next step's all-reduce, until the collective timeout, with no checkpoint written. ``late``:
    # the second signal lands once the checkpoint is written, while the other process waits in the
    # barrier before the exit (a process killed there leaves rank 0's barrier with a reset connection).
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "ganforge", "train", "ring2d", "--out", str(out),
           "--steps", "100000", "--set", "train.log_every=5", "--set", "train.checkpoint_every=0",
           "--set", "train.eval_every=0", "--set", "train.sample_every=0", *SMALL]
    p = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    ranks: dict[int, int] = {}
    err: str | None = None
    try:
        deadline = time.monotonic() + 90
        while not _train_records(out) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        ranks = _workers(p.pid)
        assert sorted(ranks) == [0, 1], f"torchrun's workers not found: {ranks}"
        ckpt = out / "checkpoints" / "last.safetensors"
        for i, rank in enumerate(targets):
            if i and late:
                deadline = time.monotonic() + 30
                while not ckpt.exists() and time.monotonic() < deadline:
                    time.sleep(0.001)
            elif i:
                time.sleep(0.02)  # the second signal lands a step or so later
            with contextlib.suppress(ProcessLookupError):  # (late: it may have left already)
                os.kill(ranks[rank], signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if p.poll() is None or err is None:
            # A hang: end torchrun and its workers (they run in sessions of their own and hold its pipes).
            for pid in ranks.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert err is not None, "the processes hung after the signal (none stopped within 60 s)"
    # torchrun reports its workers' exit as a failure: 143 from a worker that stopped on the signal,
    # or -15 (SIGTERM) from one that torchrun ended itself after the first one left.
    assert p.returncode == 1, err[-2000:]
    assert "exitcode  : 143" in err or "exitcode  : -15" in err, err[-2000:]
    assert str(REPO / "ganforge") not in err, err[-3000:]  # no traceback from ganforge (torchrun prints its own)
    assert f"continue with: ganforge train --resume {out}" in err, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    state = load_state(out / "checkpoints" / "last.safetensors")
    assert summary["status"] == "interrupted" and state["step"] == summary["steps"] > 0
    assert len(state["shard_rngs"]) == 2  # both processes' streams: the checkpoint of both
    assert list((out / "checkpoints").iterdir()) == [out / "checkpoints" / "last.safetensors"]
    resumed = torchrun("-m", "ganforge", "train", "--resume", str(out), "--steps", str(state["step"] + 10),
                       "--no-progress")
    ok(resumed)
    assert json.loads((out / "summary.json").read_text())["steps"] == state["step"] + 10
