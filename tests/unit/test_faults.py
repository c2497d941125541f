"""Faults (issue 16): a full disk while checkpointing, NaN rollbacks, a final evaluation far from the data.

Tiny toy runs (a few dozen steps of 32-unit MLPs), so the whole file takes well under a minute.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors import SafetensorError

import ganforge.io
import ganforge.training.checkpoint as checkpoint_module
from ganforge.cli import main
from ganforge.config import HealthConfig, load_config
from ganforge.registry import ConfigError
from ganforge.training.callbacks import TrainingDiverged
from ganforge.training.checkpoint import load_state
from ganforge.training.health import FinalChecks, Health, final_warnings
from ganforge.training.logger import Logger
from ganforge.training.run import run_status, train

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--set", "model.generator.hidden=[32,32]", "--set", "model.discriminator.hidden=[32,32]",
         "--set", "train.batch_size=64", "--set", "train.eval_samples=500", "--set", "train.sample_every=0",
         "--set", "train.tensorboard=false", "--no-progress", "--seed", "0"]
CKPT = Path("checkpoints/last.safetensors")


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def temp_files(folder: Path) -> list[str]:
    return [name for _, _, names in os.walk(folder) for name in names if name.endswith(".tmp")]


def log_records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------
# 1. A full disk while a checkpoint is written


def _safetensors_full_disk(real: Any) -> Any:
    def save_file(tensors: Any, path: str, metadata: Any = None) -> None:
        Path(path).write_bytes(b"half a checkpoint")  # what a disk that filled up mid-write leaves
        # safetensors reports I/O failures as SafetensorError, not OSError (measured with RLIMIT_FSIZE below)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    return save_file


def _rename_full_disk(real: Any) -> Any:
    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith("last.safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)
    return replace


@pytest.mark.parametrize("where", ["safetensors", "rename"])
def test_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    run = tmp_path / "run"
    code, _ = cli(capsys, "train", "ring2d", "--out", str(run), "--steps", "10", *SMALL,
                  "--set", "train.checkpoint_every=10")
    assert code == 0
    before = (run / CKPT).read_bytes()
    if where == "safetensors":
        monkeypatch.setattr(checkpoint_module, "save_file", _safetensors_full_disk(checkpoint_module.save_file))
    else:
        monkeypatch.setattr(ganforge.io.os, "replace", _rename_full_disk(os.replace))
    code, err = cli(capsys, "train", "--resume", str(run), "--steps", "30", "--no-progress")
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (f"ganforge: error: cannot write checkpoint {run / CKPT}: No space left on device "
                         "(the previous checkpoint is intact)"), err
    assert (run / CKPT).read_bytes() == before  # byte for byte
    assert load_state(run / CKPT)["step"] == 10  # and it still loads
    assert temp_files(run) == []
    monkeypatch.undo()  # space freed: the run goes on from that checkpoint
    code, err = cli(capsys, "train", "--resume", str(run), "--steps", "30", "--no-progress")
    assert code == 0, err
    assert load_state(run / CKPT)["step"] == 30


def test_a_real_write_failure_from_safetensors_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # No monkeypatching: the real safetensors writer fails (a file size limit stands in for a full disk;
    # Python ignores SIGXFSZ, so the write returns EFBIG as it would return ENOSPC).
    import resource

    run = tmp_path / "run"
    code, _ = cli(capsys, "train", "ring2d", "--out", str(run), "--steps", "10", *SMALL,
                  "--set", "train.checkpoint_every=10")
    assert code == 0
    before = (run / CKPT).read_bytes()
    limit = len(before) // 2  # above the log and config, below a checkpoint

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run), "--steps", "20",
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ganforge: error: cannot write checkpoint {run / CKPT}: File too large (the previous checkpoint is intact)")
    assert (run / CKPT).read_bytes() == before and temp_files(run) == []


def test_the_first_checkpoint_failing_says_there_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint_module, "save_file", _safetensors_full_disk(checkpoint_module.save_file))
    with pytest.raises(ConfigError, match=r"No space left on device \(no checkpoint was written before\)$"):
        checkpoint_module.save_state(tmp_path / "c.safetensors", {"w": torch.ones(3)})
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 2. train.nan_policy: rollback


class PoisonG:
    """Writes NaN into G's first weight at step ``at`` (``always``: at every step from then on); records
    G's learning rate after every step (what the next step uses)."""

    def __init__(self, at: int, always: bool = False) -> None:
        self.at, self.always, self.fired = at, always, False
        self.lrs: dict[int, float] = {}

    def on_step_end(self, trainer: Any, out: Any) -> None:
        self.lrs[trainer.step_num] = trainer.parts.opt_g.param_groups[0]["lr"]
        if (self.always and trainer.step_num >= self.at) or (trainer.step_num == self.at and not self.fired):
            self.fired = True
            with torch.no_grad():
                next(trainer.G.parameters()).fill_(float("nan"))


