"""Conditioning (CGAN, projection, AC-GAN, InfoGAN) and the image techniques as wired into the trainer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import from_dict
from ganforge.data.tensor import TensorData
from ganforge.generator import Prior
from ganforge.objectives.auxiliary import ACGANTerm, InfoGANTerm, LabelCondition
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble
from ganforge.training.trainer import Trainer


def tiny(mode: str = "none", **extra) -> dict:
    cfg = {"model": {"z_dim": 8, "conditioning": mode, "classes": 0 if mode == "none" else 10,
                     "generator": {"name": "dcgan", "width": 4}, "discriminator": {"name": "dcgan", "width": 4}},
           "train": {"batch_size": 12, "steps": 2, "progress": False, "seed": 0}}
    for key, value in extra.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return cfg


def labelled_data(n: int = 64) -> TensorData:
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.rand(n, 1, 28, 28, generator=g) * 2 - 1, labels=torch.arange(n) % 10)


def test_prior_vector_layout_and_fixed_labels():
    p = Prior("normal", 5, classes=4, continuous=2)
    v = p.sample(6, torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 3, 0, 1]))
    assert v.shape == (6, 11) and p.dim == 11
    one_hot, cont = p.codes(v)
    assert one_hot.argmax(1).tolist() == [0, 1, 2, 3, 0, 1] and torch.all(one_hot.sum(1) == 1)
    assert cont.shape == (6, 2) and cont.abs().max() <= 1
    # draw() hands the same vector's parts to the objective as named batch entries.
    b = p.draw(6, torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 3, 0, 1]))
    torch.testing.assert_close(b["v"], v)
    assert b["y"].tolist() == [0, 1, 2, 3, 0, 1]
    torch.testing.assert_close(b["codes"], cont)


def test_acgan_losses_equal_hand_computed_cross_entropies():
    head = torch.nn.Linear(3, 4)
    term = ACGANTerm(weight=0.5)
    h_real, h_fake = torch.randn(5, 3), torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 3, 0])
    given = torch.tensor([3, 3, 2, 1, 0])  # the labels G was given
    real, fake = {"y": labels}, {"y": given}
    expect_d = 0.5 * (F.cross_entropy(head(h_real), labels) + F.cross_entropy(head(h_fake), given))
    torch.testing.assert_close(term.d_loss(real, head(h_real), fake, head(h_fake)), expect_d)
    torch.testing.assert_close(term.g_loss(fake, head(h_fake)), 0.5 * F.cross_entropy(head(h_fake), given))
    # AC-GAN's D does not see labels (no condition beside x); CGAN's sees the one-hot label.
    assert assemble(from_dict(tiny("acgan")), data=labelled_data()).objective.condition is None
    cond = assemble(from_dict(tiny("cgan")), data=labelled_data()).objective.condition
    assert isinstance(cond, LabelCondition)
    torch.testing.assert_close(cond({"y": labels}), F.one_hot(labels, 10).float())


def test_infogan_loss_recovers_categorical_and_continuous_codes():
    term = InfoGANTerm(3, 2, weight=1.0)
    y = torch.tensor([0, 1, 2, 0])
    fake = {"y": y, "codes": torch.rand(4, 2) * 2 - 1}
    one_hot = F.one_hot(y, 3).float()
    perfect = torch.cat([100 * one_hot, fake["codes"]], 1)  # Q's output: confident right class, exact codes
    assert float(term.g_loss(fake, perfect)) < 1e-6
    assert float(term.d_loss({}, None, fake, perfect)) < 1e-6
    wrong = torch.cat([100 * one_hot.roll(1, dims=1), fake["codes"] + 1], 1)
    assert float(term.g_loss(fake, wrong)) > 50


@pytest.mark.parametrize("mode", ["cgan", "projection", "acgan", "infogan"])
def test_each_conditioning_mode_trains_and_samples_per_label(mode):
    cfg = from_dict(tiny(mode))
    parts = assemble(cfg, data=labelled_data())
    trainer = Trainer(parts, cfg.train)
    before = {k: v.clone() for k, v in parts.discriminator.state_dict().items()}
    out = trainer.step()
    assert torch.isfinite(out["d_loss"]) and torch.isfinite(out["g_loss"])
    if mode in ("acgan", "infogan"):
        assert "aux_d" in out and hasattr(parts.discriminator, "aux_head")
        # The head is trained with D (its weights are D's) ...
        assert not torch.equal(before["aux_head.weight" if mode == "acgan" else "aux_head.0.weight"],
                               parts.discriminator.state_dict()["aux_head.weight" if mode == "acgan"
                                                                else "aux_head.0.weight"])
    v = parts.prior.sample(3, torch.Generator().manual_seed(0), labels=torch.tensor([7, 7, 7]))
    assert tuple(parts.generator(v).shape) == (3, 1, 28, 28)


def test_label_conditioned_d_sees_the_label():
    cfg = from_dict(tiny("cgan"))
    parts = assemble(cfg, data=labelled_data())
    d, x = parts.discriminator.eval(), torch.zeros(2, 1, 28, 28)
    a = d(x, F.one_hot(torch.tensor([1, 1]), 10).float())
    b = d(x, F.one_hot(torch.tensor([2, 2]), 10).float())
    assert not torch.allclose(a, b)


def test_bad_conditioning_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="needs labelled data"):
        assemble(from_dict(tiny("cgan")), data=torch.rand(32, 1, 28, 28))
    with pytest.raises(ConfigError, match="classes >= 2"):
        assemble(from_dict({**tiny("acgan"), "model": {**tiny("acgan")["model"], "classes": 0}}), data=labelled_data())
    with pytest.raises(ConfigError, match="unknown mode"):
        assemble(from_dict(tiny("acgann")), data=labelled_data())
    with pytest.raises(ConfigError, match="did you mean 'translation'"):
        assemble(from_dict(tiny(techniques__diff_augment="translatoin")), data=labelled_data())


def test_g_step_leaves_d_without_gradients_and_trainable():
    cfg = from_dict(tiny())
    parts = assemble(cfg, data=labelled_data())
    trainer = Trainer(parts, cfg.train)
    (g_phase,) = [p for p in trainer.phases if p.name == "G"]
    parts.opt_d.zero_grad(set_to_none=True)
    trainer.run_phase(g_phase)
    assert all(p.grad is None for p in parts.discriminator.parameters())  # no wasted dW for D
    assert all(p.requires_grad for p in parts.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.generator.parameters())


def test_diff_augment_changes_what_d_sees(monkeypatch):
    import ganforge.objectives.adversarial as tr
    seen = []
    real_fn = tr.diff_augment

    def spy(x, policy, generator=None):
        seen.append(policy)
        return real_fn(x, policy, generator)

    monkeypatch.setattr(tr, "diff_augment", spy)
    cfg = from_dict(tiny(techniques__diff_augment="translation,cutout"))
    trainer = Trainer(assemble(cfg, data=labelled_data()), cfg.train)
    trainer.step()
    assert seen == ["translation,cutout"] * 3  # real and fake for D, fake for G


def test_historical_average_penalizes_both_players_and_resumes():
    cfg = from_dict(tiny(techniques__historical_average=0.1))
    parts = assemble(cfg, data=labelled_data())
    trainer = Trainer(parts, cfg.train)
    for _ in range(3):
        out = trainer.step()
    assert float(out["HistoricalAverage"]) > 0  # by step 3, D has moved away from the mean of its past
    assert parts.objective.g_history is not None and parts.objective.g_history.count == 3
    assert parts.objective.d_history is not None and parts.objective.d_history.count == 3
    state = trainer.state_dict()
    parts2 = assemble(cfg, data=labelled_data())
    t2 = Trainer(parts2, cfg.train)
    t2.load_state_dict(state)
    assert parts2.objective.g_history.count == 3 and parts2.objective.d_history.count == 3


def test_minibatch_discrimination_in_dcgan_d():
    cfg = from_dict(tiny(model__discriminator={"name": "dcgan", "width": 4, "minibatch_discrimination": 8}))
    d = assemble(cfg, data=labelled_data()).discriminator
    assert d.head.in_features == d.feature_dim + 8
    assert d(torch.zeros(5, 1, 28, 28)).shape == (5,)
