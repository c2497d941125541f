"""The command-line contract of DESIGN.md, end to end through real processes.

Exit codes (0 done, 2 user error as one line without a traceback, 1 anything else), the files a
run folder holds, `sample` / `eval` on a finished run, and same seed -> same result.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from procs import assert_user_error, ganforge, small
from safetensors.torch import load_file

from ganforge.config import from_dict, load_config, to_dict
from ganforge.training.checkpoint import load_state
from ganforge.training.run import load_run_config

SMALL = small()
STEPS = 200
LOG_KEYS = {"step", "d_loss", "g_loss", "d_real", "d_fake", "grad_norm_g", "grad_norm_d"}
SUMMARY_KEYS = {"modes_captured", "modes_total", "high_quality_fraction", "reverse_kl_modes", "wall_seconds"}
METRICS = ("modes_captured", "modes_total", "high_quality_fraction", "reverse_kl_modes")


def tiny_train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return ganforge("train", "ring2d", "--out", str(out), "--steps", str(STEPS), "--seed", "3", *SMALL,
                    "--set", "techniques.ema=0.0",
                    "--set", "train.checkpoint_every=100", "--set", "train.sample_every=100", *extra)


def folder_fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, Path]:
    """Two tiny runs with the same seed, trained side by side (one per core)."""
    root = tmp_path_factory.mktemp("cli")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(tiny_train, [root / "run", root / "again"])
    for proc in (first, second):
        assert proc.returncode == 0, proc.stderr
    return root / "run", first, root / "again"


@pytest.fixture(scope="module")
def run(run_pair: tuple[Path, subprocess.CompletedProcess, Path]) -> Path:
    return run_pair[0]


# --------------------------------------------------------------------------------------------
# A tiny run and its folder


def test_train_writes_the_run_folder(run: Path) -> None:
    for name in ("config.yaml", "log.jsonl", "checkpoints/last.safetensors", "generator.safetensors",
                 "generator.json", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
        assert (run / name).stat().st_size > 0, name
    pngs = sorted((run / "samples").glob("*.png"))
    assert pngs, "no sample plots"
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # Atomic writes leave no temporary files behind.
    assert not list(run.rglob("*.tmp"))


def test_stdout_last_line_is_json(run_pair: tuple[Path, subprocess.CompletedProcess, Path]) -> None:
    run, proc, _ = run_pair
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert SUMMARY_KEYS <= set(last)
    assert Path(last["out"]).resolve() == run.resolve()
    assert "Traceback" not in proc.stderr


def test_summary_json(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary), set(summary)
    # 200 steps find few of the 8 modes: the final check says so (health.min_modes_fraction, 0.5 by default)
    assert summary["status"] == ("ok" if summary["modes_captured"] >= 4 else "warning")
    assert summary["steps"] == STEPS
    assert summary["modes_total"] == 8
    assert 0 <= summary["modes_captured"] <= 8
    assert 0.0 <= summary["high_quality_fraction"] <= 1.0
    assert summary["reverse_kl_modes"] >= 0.0
    assert summary["wall_seconds"] > 0


def test_config_yaml_is_resolved_and_reloadable(run: Path) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    cfg = load_run_config(run)
    assert to_dict(cfg) == raw  # every field written out, nothing left to defaults
    assert to_dict(load_config(str(run / "config.yaml"))) == raw
    assert to_dict(from_dict(raw)) == raw
    assert cfg.preset == "ring2d"
    assert cfg.train.steps == STEPS and cfg.train.seed == 3 and cfg.train.batch_size == 64
    assert cfg.model.generator.hidden == [32, 32] and cfg.model.discriminator.hidden == [32, 32]


def test_log_jsonl_records(run: Path) -> None:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "d_loss" in r]
    assert train, "no training records"
    for r in train:
        assert LOG_KEYS <= set(r), set(r)
        assert all(isinstance(r[k], (int, float)) for k in LOG_KEYS)
    steps = [r["step"] for r in train]
    assert steps == sorted(steps) and steps[-1] == STEPS
    # D tells real from fake: D(x) above D(G(z)) on average over the logged steps (by 0.068 at
    # fae847c). And the logged means agree with the logged loss: non-saturating d_loss =
    # -E log D(x) - E log(1 - D(G(z))) >= -log d_real - log(1 - d_fake) (Jensen), which fails if
    # d_real and d_fake are swapped, logged as raw logits, or not D's probabilities.
    gaps = [r["d_real"] - r["d_fake"] for r in train]
    assert sum(gaps) / len(gaps) > 0.02, gaps
    for r in train:
        assert r["d_loss"] >= -np.log(r["d_real"]) - np.log1p(-r["d_fake"]) - 1e-5, r


def test_log_jsonl_holds_the_final_evaluation(run: Path) -> None:
    """The evaluation at the end of training is logged, not lost to an already closed log."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/modes_captured" in r]
    assert evals and evals[-1]["step"] == STEPS, "final evaluation missing from log.jsonl"
    summary = json.loads((run / "summary.json").read_text())
    assert evals[-1]["eval/modes_captured"] == summary["modes_captured"]


