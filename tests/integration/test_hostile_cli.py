"""Hostile files on the command line: `sample`, `eval` and `train --resume` print one line and exit 2.

A run folder whose generator or checkpoint was replaced by a pickle, random bytes, an empty file,
a truncated or foreign safetensors file, or whose config is damaged; a resume with another model;
a run trained from Python with the user's own modules. Each is exit code 2 with exactly one line on
stderr naming the file, no traceback, nothing unpickled, and no output file written.
"""
from __future__ import annotations

import hashlib
import pickle
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from procs import assert_user_error, ganforge, small
from safetensors.torch import save_file
from torch import nn

from ganforge.cli import main
from ganforge.training.run import load_run_config, train

TINY = [*small(200), "--set", "train.tensorboard=false", "--set", "train.checkpoint_every=2",
        "--set", "train.sample_every=0", "--set", "train.eval_every=0"]


class Evil:
    """Unpickling this creates ``marker``: proof that something unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def hostile(marker: Path) -> dict[str, bytes]:
    """The contents that replace a run's generator or checkpoint file."""
    buf = Path(marker.parent / "torch.tmp")
    torch.save({"w": torch.zeros(2), "evil": Evil(marker)}, buf)
    data = buf.read_bytes()
    buf.unlink()
    return {
        "pickle": pickle.dumps(Evil(marker)),
        "torch.save": data,
        "random": np.random.default_rng(0).bytes(2048),
        "empty": b"",
        "huge header": struct.pack("<Q", 2**40) + b'{"x":',
    }


def foreign_safetensors(path: Path) -> None:
    save_file({"w": torch.zeros(3)}, str(path))


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> subprocess.CompletedProcess:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's errors
        code = int(e.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished ring2d run (4 steps)."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    assert main(["train", "ring2d", "--out", str(out), "--steps", "4", *TINY]) == 0
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_sample_and_eval_of_a_hostile_generator_file(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    contents = hostile(marker)
    for name, data in [*contents.items(), ("foreign", None)]:
        folder = copy_run(run, tmp_path / name.replace(" ", "_"))
        gen = folder / "generator.safetensors"
        if data is None:
            foreign_safetensors(gen)
        else:
            gen.write_bytes(data)
        before = fingerprint(folder)
        out = tmp_path / f"{folder.name}.npz"
        assert_user_error(run_main(capsys, "sample", str(folder), "--n", "5", "--out", str(out)), str(gen))
        assert not out.exists(), "sample wrote an output for a bad generator"
        assert_user_error(run_main(capsys, "eval", str(folder), "--n", "50"), str(gen))
        assert fingerprint(folder) == before, "eval wrote into the run folder (eval.json)"
    assert not marker.exists(), "a generator file was unpickled"


def test_resume_from_a_hostile_checkpoint(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    for name, data in [*hostile(marker).items(), ("foreign", None), ("cut", b"")]:
        folder = copy_run(run, tmp_path / name.replace(" ", "_"))
        ckpt = folder / "checkpoints" / "last.safetensors"
        if name == "cut":
            ckpt.write_bytes(ckpt.read_bytes()[:-64])  # the tensor data cut short
        elif data is None:
            foreign_safetensors(ckpt)
        else:
            ckpt.write_bytes(data)
        before = fingerprint(folder)
        assert_user_error(run_main(capsys, "train", "--resume", str(folder), "--steps", "6"), str(ckpt))
        assert fingerprint(folder) == before, f"{name}: the failed resume changed the run folder"
    assert not marker.exists(), "a checkpoint was unpickled"


def test_resume_with_another_model_is_one_line(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path / "run")
    before = fingerprint(folder)
    line = assert_user_error(run_main(capsys, "train", "--resume", str(folder), "--steps", "6",
                                    "--set", "model.generator.hidden=[16,16]"),
                           str(folder / "checkpoints" / "last.safetensors"), "was written for a different model")
    assert "size mismatch" in line or "shape" in line
    assert fingerprint(folder) == before


def test_a_damaged_run_config_is_one_line(run, tmp_path, capsys):
    for name, text in {"binary": b"\x00\xff\x00\x80garbage", "bad yaml": b"train: [unclosed\n  - x: {",
                       "a list": b"- 1\n- 2\n", "bad value": b"train:\n  steps: many\n"}.items():
        folder = copy_run(run, tmp_path / name.replace(" ", "_"))
        (folder / "config.yaml").write_bytes(text)
        config = str(folder / "config.yaml")
        assert_user_error(run_main(capsys, "train", "--resume", str(folder)), config)
        assert_user_error(run_main(capsys, "eval", str(folder), "--n", "50"), config)
        assert not (folder / "eval.json").exists()


class MyGenerator(nn.Module):
    """A user's own generator: not a network any config names."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 24), nn.ReLU(), nn.Linear(24, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def test_a_run_of_user_defined_modules_resumes_from_python_only(run, tmp_path, capsys):
    out = tmp_path / "custom"
    cfg = load_run_config(run)
    cfg.train.steps = 4
    torch.manual_seed(0)
    train(cfg, out, generator=MyGenerator())
    capsys.readouterr()  # the 4-step run's own final-check warning is not what is tested here
    before = fingerprint(out)
    line = assert_user_error(run_main(capsys, "train", "--resume", str(out), "--steps", "6"),
                           str(out / "checkpoints" / "last.safetensors"), "user-defined generator", "generator=")
    assert "resume=True" in line
    assert fingerprint(out) == before
    assert_user_error(run_main(capsys, "sample", str(out), "--n", "5", "--out", str(tmp_path / "s.npz")),
                    "user-defined generator", "generator=")
    assert not (tmp_path / "s.npz").exists()
    # From Python, with the module given again, the run continues.
    cfg.train.steps = 6
    result = train(cfg, out, resume=True, generator=MyGenerator())
    assert result.trainer.step_num == 6


def test_real_processes_print_one_line_without_a_traceback(run, tmp_path):
    """The same through `python -m ganforge`: what a user sees (two at a time, one per core)."""
    marker = tmp_path / "pwned"
    data = hostile(marker)
    gen_dir = copy_run(run, tmp_path / "gen")
    (gen_dir / "generator.safetensors").write_bytes(data["pickle"])
    ck_dir = copy_run(run, tmp_path / "ck")
    (ck_dir / "checkpoints" / "last.safetensors").write_bytes(data["torch.save"])
    cases = [
        (["sample", str(gen_dir), "--n", "5", "--out", str(tmp_path / "s.npz")], "generator.safetensors"),
        (["train", "--resume", str(ck_dir), "--steps", "6", "--no-progress"], "last.safetensors"),
    ]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda c: ganforge(*c[0], cwd=tmp_path), cases))
    for (_, needle), proc in zip(cases, procs, strict=True):
        assert_user_error(proc, needle, "unpickling can run code")
    assert not (tmp_path / "s.npz").exists() and not marker.exists()
