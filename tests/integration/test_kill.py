"""Faults: kill -9 at random moments loses at most the steps since the last checkpoint and never
corrupts one; SIGINT / SIGTERM save a checkpoint and say how to resume."""
from __future__ import annotations

import json
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest

from ganforge.training.checkpoint import load_state

# Kills at moments of wall time: one xdist worker runs these (and the torchrun tests) in turn.
pytestmark = [pytest.mark.serial, pytest.mark.xdist_group("serial")]

EVERY = 20
TRAIN = [sys.executable, "-m", "ganforge", "train"]
OPTS = ["--no-progress", "--set", f"train.checkpoint_every={EVERY}", "--set", "train.log_every=5",
        "--set", "train.sample_every=0", "--set", "train.eval_every=0", "--set", "train.tensorboard=false"]


def _logged_steps(log):
    steps = []
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # the half-written last line of a killed run (the resumed run cuts it)
    return steps


def test_twenty_kills_then_the_run_completes(tmp_path):
    out = tmp_path / "run"
    rng = random.Random(0)
    last_step = -1
    for i in range(20):
        cmd = TRAIN + (["--resume", str(out)] if (out / "config.yaml").exists() else ["grid2d", "--out", str(out)])
        p = subprocess.Popen(cmd + ["--steps", "100000"] + OPTS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 6.0))
        p.kill()  # SIGKILL: no handler runs
        _, err = p.communicate(timeout=30)
        assert b"Traceback" not in err, err.decode()[-2000:]
        ckpt = out / "checkpoints" / "last.safetensors"
        if ckpt.exists():
            step = int(load_state(ckpt)["step"])  # never corrupt: it always loads
            assert step >= last_step, f"kill {i}: checkpoint went back from {last_step} to {step}"
            last_step = step
            logged = _logged_steps(out / "log.jsonl")
            assert max(logged) - step <= EVERY + 5, f"kill {i}: lost more than the steps since the last checkpoint"
    final = subprocess.run(TRAIN + ["--resume", str(out), "--steps", str(max(last_step, 0) + 60)] + OPTS,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] in ("ok", "warning") and summary["steps"] == max(last_step, 0) + 60
    for line in (out / "log.jsonl").read_text().splitlines():
        json.loads(line)  # valid JSON lines after 20 kills
    assert last_step > 0, "no kill came after a checkpoint: the delays are too short for this machine"


def test_sigint_and_sigterm_save_a_checkpoint_and_name_the_resume_command(tmp_path):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / sig.name
        p = subprocess.Popen(TRAIN + ["grid2d", "--out", str(out), "--steps", "100000"] + OPTS,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not (out / "log.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)  # training has started (before its first checkpoint, often)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == code, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("ganforge: interrupted at step") and f"--resume {out}" in lines[-1]
        assert "Traceback" not in err
        state = load_state(out / "checkpoints" / "last.safetensors")
        assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
        resumed = subprocess.run(TRAIN + ["--resume", str(out), "--steps", str(int(state["step"]) + 10)] + OPTS,
                                 capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 0, "d_loss": 1.0}\n{"step": 5, "d_lo')
    new = subprocess.run(TRAIN + ["grid2d", "--out", str(out), "--steps", "20"] + OPTS, capture_output=True, text=True)
    assert new.returncode == 2 and f"--resume {out}" in new.stderr and "step 0" in new.stderr
    (out / "config.yaml").write_text(subprocess.run(
        [sys.executable, "-c", "import yaml; from ganforge.config import load_config, to_dict; "
         "print(yaml.safe_dump(to_dict(load_config('grid2d'))))"], capture_output=True, text=True).stdout)
    again = subprocess.run(TRAIN + ["--resume", str(out), "--steps", "20"] + OPTS, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "starting it again from step 0" in again.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 20


def test_ctrl_c_during_a_table_fit_names_a_command_that_continues_it(tmp_path):
    # `ganforge train --resume` cannot rebuild a table fit (its config has no table path): the printed
    # command must be the tabular one, and it must work exactly as printed.
    table = tmp_path / "my table.csv"  # a space: the command quotes what it prints
    rows = ["x,kind"] + [f"{(i * 37 % 100) / 10:.2f},{'abc'[i % 3]}" for i in range(100)]
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "fit"
    p = subprocess.Popen([sys.executable, "-m", "ganforge", "tabular", "fit", str(table), "--out", str(out),
                          "--epochs", "6", "--batch-size", "20", "--no-progress"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text()) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert "Traceback" not in err and "checkpoint saved" in last, err
    command = last.split("continue with: ", 1)[1]
    args = shlex.split(command)
    assert args[:3] == ["ganforge", "tabular", "fit"] and args[-1] == "--resume"
    resumed = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 6 * 5
    # The command line that cannot continue it says which one does.
    wrong = subprocess.run(TRAIN + ["--resume", str(out)], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "ganforge tabular fit TABLE --out" in wrong.stderr