def toy_config(steps: int = 60, *extra: str) -> Any:
    overrides = ["model.generator.hidden=[32,32]", "model.discriminator.hidden=[32,32]", "train.batch_size=64",
                 "train.eval_samples=500", "train.sample_every=0", "train.tensorboard=false", "train.progress=false",
                 f"train.steps={steps}", "train.checkpoint_every=10", "train.log_every=5", "train.eval_every=0",
                 "health.min_modes_fraction=0", *extra]
    return load_config("ring2d", overrides)


@pytest.mark.parametrize("at", [25, 20], ids=["caught-by-health", "caught-by-checkpoint"])
def test_rollback_recovers_from_a_nan_with_lower_learning_rates(tmp_path: Path, at: int) -> None:
    # at 25: the loss is NaN from step 26, seen at the logged step 30; at 20: the checkpoint of step 20
    # finds NaN weights and refuses to save them. Either way the run goes back to the last good checkpoint.
    cfg = toy_config(60, "train.nan_policy=rollback")
    base = cfg.optim_g.lr
    poison = PoisonG(at)
    result = train(cfg, tmp_path / "run", callbacks=[poison])
    s = result.summary
    assert s["status"] == "ok" and s["steps"] == 60 and s["nan_rollbacks"] == 1
    to = 20 if at == 25 else 10
    rolled = [w for w in s["warnings"] if w["kind"] == "nan_rollback"]
    assert len(rolled) == 1 and rolled[0]["to_step"] == to
    # The checkpoint's lr (linear decay: base * (1 - step / 60)), halved.
    assert rolled[0]["lr"]["g"] == pytest.approx(0.5 * base * (1 - to / 60))
    assert f"to the checkpoint of step {to}" in rolled[0]["message"] and "x0.5" in rolled[0]["message"]
    assert rolled[0]["step"] == (30 if at == 25 else 20) and "non-finite values" in rolled[0]["message"]
    if at == 25:  # Health's own warning says what comes next
        assert any(w["kind"] == "nan" and "rolling back" in w["message"] for w in s["warnings"])
    logged = [r for r in log_records(tmp_path / "run") if r.get("warning") == "nan_rollback"]
    assert logged and logged[0]["to_step"] == to and logged[0]["lr"] == rolled[0]["lr"]
    # The schedule does not undo it: after the rollback every step runs at half the decayed lr.
    for step in (to + 1, 40, 59):
        assert poison.lrs[step] == pytest.approx(0.5 * base * (1 - step / 60)), step
    state = load_state(tmp_path / "run" / CKPT)
    assert state["step"] == 60 and state["callbacks"]["NanRollback"] == {"rollbacks": 1}
    assert state["callbacks"]["LRDecay"] == {"scale": 0.5}  # a resumed run keeps the lower rate
    assert torch.isfinite(result.artifact.sample(100)).all()


def test_stop_policy_stops_as_before(tmp_path: Path) -> None:
    cfg = toy_config(60)
    assert cfg.train.nan_policy == "stop"
    with pytest.raises(TrainingDiverged, match="non-finite values at step 30"):
        train(cfg, tmp_path / "run", callbacks=[PoisonG(25)])
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["steps"] == 30 and "nan_rollbacks" not in s
    assert [w["kind"] for w in s["warnings"]] == ["nan"] and "stopping" in s["warnings"][0]["message"]
    assert load_state(tmp_path / "run" / CKPT)["step"] == 20


def test_rollbacks_stop_after_nan_max_rollbacks(tmp_path: Path) -> None:
    cfg = toy_config(60, "train.nan_policy=rollback", "train.nan_max_rollbacks=2", "train.nan_lr_factor=0.25")
    with pytest.raises(TrainingDiverged, match=r"not rolled back again after 2 rollbacks \(train.nan_max_rollbacks\)"):
        train(cfg, tmp_path / "run", callbacks=[PoisonG(25, always=True)])
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["nan_rollbacks"] == 2
    lrs = [w["lr"]["d"] for w in s["warnings"] if w["kind"] == "nan_rollback"]
    base = cfg.optim_d.lr * (1 - 20 / 60)
    assert lrs == pytest.approx([0.25 * base, 0.0625 * base])  # each rollback lowers it again


def test_rollback_without_a_checkpoint_stops_and_says_why(tmp_path: Path) -> None:
    cfg = toy_config(60, "train.nan_policy=rollback")
    with pytest.raises(TrainingDiverged, match=r"cannot roll back: no checkpoint written yet"):
        train(cfg, tmp_path / "run", callbacks=[PoisonG(3)])
    with pytest.raises(TrainingDiverged, match="cannot roll back: a run without an output folder keeps no checkpoint"):
        train(cfg, None, callbacks=[PoisonG(3)])


