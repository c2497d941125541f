"""The engine's seams: an objective defined outside the package, phases, structured batches, ranks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ganforge
from ganforge import Phase
from ganforge.config import from_dict
from ganforge.training.assemble import assemble
from ganforge.training.trainer import Trainer

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "sample_every": 0, "checkpoint_every": 0}
CENTRES = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])


class MatchingAware:
    """GAN-CLS (Reed et al. 2016) with class labels standing in for captions: D's loss has three
    terms (a real sample with its own condition is real; a real sample with a mismatched condition
    and a fake with its condition are fake), G's has one."""

    probabilistic = True

    def __init__(self, classes: int) -> None:
        self.classes = classes

    def phases(self, train):
        return [Phase("D", "d"), Phase("G", "g", freeze=("d",))]

    def _c(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.classes).float()

    def loss(self, phase, game):
        bce = F.binary_cross_entropy_with_logits
        if phase.name == "D":
            fake, real = game.fake(grad=False), game.real()
            shift = 1 + torch.randint(self.classes - 1, real["y"].shape, generator=game.rng)
            wrong = (real["y"] + shift) % self.classes  # never the sample's own label
            s_real, _ = game.judge(real["x"], self._c(real["y"]))
            s_wrong, _ = game.judge(real["x"], self._c(wrong))
            s_fake, _ = game.judge(fake["x"].detach(), self._c(fake["y"]))
            loss = (bce(s_real, torch.ones_like(s_real))
                    + 0.5 * (bce(s_wrong, torch.zeros_like(s_wrong)) + bce(s_fake, torch.zeros_like(s_fake))))
            return loss, {"d_loss": loss.detach(), "d_real": torch.sigmoid(s_real).mean().detach(),
                          "d_wrong": torch.sigmoid(s_wrong).mean().detach(),
                          "d_fake": torch.sigmoid(s_fake).mean().detach()}
        fake = game.fake()
        s_fake, _ = game.judge(fake["x"], self._c(fake["y"]))
        loss = F.softplus(-s_fake).mean()
        return loss, {"g_loss": loss.detach()}


ganforge.register_objective("test-matching-aware", lambda setup: MatchingAware(setup.cfg.model.classes),
                            help="GAN-CLS's three-term D loss, defined in a test file")