def test_checkpoint_and_generator_files(run: Path) -> None:
    state = load_state(run / "checkpoints/last.safetensors")
    assert state["step"] == STEPS
    weights = load_file(str(run / "generator.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    for k, w in state["generator"].items():
        assert torch.equal(w, weights[k]), k  # no EMA: the exported G is the trained G
    meta = json.loads((run / "generator.json").read_text())
    assert meta["shape"] == [2] and meta["custom"] is False
    assert meta["model"]["generator"]["hidden"] == [32, 32]


def test_tensorboard_events(run: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (optional dependency)")
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


def test_same_seed_same_result(run_pair: tuple[Path, subprocess.CompletedProcess, Path]) -> None:
    run, _, again = run_pair
    s1, s2 = (json.loads((r / "summary.json").read_text()) for r in (run, again))
    assert {k: s1[k] for k in METRICS} == {k: s2[k] for k in METRICS}
    assert s1["final"] == s2["final"]
    w1, w2 = load_file(str(run / "generator.safetensors")), load_file(str(again / "generator.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k


def test_sample_writes_n_samples(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.npz"
    proc = ganforge("sample", str(run), "--n", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    x = np.load(out)["samples"]
    assert x.shape == (100, 2) and np.isfinite(x).all()
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 100
    # Sampling is deterministic for a given --seed.
    again = tmp_path / "y.npz"
    assert ganforge("sample", str(run), "--n", "100", "--out", str(again)).returncode == 0
    assert np.array_equal(np.load(again)["samples"], x)


def test_eval_writes_eval_json(run: Path) -> None:
    proc = ganforge("eval", str(run), "--n", "500")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    written = json.loads((run / "eval.json").read_text())
    assert printed == written
    assert {"modes_captured", "modes_total", "high_quality_fraction", "reverse_kl_modes"} <= set(written)
    assert written["protocol"]["samples"] == 500


def test_presets_lists_ring2d_and_grid2d() -> None:
    proc = ganforge("presets")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert {"ring2d", "grid2d"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in proc.stdout.strip().splitlines())  # a description each


# --------------------------------------------------------------------------------------------
# User errors: exit code 2, one line, no traceback


def error_folders(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("hello")
    no_checkpoint = tmp_path / "no_checkpoint"  # a run folder killed before its first checkpoint
    no_checkpoint.mkdir()
    (no_checkpoint / "config.yaml").write_text((run / "config.yaml").read_text())
    return not_a_run, no_checkpoint


def test_user_errors_in_real_processes(run: Path, tmp_path: Path) -> None:
    """The contract's user errors, each in its own process (two at a time)."""
    not_a_run, no_checkpoint = error_folders(run, tmp_path)
    cases = {
        "unknown preset": (["train", "ring2e", "--out", str(tmp_path / "a")], ["ring2e", "ring2d"]),
        "unknown key": (["train", "ring2d", "--set", "train.stepz=3", "--out", str(tmp_path / "b")],
                        ["train.stepz", "train.steps"]),
        "wrong type": (["train", "ring2d", "--set", "train.steps=abc", "--out", str(tmp_path / "c")],
                       ["train.steps", "abc"]),
        "eval of a non-run folder": (["eval", str(not_a_run)], [str(not_a_run)]),
        "sample of a non-run folder": (["sample", str(not_a_run), "--n", "10", "--out", str(tmp_path / "s.npz")],
                                       [str(not_a_run)]),
    }
    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(cases, pool.map(lambda c: ganforge(*c[0], cwd=tmp_path), cases.values()), strict=True))
    failures = []
    for name, (_, needles) in cases.items():
        try:
            assert_user_error(procs[name], *needles)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    for name in ("a", "b", "c", "s.npz"):
        assert not (tmp_path / name).exists(), name
    assert sorted(p.name for p in not_a_run.iterdir()) == ["notes.txt"]
    # A run stopped before its first checkpoint is started again from step 0 by --resume (issue 16: the
    # messages used to lead in a circle), with a note saying so.
    again = ganforge("train", "--resume", str(no_checkpoint), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "no checkpoint yet" in again.stderr and "from step 0" in again.stderr
    assert (no_checkpoint / "checkpoints" / "last.safetensors").is_file()


def test_more_user_errors(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """More user errors through ``cli.main`` in this process (the same code path, without the start-up)."""
    monkeypatch.chdir(tmp_path)
    not_a_run, _ = error_folders(run, tmp_path)
    cases = {
        "unknown nested key": (["train", "ring2d", "--set", "model.generator.hiden=[8]"],
                               ["model.generator.hiden", "model.generator.hidden"]),
        "unknown section": (["train", "ring2d", "--set", "optim.lr=0.1"], ["optim.lr"]),
        "override without =": (["train", "ring2d", "--set", "train.steps"], ["key=value"]),
        "float for int": (["train", "ring2d", "--set", "train.steps=1.5"], ["train.steps"]),
        "wrong list type": (["train", "ring2d", "--set", "model.generator.hidden=5"], ["model.generator.hidden"]),
        "wrong bool": (["train", "ring2d", "--set", "train.progress=maybe"], ["train.progress"]),
        "unknown loss": (["train", "ring2d", "--set", "model.loss.name=wgan-xx", "--out", str(tmp_path / "retry")],
                         ["wgan-xx", "lsgan"]),
        "resume of a non-run folder": (["train", "--resume", str(not_a_run)], [str(not_a_run)]),
        "missing config file": (["train", str(tmp_path / "nope.yaml")], ["nope.yaml"]),
        "sample bad suffix": (["sample", str(run), "--n", "10", "--out", str(tmp_path / "s.txt")], ["--out"]),
        "sample n zero": (["sample", str(run), "--n", "0", "--out", str(tmp_path / "s.npz")], ["--n"]),
        "unknown command": (["bogus"], ["bogus"]),
        "train without config": (["train"], ["CONFIG"]),
        "bad option": (["train", "ring2d", "--stepz", "3"], ["--stepz"]),
    }
    from ganforge.cli import main

    failures = []
    for name, (argv, needles) in cases.items():
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's errors
            code = e.code
        captured = capsys.readouterr()
        try:
            assert_user_error(subprocess.CompletedProcess(argv, code, captured.out, captured.err), *needles)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "retry") == ["no_checkpoint", "not_a_run"]
    # A config that failed validation does not block its --out folder for the corrected command.
    assert main(["train", "ring2d", "--out", str(tmp_path / "retry"), "--steps", "2", *SMALL,
                 "--set", "train.tensorboard=false"]) == 0
    assert (tmp_path / "retry" / "summary.json").is_file()


def test_out_refuses_a_folder_that_holds_a_run(run: Path) -> None:
    before = folder_fingerprint(run)
    proc = tiny_train(run)
    assert_user_error(proc, str(run), "--resume")
    assert folder_fingerprint(run) == before, "the existing run was modified"


def test_out_refuses_a_started_run_without_checkpoint(run: Path, tmp_path: Path) -> None:
    """A run killed before its first checkpoint is still a run: a new one must not append to its log."""
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text((run / "config.yaml").read_text())
    (started / "log.jsonl").write_text('{"step": 10, "d_loss": 1.0}\n')
    before = folder_fingerprint(started)
    assert_user_error(tiny_train(started), str(started))
    assert folder_fingerprint(started) == before
