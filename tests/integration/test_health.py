"""Health checks: NaN stops a run cleanly, D saturation, vanishing/exploding gradients, mode drops."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ganforge.config import HealthConfig
from ganforge.training.checkpoint import load_state
from ganforge.training.health import Health
from ganforge.training.logger import Logger

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
SMALL = ["--set", "model.generator.hidden=[32,32]", "--set", "model.discriminator.hidden=[32,32]",
         "--set", "train.batch_size=64", "--set", "train.eval_samples=500", "--no-progress",
         # The thresholds below were found with these settings; pin them against preset changes.
         "--set", "train.lr_decay=none", "--set", "optim_g.lr=1e-4", "--set", "optim_d.lr=1e-4",
         "--set", "optim_g.betas=[0.5,0.999]", "--set", "optim_d.betas=[0.5,0.999]", "--seed", "0"]


def train(out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganforge", "train", "ring2d", "--out", str(out),
                           "--steps", str(steps), *SMALL, *extra],
                          env=ENV, capture_output=True, text=True, timeout=300)


def warnings_in_log(run: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in records if "warning" in r]


def all_finite(path: Path) -> list[str]:
    """Names of the checkpoint's tensors that hold NaN or Inf (empty when all are finite)."""
    return [k for k, v in load_file(str(path)).items() if v.is_floating_point() and not torch.isfinite(v).all()]


def assert_diverged(proc: subprocess.CompletedProcess, run: Path) -> dict[str, Any]:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ganforge:") and "non-finite" in last, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert not (run / "generator.safetensors").exists()  # nothing broken is exported
    return summary


# --------------------------------------------------------------------------------------------
# NaN / Inf


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # Plain SGD at lr 1 on ring2d blows up after ~170 steps (the seed is fixed, so always the same).
    run = tmp_path / "run"
    proc = train(run, 400, "--set", "optim_d.name=sgd", "--set", "optim_g.name=sgd",
                 "--set", "optim_d.lr=1.0", "--set", "optim_g.lr=1.0", "--set", "train.checkpoint_every=10")
    summary = assert_diverged(proc, run)
    assert 10 < summary["steps"] < 400
    ckpt = run / "checkpoints/last.safetensors"
    assert ckpt.is_file(), "no checkpoint from before the blow-up"
    state = load_state(ckpt)
    assert 0 < state["step"] < summary["steps"]
    assert all_finite(ckpt) == []
    assert any(w["kind"] == "nan" for w in summary["warnings"])
    assert any(w["warning"] == "nan" for w in warnings_in_log(run))


def test_overflowing_optimizer_state_is_never_checkpointed(tmp_path: Path) -> None:
    # With a huge Adam learning rate the squared gradients overflow to inf in Adam's second moments
    # while the weights are still finite; such a state must not be saved as "last good".
    run = tmp_path / "run"
    proc = train(run, 100, "--set", "optim_d.lr=1e8", "--set", "optim_g.lr=1e8",
                 "--set", "train.checkpoint_every=1")
    assert_diverged(proc, run)
    ckpt = run / "checkpoints/last.safetensors"
    assert ckpt.is_file()
    assert all_finite(ckpt) == []
    state = load_state(ckpt)
    assert state["step"] >= 1


def test_health_check_nan_sets_stop_reason() -> None:
    health, logger, trainer = make_health()
    health.check(trainer, {"d_loss": 0.7, "g_loss": float("nan"), "grad_norm_d": float("inf")})
    assert trainer.stop_reason is not None
    assert "non-finite" in trainer.stop_reason and "g_loss" in trainer.stop_reason
    assert "grad_norm_d" in trainer.stop_reason and "d_loss" not in trainer.stop_reason
    assert kinds(logger) == ["nan"]


# --------------------------------------------------------------------------------------------
# D saturation


def test_minimax_with_a_strong_d_warns_of_saturation(tmp_path: Path) -> None:
    # Five D steps per G step at 10x G's learning rate: D(x) -> 1, D(G(z)) -> 0 within ~60 steps.
    run = tmp_path / "run"
    proc = train(run, 120, "--set", "model.loss.name=minimax", "--set", "train.d_steps=5",
                 "--set", "optim_d.lr=2e-3", "--set", "train.log_every=2")
    assert proc.returncode == 0, proc.stderr
    warned = [w for w in warnings_in_log(run) if w["warning"] == "d_saturation"]
    assert len(warned) == 1, warnings_in_log(run)  # shown once, not at every logged step
    assert "D saturates" in warned[0]["message"]
    assert "d_saturation" in {w["kind"] for w in json.loads((run / "summary.json").read_text())["warnings"]}
    assert "D saturates" in proc.stderr  # and on screen


def make_health(**cfg: Any) -> tuple[Health, Logger, SimpleNamespace]:
    logger = Logger(None, every=1, progress=False)
    health = Health(logger, HealthConfig(**cfg), probabilistic=True)
    return health, logger, SimpleNamespace(step_num=0, stop_reason=None)


def kinds(logger: Logger) -> list[str]:
    return [w["kind"] for w in logger.warnings]


def feed(health: Health, trainer: SimpleNamespace, values: dict[str, float], times: int) -> None:
    for _ in range(times):
        trainer.step_num += 1
        health.check(trainer, values)