def labelled_clusters(n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    return CENTRES[y] + 0.3 * torch.randn(n, 2, generator=g), y


def test_a_three_term_objective_defined_outside_the_package_trains_through_the_public_api():
    x, y = labelled_clusters()
    gan = ganforge.GAN({"model": {"objective": "test-matching-aware", "conditioning": "cgan", "classes": 3, "z_dim": 2,
                                  "generator": {"hidden": [64, 64]},
                                  "discriminator": {"hidden": [64, 64], "activation": "leaky_relu"}},
                        "optim_g": {"lr": 1e-3, "betas": [0.5, 0.9]}, "optim_d": {"lr": 1e-3, "betas": [0.5, 0.9]},
                        "train": {"steps": 1500, "batch_size": 128, "log_every": 50, **QUIET}})
    gan.fit(ganforge.TensorData(x, y))
    # G is conditional: samples asked for class k land nearest to centre k.
    for k in range(3):
        s = gan.sample(500, seed=k, label=k)
        nearest = torch.cdist(s, CENTRES).argmin(1)
        assert (nearest == k).float().mean() > 0.9, f"class {k}"
    # D is matching-aware: a real sample with a mismatched condition scores lower than with its own.
    d = gan.result.parts.discriminator
    with torch.no_grad():
        own = torch.sigmoid(d(x[:1000], F.one_hot(y[:1000], 3).float())).mean()
        wrong = torch.sigmoid(d(x[:1000], F.one_hot((y[:1000] + 1) % 3, 3).float())).mean()
    assert own - wrong > 0.2
    assert "d_wrong" in gan.summary["final"]


def test_a_second_registration_of_a_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        ganforge.register_objective("test-matching-aware", lambda setup: MatchingAware(3))


def test_the_trainer_has_no_branch_on_the_model_family():
    """trainer.py keeps the loop, optimizers, callbacks and state; what is computed is the objective's."""
    src = (Path(ganforge.__file__).parent / "training" / "trainer.py").read_text()
    names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(ast.parse(src))
             if isinstance(n, (ast.Attribute, ast.Name))}
    strings = {n.value for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for word in ("kind", "family", "loss_cfg", "conditioning", "feature_matching", "began_k", "negative_elbo"):
        assert word not in names, word
    for word in ("energy", "elbo", "moment", "logit", "critic", "acgan", "infogan", "vae", "mmd", "began"):
        assert not any(word in s.lower() for s in strings if len(s) < 30), word


@pytest.mark.parametrize("preset,phases", [
    ("ring2d", [("D", "d", 1, 1), ("G", "g", 1, 1)]),
    ("ring2d-wgan-gp", [("D", "d", 5, 1), ("G", "g", 1, 1)]),
])
def test_phases_of_the_built_in_objectives(preset, phases):
    cfg = ganforge.load_config(preset)
    t = Trainer(assemble(cfg), cfg.train)
    assert [(p.name, p.player, p.repeat, p.interval) for p in t.phases] == phases


def test_lazy_regularization_is_its_own_phase_and_the_vae_has_one_phase():
    cfg = ganforge.load_config("ring2d", ["model.loss.r1=1.0", "model.loss.reg_interval=4"])
    phases = Trainer(assemble(cfg), cfg.train).phases
    assert [(p.name, p.interval) for p in phases] == [("D", 1), ("Dreg4", 4), ("G", 1)]
    cfg = ganforge.load_config("ring2d", ["model.loss.name=mmd"])
    assert [p.name for p in Trainer(assemble(cfg), cfg.train).phases] == ["G"]


def test_integer_tokens_stay_int64_and_batches_are_named_tensors():
    tokens = torch.randint(0, 50, (40, 7))
    data = ganforge.TensorData(tokens, labels=torch.arange(40) % 4)
    b = data.batch(8, torch.Generator().manual_seed(0))
    assert set(b) == {"x", "y"} and b["x"].dtype == torch.int64 and b["y"].dtype == torch.int64
    assert data.spec.dtype == "int64" and data.spec.classes == 4 and data.spec.shape == (7,)


class DataDrawnConditions:
    """A source that supplies the conditions of fakes itself (as CTGAN's training-by-sampling does)."""

    def __init__(self) -> None:
        self.x, self.asked = labelled_clusters(600)[0], 0

    @property
    def spec(self):
        return ganforge.DataSpec((2,), condition_dim=3)

    def batch(self, n, generator=None):
        idx = torch.randint(len(self.x), (n,), generator=generator)
        return {"x": self.x[idx], "c": F.one_hot(idx % 3, 3).float()}

    def fake_conditions(self, n, generator=None):
        self.asked += 1
        return {"c": F.one_hot(torch.full((n,), 2), 3).float()}


def test_fakes_can_take_their_conditions_from_the_data():
    data = DataDrawnConditions()
    cfg = from_dict({"model": {"z_dim": 2}, "train": {"steps": 2, "batch_size": 16, **QUIET}})
    parts = assemble(cfg, data)
    assert parts.prior.dim == 2 + 3  # G's input: noise and the data's condition
    t = Trainer(parts, cfg.train)
    fake = t.game.fake(5)
    assert data.asked == 1 and torch.equal(fake["v"][:, 2:], fake["c"]) and fake["c"][:, 2].eq(1).all()
    t.fit()  # D is built with the condition width and sees "c" beside x in both phases
    assert data.asked == 1 + 2 * 2  # one per fake batch: D's and G's in each of 2 steps


def test_each_rank_draws_its_own_minibatches_and_only_rank_0_writes(tmp_path):
    cfg = ganforge.load_config("ring2d", ["train.steps=3", "train.progress=false", "train.tensorboard=false"])
    a, b = Trainer(assemble(cfg), cfg.train, rank=0), Trainer(assemble(cfg), cfg.train, rank=1)
    assert not torch.equal(a.game.real()["x"], b.game.real()["x"])
    assert torch.equal(Trainer(assemble(cfg), cfg.train, rank=0).game.real()["x"],
                       Trainer(assemble(cfg), cfg.train, rank=0).game.real()["x"])
    from ganforge.training.distributed import World
    from ganforge.training.run import train
    train(cfg, tmp_path / "rank1", world=World(rank=1, size=1))
    assert not (tmp_path / "rank1").exists()
    train(cfg, tmp_path / "rank0", world=World(rank=0, size=1))
    assert (tmp_path / "rank0" / "checkpoints" / "last.safetensors").is_file()
