"""Defects found in review (issue 11), each pinned by a test that failed before its fix.

They use the public training entry points only (``ganforge.GAN`` with user modules, ``Trainer`` and
``Every``), so the same file ran against the code before the fixes and failed there.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ganforge
from ganforge.config import from_dict
from ganforge.training.assemble import assemble
from ganforge.training.callbacks import Every
from ganforge.training.trainer import Trainer

QUIET = {"progress": False, "tensorboard": False, "log_every": 1, "eval_every": 0, "sample_every": 0}


class Best:
    """A stand-in for the image metrics' best-model bookkeeping: a callback function with state."""

    def __init__(self) -> None:
        self.best: dict = {}
        self.calls = 0

    def __call__(self, trainer) -> None:
        self.calls += 1
        if not self.best or trainer.step_num % 3 == 1:  # an arbitrary "improvement" pattern
            self.best = {"metric": "fid", "value": 100.0 / trainer.step_num, "step": trainer.step_num}

    def state_dict(self) -> dict:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict) -> None:
        self.best = dict(state["best"])


def test_state_of_a_function_called_every_n_steps_survives_a_resume():
    """Defect: the image-metrics callback is wrapped in ``Every``, which had no state, so after
    ``--resume`` the best-so-far was forgotten and best.safetensors could be overwritten by a worse model."""
    cfg = from_dict({"data": {"name": "ring2d"}, "train": {"steps": 4, "batch_size": 16, **QUIET}})
    best = Best()
    a = Trainer(assemble(cfg), cfg.train, [Every(1, best)])
    a.fit()
    assert best.best["step"] == 4 and best.calls == 4
    state = a.state_dict()
    fresh = Best()
    b = Trainer(assemble(cfg), cfg.train, [Every(1, fresh)])
    b.load_state_dict(state)
    assert fresh.best == best.best
    b.fit()  # already at its last step: the resumed run must not evaluate (and log) step 4 again
    assert fresh.calls == 0


def _linear_pair(z_dim: int = 2) -> tuple[nn.Module, nn.Module]:
    g = nn.Sequential(nn.Linear(z_dim, 16), nn.ReLU(), nn.Linear(16, 2))
    d = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return g, d


def _first_g_loss(aux_weight: float) -> float:
    """G's loss in the first iteration of an AC-GAN with feature matching; D's learning rate is 0, so
    both runs' D (and every random draw) are identical and only the auxiliary term can differ."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(256, 2) * 0.2 - 2, torch.randn(256, 2) * 0.2 + 2])
    y = torch.cat([torch.zeros(256, dtype=torch.long), torch.ones(256, dtype=torch.long)])
    gan = ganforge.GAN({"model": {"z_dim": 2, "conditioning": "acgan", "classes": 2, "aux_weight": aux_weight,
                                  "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
                        "techniques": {"feature_matching": True}, "optim_d": {"lr": 0.0},
                        "train": {"steps": 1, "batch_size": 64, **QUIET}})
    gan.fit(ganforge.TensorData(x, y) if hasattr(ganforge, "TensorData") else _old_tensor_data(x, y))
    return float(gan.summary["final"]["g_loss"])


def _old_tensor_data(x, y):
    from ganforge.data.tensor import TensorData
    return TensorData(x, y)


def test_feature_matching_keeps_gs_auxiliary_loss():
    """Defect: feature matching combined with AC-GAN or InfoGAN silently dropped G's auxiliary loss."""
    g0, g2, g5 = _first_g_loss(0.0), _first_g_loss(2.0), _first_g_loss(5.0)
    assert g5 - g0 > 0.05  # the cross-entropy of an untrained classifier on 2 classes is about log 2
    assert g5 - g0 == pytest.approx(2.5 * (g2 - g0), rel=1e-4)  # linear in the weight: FM + w * CE


class _Recorder(nn.Module):
    """Wraps a module and records each input (or output) with whether D's weights took gradients."""

    def __init__(self, net: nn.Module, log: list, what: str) -> None:
        super().__init__()
        self.net, self.log, self.what = net, log, what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        self.log.append((self.what, (x if self.what == "D" else out).detach().clone(),
                         any(p.requires_grad for p in self.net.parameters())))
        return out


def test_instance_noise_reaches_d_in_gs_step_too():
    """Defect: instance noise was added to D's inputs in D's step but not when D judged G's samples
    in G's step, so G was trained against a D that never saw clean samples."""
    torch.manual_seed(0)
    log: list = []
    g, d = _linear_pair()
    gan = ganforge.GAN(generator=_Recorder(g, log, "G"), discriminator=_Recorder(d, log, "D"), loss="nonsaturating",
                       z_dim=2, techniques={"instance_noise": 0.5, "instance_noise_anneal_steps": 10_000},
                       train={"steps": 1, "batch_size": 512, **QUIET})
    gan.fit(torch.randn(2048, 2))
    # In G's step D's weights are frozen: the D call whose weights took no gradient judged G's samples.
    (i, d_in), = [(i, x) for i, (who, x, trainable) in enumerate(log) if who == "D" and not trainable]
    g_out = [x for who, x, _ in log[:i] if who == "G"][-1]
    noise = d_in - g_out
    assert noise.std().item() == pytest.approx(0.5, rel=0.1)  # step 0 of the annealing: the full std
    assert abs(noise.mean().item()) < 0.05


def _logged_penalties(reg: dict, steps: int = 7) -> list[dict]:
    torch.manual_seed(0)
    g, d = _linear_pair()
    d = nn.Linear(2, 1)  # a linear critic: ||grad_x D|| = ||w|| everywhere, so the penalty is known
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    records: list[dict] = []

    class Tap:
        def on_step_end(self, trainer, out):
            records.append({k: float(v) for k, v in out.items()})

    gan = ganforge.GAN(generator=g, discriminator=d, loss="wasserstein", z_dim=2,
                       model={"loss": reg}, optim_d={"lr": 0.0},  # D stays fixed
                       train={"steps": steps, "batch_size": 64, **QUIET})
    gan.fit(torch.randn(1024, 2), callbacks=[Tap()])
    return records


@pytest.mark.parametrize("name,key,unlazy", [("gradient_penalty", "GradientPenalty", 10.0 * (5 - 1) ** 2),
                                             ("r1", "R1Penalty", 10.0 / 2 * 25)])
def test_lazy_regularization_is_scaled_by_its_interval_for_every_regularizer(name, key, unlazy):
    """Defect: lazy R1 was scaled by its interval, the gradient penalty was not."""
    records = _logged_penalties({name: 10.0, "reg_interval": 3})
    applied = [(i, r[key]) for i, r in enumerate(records) if key in r]
    assert [i for i, _ in applied] == [0, 3, 6]  # every 3rd iteration
    for _, value in applied:
        assert value == pytest.approx(3 * unlazy, rel=1e-5)
    every = _logged_penalties({name: 10.0, "reg_interval": 1}, steps=2)
    assert [r[key] for r in every] == pytest.approx([unlazy, unlazy], rel=1e-5)
    assert math.isfinite(applied[0][1])