SATURATED = {"d_real": 0.999, "d_fake": 0.001, "d_loss": 0.002, "g_loss": -0.001}
BALANCED = {"d_real": 0.6, "d_fake": 0.4, "d_loss": 1.3, "g_loss": 0.7}


def test_saturation_needs_patience_warns_once_and_rearms() -> None:
    health, logger, trainer = make_health(saturation_patience=5)
    feed(health, trainer, SATURATED, 4)
    assert kinds(logger) == []  # not yet: 4 < patience
    feed(health, trainer, BALANCED, 1)  # the streak is broken
    feed(health, trainer, SATURATED, 4)
    assert kinds(logger) == []
    feed(health, trainer, SATURATED, 1)
    assert kinds(logger) == ["d_saturation"]
    assert logger.warnings[0]["step"] == trainer.step_num
    feed(health, trainer, SATURATED, 20)
    assert kinds(logger) == ["d_saturation"]  # once per episode
    feed(health, trainer, BALANCED, 1)
    feed(health, trainer, SATURATED, 5)
    assert kinds(logger) == ["d_saturation", "d_saturation"]  # a new episode warns again
    assert trainer.stop_reason is None


def test_saturation_only_for_probabilistic_losses() -> None:
    logger = Logger(None, every=1, progress=False)
    health = Health(logger, HealthConfig(saturation_patience=1), probabilistic=False)
    trainer = SimpleNamespace(step_num=0, stop_reason=None)
    feed(health, trainer, {"d_real": 5.0, "d_fake": -5.0}, 10)  # critic values, not probabilities
    assert kinds(logger) == []


def test_one_sided_saturation_is_not_saturation() -> None:
    health, logger, trainer = make_health(saturation_patience=2)
    feed(health, trainer, {"d_real": 0.999, "d_fake": 0.5}, 10)
    feed(health, trainer, {"d_real": 0.5, "d_fake": 0.001}, 10)
    assert kinds(logger) == []


# --------------------------------------------------------------------------------------------
# Gradient norms


@pytest.mark.parametrize("who", ["g", "d"])
def test_vanishing_and_exploding_gradients(who: str) -> None:
    health, logger, trainer = make_health(grad_vanish=1e-6, grad_explode=1e3)
    key = f"grad_norm_{who}"
    feed(health, trainer, {key: 1.0}, 3)
    assert kinds(logger) == []
    feed(health, trainer, {key: 1e-9}, 3)
    assert kinds(logger) == [f"vanishing_{who}"]
    assert "vanish" in logger.warnings[-1]["message"] and who.upper() in logger.warnings[-1]["message"]
    feed(health, trainer, {key: 1.0}, 1)  # recovers: the warning re-arms
    feed(health, trainer, {key: 1e6}, 3)
    assert kinds(logger) == [f"vanishing_{who}", f"exploding_{who}"]
    assert "explod" in logger.warnings[-1]["message"]
    feed(health, trainer, {key: 1.0}, 1)
    feed(health, trainer, {key: 1e-12}, 1)
    assert kinds(logger)[-1] == f"vanishing_{who}" and len(kinds(logger)) == 3
    assert trainer.stop_reason is None  # warnings, not stops


def test_gradient_thresholds_are_exclusive_bounds() -> None:
    health, logger, trainer = make_health(grad_vanish=1e-6, grad_explode=1e3)
    feed(health, trainer, {"grad_norm_g": 1e-6, "grad_norm_d": 1e3}, 2)
    assert kinds(logger) == []


# --------------------------------------------------------------------------------------------
# Mode drops


def test_mode_drop_warning() -> None:
    health, logger, _ = make_health(mode_drop=2)
    health.modes(100, 5, 8)
    health.modes(200, 7, 8)
    health.modes(300, 6, 8)  # dropped by 1 < 2: no warning
    assert kinds(logger) == []
    health.modes(400, 5, 8)  # 7 -> 5
    assert kinds(logger) == ["mode_drop"]
    w = logger.warnings[-1]
    assert w["step"] == 400 and "7" in w["message"] and "5" in w["message"] and "8" in w["message"]
    assert health.best_modes == 7  # the best is remembered, not the last
    state = health.state_dict()  # what a resume needs to go on warning the same way
    assert state["best_modes"] == 7 and state["warned"] == ["mode_drop"]
    assert state["last_modes"] == {"modes_captured": 5, "modes_total": 8}


def test_mode_drop_state_survives_a_resume() -> None:
    health, _, _ = make_health()
    health.modes(100, 8, 8)
    restored, logger, _ = make_health()
    restored.load_state_dict(health.state_dict())
    restored.modes(200, 3, 8)
    assert kinds(logger) == ["mode_drop"]


def test_warnings_go_to_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    logger = Logger(log, every=1, progress=False)
    logger.on_train_start(SimpleNamespace(step_num=0, cfg=SimpleNamespace(steps=10)))
    health = Health(logger, HealthConfig(), probabilistic=True)
    health.modes(10, 8, 8)
    health.modes(20, 2, 8)
    logger.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records == [{"step": 20, "warning": "mode_drop", "message": logger.warnings[0]["message"]}]