def test_nan_settings_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = cli(capsys, "train", "ring2d", "--out", str(tmp_path / "r"), "--set", "train.nan_policy=retry",
                    "--steps", "5", *SMALL)
    assert code == 2 and err.strip() == ("ganforge: error: train.nan_policy: unknown policy 'retry' "
                                         "(choices: stop, rollback)")
    assert not (tmp_path / "r").exists()  # refused before anything is written
    for setting, why in (("train.nan_lr_factor=1.0", "in (0, 1)"), ("train.nan_lr_factor=0", "in (0, 1)"),
                         ("train.nan_max_rollbacks=0", "a positive integer"),
                         ("health.min_modes_fraction=1.5", "in [0, 1]"), ("health.fid_blowup=-1", "a number >= 0")):
        with pytest.raises(ConfigError, match=re.escape(f"{setting.split('=')[0]} must be {why}")):
            load_config("ring2d", [setting])


# --------------------------------------------------------------------------------------------
# 3. A final evaluation far from the data


def test_a_run_far_from_the_data_ends_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 40 steps on the 25-mode grid: G has found about none of the modes (the README's hinge example, shorter).
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "grid2d", "--out", str(run), "--steps", "40", *SMALL)
    assert code == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["modes_captured"] < 0.5 * s["modes_total"]
    assert s["status"] == "warning"
    (final,) = [w for w in s["warnings"] if w["kind"] == "few_modes"]
    assert final["step"] == 40 and f"{s['modes_captured']} of 25 modes captured" in final["message"]
    shown = [line for line in err.splitlines() if line.startswith("ganforge: warning:")]
    assert shown == [f"ganforge: warning: {final['message']}"]
    logged = [r for r in log_records(run) if r.get("warning") == "few_modes"]
    assert logged == [{"step": 40, "warning": "few_modes", "message": final["message"], "final": True}]


def test_a_run_that_found_the_modes_stays_ok(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Three wide 1-D modes are found within 300 steps.
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "ring2d", "--out", str(run), "--steps", "300", *SMALL,
                    "--set", "data.name=mixture1d")
    assert code == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["modes_captured"] == s["modes_total"] == 3
    assert s["status"] == "ok" and s["warnings"] == []
    assert "ganforge: warning:" not in err


def test_final_modes_threshold() -> None:
    cfg = HealthConfig(min_modes_fraction=0.5)
    assert final_warnings({"modes_captured": 4, "modes_total": 8}, cfg) == []  # exactly half is enough
    ((kind, message),) = final_warnings({"modes_captured": 3, "modes_total": 8, "high_quality_fraction": 0.01}, cfg)
    assert kind == "few_modes" and "3 of 8 modes" in message and "1.0% of samples" in message
    assert final_warnings({"modes_captured": 0, "modes_total": 25}, HealthConfig(min_modes_fraction=0)) == []
    assert final_warnings({}, cfg) == []  # nothing measured, nothing said


def test_fid_blowup_against_the_runs_best() -> None:
    cfg = HealthConfig(fid_blowup=2.0)
    history = [(1000, 80.0), (2000, 30.0), (3000, 45.0)]
    assert final_warnings({"fid": 45.0}, cfg, history) == []  # worse than the best, by less than 2x
    history.append((4000, 61.0))
    ((kind, message),) = final_warnings({"fid": 61.0}, cfg, history)
    assert kind == "fid_blowup" and "61.0" in message and "30.0 at step 2000" in message
    assert final_warnings({"fid": 61.0}, HealthConfig(fid_blowup=0), history) == []  # off
    assert final_warnings({"fid": 500.0}, cfg, [(1000, 500.0)]) == []  # one evaluation: it is its own best
    assert [k for k, _ in final_warnings({"fid": math.inf}, cfg, [(1000, 30.0)])] == ["fid_blowup"]
    assert [k for k, _ in final_warnings({"fid": 70.0, "modes_captured": 1, "modes_total": 8}, cfg,
                                         [(1000, 30.0), (2000, 70.0)])] == ["few_modes", "fid_blowup"]


def test_final_checks_read_the_last_image_evaluation_and_set_the_status(capsys: pytest.CaptureFixture) -> None:
    logger = Logger(None, every=1, progress=False)
    health = Health(logger, HealthConfig(), probabilistic=True)
    image_eval = SimpleNamespace(last={"fid": 90.0}, fid_history=[(500, 40.0), (1000, 90.0)])
    checks = FinalChecks(logger, HealthConfig(), health, [SimpleNamespace(last={}), image_eval])
    checks.on_train_end(SimpleNamespace(step_num=1000, stop_reason=None))
    assert [k for k, _ in checks.fired] == ["fid_blowup"] and logger.warnings[0]["step"] == 1000
    assert capsys.readouterr().err.startswith("ganforge: warning: the final FID 90.0")
    assert run_status(None, checks.fired) == "warning"
    assert run_status(None, []) == "ok" and run_status("non-finite values", checks.fired) == "diverged"
