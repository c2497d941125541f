"""Defects found in the review of issue 24, each pinned by a test that failed before its fix.

- an interrupt names a way to continue that works for the front end that started the run (Python
  API here; the command lines in tests/integration/test_kill.py);
- a GPU run's noise generator is part of the checkpoint (tested on the CPU with a generator object
  of its own, as a GPU run has; tests/integration/test_cuda.py runs it on CUDA when there is one);
- warnings survive a resume, and one that stands does not fire again after it.
"""
from __future__ import annotations

import copy
import json
import os
import signal

import pandas as pd
import pytest
import torch

import ganforge
from ganforge.config import from_dict
from ganforge.training.assemble import assemble
from ganforge.training.callbacks import Interrupted
from ganforge.training.checkpoint import load_state, save_state
from ganforge.training.run import train
from ganforge.training.trainer import Trainer

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "sample_every": 0}


def _cfg(seed: int = 0, **train: object) -> ganforge.Config:
    return from_dict({
        "model": {"generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
        "train": {"steps": 10, "batch_size": 32, "seed": seed, **QUIET, **train},
    })


class SignalAt:
    """Sends ``sig`` to this process at the end of step ``step`` (as Ctrl-C would, mid-run)."""

    def __init__(self, step: int, sig: int = signal.SIGINT) -> None:
        self.step, self.sig = step, sig

    def on_step_end(self, trainer, out) -> None:
        if trainer.step_num == self.step:
            os.kill(os.getpid(), self.sig)


# -- an interrupt says how to continue, and that way works ------------------------------------------

def test_an_interrupted_python_fit_names_a_call_that_continues_it(tmp_path):
    data = torch.randn(256, 2)
    out = tmp_path / "run"
    kwargs = dict(loss="nonsaturating", z_dim=2, train={"steps": 12, "batch_size": 32, "log_every": 1, **QUIET})
    with pytest.raises(Interrupted) as caught:
        ganforge.GAN("ring2d", **kwargs).fit(data, out=out, callbacks=[SignalAt(4)])
    e = caught.value
    # A tensor is not in the run's config: `ganforge train --resume` would train on the preset's data.
    assert "ganforge train --resume" not in str(e)
    assert f"out={str(out)!r}, resume=True" in str(e) and e.step == 4
    gan = ganforge.GAN("ring2d", **kwargs).fit(data, out=out, resume=True)
    assert gan.summary["steps"] == 12
    assert load_state(out / "checkpoints" / "last.safetensors")["step"] == 12


def test_an_interrupted_run_of_a_config_names_the_command_line(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as caught:
        train(_cfg(log_every=1), out, callbacks=[SignalAt(3, signal.SIGTERM)])
    assert str(caught.value).endswith(f"continue with: ganforge train --resume {out}")
    assert caught.value.signal_name == "SIGTERM"


def test_an_interrupted_table_fit_names_a_call_that_continues_it(tmp_path):
    df = pd.DataFrame({"x": [0.1, 0.5, 0.9, 1.3] * 25, "kind": ["a", "b", "a", "c"] * 25})
    out = tmp_path / "table"

    class Interrupting(ganforge.TabularGAN):
        """A TabularGAN whose fit gets a SIGINT at step 3 (the public fit takes no callbacks)."""

    from ganforge.tabular import model as tabular_model

    real_train = tabular_model.train

    def train_with_signal(*args, **kw):
        kw["callbacks"] = [*kw.get("callbacks", []), SignalAt(3)]
        return real_train(*args, **kw)

    tabular_model.train = train_with_signal
    try:
        with pytest.raises(Interrupted) as caught:
            Interrupting(epochs=20, batch_size=20, pac=5, progress=False).fit(df, out=out)
    finally:
        tabular_model.train = real_train
    assert "ganforge train" not in str(caught.value)  # the command line cannot rebuild a table run
    assert f"fit(<the same DataFrame>, out={str(out)!r}, resume=True)" in str(caught.value)
    model = ganforge.TabularGAN(epochs=20, batch_size=20, pac=5, progress=False).fit(df, out=out, resume=True)
    assert model.summary["steps"] == 20 * 5
    assert set(model.sample(50)["kind"]) <= {"a", "b", "c"}


# -- the noise generator of a GPU run is checkpointed ------------------------------------------------

def _trainer_with_noise_generator(seed: int) -> Trainer:
    cfg = _cfg(seed)
    torch.manual_seed(seed)
    t = Trainer(assemble(cfg), cfg.train)
    # As on a GPU: G's noise comes from a generator of its own, seeded from the CPU stream.
    t.game.noise_device = torch.device("cpu")
    return t


def test_the_noise_generator_is_part_of_the_checkpoint(tmp_path):
    a = _trainer_with_noise_generator(0)
    for _ in range(3):
        a.step()
    state = a.state_dict()
    assert state["shard_noise_rngs"][0] is not None, "the noise generator's state is not saved"
    save_state(tmp_path / "last.safetensors", state)
    b = _trainer_with_noise_generator(1)
    b.load_state_dict(load_state(tmp_path / "last.safetensors"))
    for _ in range(3):
        out_a, out_b = a.step(), b.step()
        assert float(out_a["g_loss"]) == float(out_b["g_loss"])
    for pa, pb in zip(a.G.parameters(), b.G.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # The streams go on together: the same noise and the same real batch next.
    assert torch.equal(a.game.noise(8)["v"], b.game.noise(8)["v"])
    assert torch.equal(a.game.real(8)["x"], b.game.real(8)["x"])


def test_a_restored_state_without_a_noise_generator_reseeds_it_as_the_saved_run_would(tmp_path):
    # The precision trial (train.autocast: auto) saves the state, runs steps and restores it: a noise
    # generator made during the trial must not survive into the real run.
    a, b = _trainer_with_noise_generator(0), _trainer_with_noise_generator(0)
    saved = copy.deepcopy(b.state_dict())  # as the trial does: a state_dict's weights alias the live ones
    assert saved["shard_noise_rngs"] == [None]
    b.step()
    b.load_state_dict(saved)
    for _ in range(2):
        assert float(a.step()["g_loss"]) == float(b.step()["g_loss"])


# -- warnings survive a resume -------------------------------------------------------------------------

def test_warnings_of_every_segment_are_in_the_summary_and_fire_once(tmp_path):
    # A gradient-norm threshold every step exceeds: the warning fires at the first logged step and stands.
    cfg = _cfg(log_every=2, checkpoint_every=4)
    cfg.health.grad_explode = 1e-9
    whole = train(cfg, tmp_path / "whole").summary["warnings"]
    # (and the final check finds few modes after 10 steps)
    assert [w["kind"] for w in whole] == ["exploding_g", "exploding_d", "few_modes"] and whole[0]["step"] == 2
    cfg.train.steps = 5
    train(cfg, tmp_path / "parts")
    cfg.train.steps = 10
    resumed = train(cfg, tmp_path / "parts", resume=True).summary["warnings"]
    assert resumed == whole
    assert json.loads((tmp_path / "parts" / "summary.json").read_text())["warnings"] == whole
