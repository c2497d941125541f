"""The stabilization techniques, Algorithm 1's step counts, the noise prior and the optimizers.

Each test checks a technique's effect on tensors, not only that the code runs.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from ganforge.config import Config, NetConfig, OptimConfig, from_dict
from ganforge.data import build_dataset
from ganforge.generator import Prior
from ganforge.nn.mlp import MLPDiscriminator, MLPGenerator
from ganforge.objectives import d_targets, instance_noise_std
from ganforge.registry import ConfigError
from ganforge.training.assemble import assemble, build_optimizer
from ganforge.training.callbacks import EMA
from ganforge.training.trainer import Trainer


def make_cfg(**sections: dict[str, Any]) -> Config:
    """A small, fast config; ``sections`` are merged onto it (e.g. ``techniques={...}``)."""
    base: dict[str, Any] = {
        "model": {"z_dim": 2, "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
        "data": {"name": "ring2d"},
        "train": {"steps": 10, "batch_size": 32, "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        if key == "model":
            base["model"] = {**base["model"], **value}
        elif key == "train":
            base["train"] = {**base["train"], **value}
        else:
            base[key] = value
    return from_dict(base)


class RecordingD(nn.Module):
    """A linear critic that keeps a copy of every input it sees."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, 1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.lin(x).squeeze(1)


class RecordingData:
    """Wraps a data source and keeps every batch it hands out."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.shape = inner.shape
        self.batches: list[torch.Tensor] = []

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.inner.sample(n, generator)
        self.batches.append(x.clone())
        return x


class ConstantData:
    """Always returns the same batch (rows of ``x``)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.shape = tuple(x.shape[1:])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.x[:n].clone()


def feed(trainer: Trainer, real: torch.Tensor, fake: torch.Tensor) -> Any:
    """The trainer's game, made to hand out exactly these real and fake minibatches."""
    game = trainer.game
    game.real = lambda n=None: {"x": real}  # type: ignore[method-assign]
    game.fake = lambda n=None, grad=True: {"x": fake, "v": torch.zeros(len(fake), 2)}  # type: ignore[method-assign]
    return game


# -- label smoothing and label flipping --------------------------------------------------------


def test_one_sided_label_smoothing_targets():
    rt, ft = d_targets(100, smoothing=0.1, flip=0.0, generator=None)
    assert float(torch.as_tensor(rt).max()) == pytest.approx(0.9)
    assert float(torch.as_tensor(rt).min()) == pytest.approx(0.9)
    assert float(torch.as_tensor(ft).abs().max()) == 0.0  # one-sided: fakes stay at 0


def test_label_flipping_rates_and_values():
    n, flip, s = 20000, 0.3, 0.1
    rt, ft = d_targets(n, smoothing=s, flip=flip, generator=torch.Generator().manual_seed(0))
    assert rt.shape == ft.shape == (n,)
    real_flipped = rt == 0.0
    fake_flipped = ft != 0.0
    # every target is either the plain one or the flipped one
    assert torch.all(real_flipped | torch.isclose(rt, torch.tensor(1 - s)))
    assert torch.allclose(ft[fake_flipped], torch.tensor(1 - s))  # flipped fakes get the (smoothed) real label
    assert abs(real_flipped.float().mean().item() - flip) < 0.02
    assert abs(fake_flipped.float().mean().item() - flip) < 0.02
    # reals and fakes are flipped independently
    both = (real_flipped & fake_flipped).float().mean().item()
    assert abs(both - flip * flip) < 0.02


def test_label_smoothing_reaches_d_loss_in_d_update():
    cfg = make_cfg(techniques={"label_smoothing": 0.1})
    d = RecordingD()
    parts = assemble(cfg, discriminator=d)
    trainer = Trainer(parts, cfg.train)
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g) + 1
    with torch.no_grad():
        r = d.lin(real).squeeze(1).double().tolist()
        f = d.lin(fake).squeeze(1).double().tolist()

    def logsig(v: float) -> float:
        return -math.log1p(math.exp(-v))

    expected = (-sum(0.9 * logsig(v) + 0.1 * logsig(-v) for v in r) / len(r)
                - sum(logsig(-v) for v in f) / len(f))
    _, out = parts.objective.d_loss(feed(trainer, real, fake))
    assert float(out["d_loss"]) == pytest.approx(expected, rel=1e-5)


# -- instance noise ------------------------------------------------------------------------------


def test_instance_noise_schedule():
    assert instance_noise_std(0.4, 0, 100) == pytest.approx(0.4)
    assert instance_noise_std(0.4, 50, 100) == pytest.approx(0.2)
    assert instance_noise_std(0.4, 75, 100) == pytest.approx(0.1)
    assert instance_noise_std(0.4, 100, 100) == 0.0
    assert instance_noise_std(0.4, 150, 100) == 0.0
    assert instance_noise_std(0.0, 0, 100) == 0.0


def _noise_run(step: int, anneal: int, train_steps: int = 10) -> tuple[torch.Tensor, torch.Tensor, RecordingD]:
    cfg = make_cfg(techniques={"instance_noise": 0.3, "instance_noise_anneal_steps": anneal},
                   train={"steps": train_steps})
    d = RecordingD()
    parts = assemble(cfg, discriminator=d)
    trainer = Trainer(parts, cfg.train)
    g = torch.Generator().manual_seed(7)
    real, fake = torch.randn(40000, 2, generator=g), torch.randn(40000, 2, generator=g) * 2 + 3
    game = feed(trainer, real, fake)
    game.step = step
    parts.objective.d_loss(game)
    return real, fake, d


def test_instance_noise_perturbs_d_inputs_with_the_scheduled_std():
    real, fake, d = _noise_run(step=0, anneal=100)
    assert len(d.inputs) == 2
    noise_r, noise_f = d.inputs[0] - real, d.inputs[1] - fake
    for noise in (noise_r, noise_f):
        assert noise.std().item() == pytest.approx(0.3, rel=0.03)
        assert abs(noise.mean().item()) < 0.01
    # fresh noise for reals and fakes
    assert not torch.allclose(noise_r, noise_f)

    real, fake, d = _noise_run(step=50, anneal=100)
    assert (d.inputs[0] - real).std().item() == pytest.approx(0.15, rel=0.03)
    assert (d.inputs[1] - fake).std().item() == pytest.approx(0.15, rel=0.03)


@pytest.mark.parametrize("step", [100, 130])
def test_instance_noise_is_zero_after_annealing(step):
    real, fake, d = _noise_run(step=step, anneal=100)
    assert torch.equal(d.inputs[0], real)
    assert torch.equal(d.inputs[1], fake)


def test_instance_noise_anneals_over_the_run_by_default():
    # instance_noise_anneal_steps = 0 means: anneal over train.steps
    real, fake, d = _noise_run(step=5, anneal=0, train_steps=10)
    assert (d.inputs[0] - real).std().item() == pytest.approx(0.15, rel=0.03)
    real, fake, d = _noise_run(step=10, anneal=0, train_steps=10)
    assert torch.equal(d.inputs[0], real)


# -- dropout in D ----------------------------------------------------------------------------------


def test_dropout_in_discriminator():
    torch.manual_seed(0)
    d = MLPDiscriminator(NetConfig(hidden=[64, 64], dropout=0.5), (2,))
    drops = [m for m in d.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == 0.5 for m in drops)
    x = torch.randn(16, 2)
    d.train()
    assert not torch.allclose(d(x), d(x))
    d.eval()
    torch.testing.assert_close(d(x), d(x), rtol=0, atol=0)
    plain = MLPDiscriminator(NetConfig(hidden=[64, 64]), (2,))
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


# -- EMA of G ------------------------------------------------------------------------------------------


def _shift(model: nn.Module, by: float) -> list[torch.Tensor]:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(by)
    return [p.detach().clone() for p in model.parameters()]


def test_ema_update_is_a_moving_average():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ema = EMA(g, decay=0.9, start=0)
    old = [p.detach().clone() for p in ema.model.parameters()]
    new = _shift(g, 1.0)
    ema.update(step=0)
    for e, o, n in zip(ema.model.parameters(), old, new, strict=True):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * n, rtol=0, atol=1e-6)
    # a second update keeps averaging
    old2 = [p.detach().clone() for p in ema.model.parameters()]
    new2 = _shift(g, -2.0)
    ema.update(step=1)
    for e, o, n in zip(ema.model.parameters(), old2, new2, strict=True):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * n, rtol=0, atol=1e-6)
    # the EMA copy is a separate module without gradients
    assert all(not p.requires_grad for p in ema.model.parameters())
    assert all(p.requires_grad for p in g.parameters())


def test_ema_copies_before_start_and_copies_buffers():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    ema = EMA(g, decay=0.9, start=5)
    new = _shift(g, 1.0)
    g(torch.randn(8, 3))  # changes BN running stats
    ema.update(step=2)
    for e, n in zip(ema.model.parameters(), new, strict=True):
        assert torch.equal(e, n)
    for e, b in zip(ema.model.buffers(), g.buffers(), strict=True):
        assert torch.equal(e, b)
    # from the start step on it averages
    old = [p.detach().clone() for p in ema.model.parameters()]
    new = _shift(g, 1.0)
    ema.update(step=5)
    for e, o, n in zip(ema.model.parameters(), old, new, strict=True):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * n, rtol=0, atol=1e-6)


# -- feature matching ----------------------------------------------------------------------------------


def test_feature_matching_loss_by_hand():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(32, 2, generator=g)
    cfg = make_cfg(techniques={"feature_matching": True})
    parts = assemble(cfg, data=ConstantData(x))
    trainer = Trainer(parts, cfg.train)
    fake = torch.randn(32, 2, generator=g) * 0.5 + 1
    loss, _ = parts.objective.g_loss(feed(trainer, x, fake))
    with torch.no_grad():
        f_real = parts.discriminator(x, features=True)[1].double().numpy()
        f_fake = parts.discriminator(fake, features=True)[1].double().numpy()
    diff = f_fake.mean(0) - f_real.mean(0)
    expected = float((diff * diff).sum())
    assert expected > 0
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    # it is not D's adversarial loss
    adversarial = parts.objective.criterion.g_loss(parts.discriminator(fake))
    assert float(loss.detach()) != pytest.approx(float(adversarial.detach()))


def test_feature_matching_gradient_reaches_g():
    cfg = make_cfg(techniques={"feature_matching": True})
    x = torch.randn(32, 2)
    parts = assemble(cfg, data=ConstantData(x))
    trainer = Trainer(parts, cfg.train)
    z = parts.prior.sample(32, torch.Generator().manual_seed(0))
    parts.objective.g_loss(feed(trainer, x, parts.generator(z)))[0].backward()
    grads = [p.grad for p in parts.generator.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


class ConstantG(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value
        self.offset = nn.Parameter(torch.zeros(value.shape[-1]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return (self.value + self.offset).expand(len(z), -1)


def test_feature_matching_is_zero_when_g_outputs_the_data():
    value = torch.tensor([[0.3, -0.7]])
    cfg = make_cfg(techniques={"feature_matching": True})
    g = ConstantG(value)
    parts = assemble(cfg, data=ConstantData(value.expand(32, -1)), generator=g)
    trainer = Trainer(parts, cfg.train)
    z = parts.prior.sample(32)
    real = value.expand(32, -1)
    assert float(parts.objective.g_loss(feed(trainer, real, g(z)))[0].detach()) == 0.0
    with torch.no_grad():
        g.offset.fill_(0.5)
    assert float(parts.objective.g_loss(feed(trainer, real, g(z)))[0].detach()) > 0.0


# -- Algorithm 1: k D steps and g G steps per iteration ----------------------------------------------


def _counting_trainer(**train: Any) -> tuple[Trainer, dict[str, int], RecordingData, list[torch.Tensor]]:
    cfg = make_cfg(train=train)
    data = RecordingData(build_dataset("ring2d", {}))
    parts = assemble(cfg, data=data)
    counts = {"d": 0, "g": 0}
    parts.opt_d.register_step_post_hook(lambda *a: counts.__setitem__("d", counts["d"] + 1))
    parts.opt_g.register_step_post_hook(lambda *a: counts.__setitem__("g", counts["g"] + 1))
    noises: list[torch.Tensor] = []
    draw = parts.prior.draw

    def recording_draw(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        batch = draw(*args, **kwargs)
        noises.append(batch["v"].clone())
        return batch

    parts.prior.draw = recording_draw  # type: ignore[method-assign]
    return Trainer(parts, cfg.train), counts, data, noises


def test_k_d_steps_and_g_steps_per_iteration():
    trainer, counts, data, noises = _counting_trainer(d_steps=3, g_steps=2)
    out = trainer.step()
    assert counts == {"d": 3, "g": 2}
    assert trainer.updates == {"D": 3, "G": 2} and trainer.step_num == 1
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(out)
    # each D step sees a fresh minibatch of data, and every update fresh noise
    assert len(data.batches) == 3
    for a, b in itertools.combinations(data.batches, 2):
        assert not torch.equal(a, b)
    assert len(noises) == 5
    for a, b in itertools.combinations(noises, 2):
        assert not torch.equal(a, b)
    trainer.step()
    assert counts == {"d": 6, "g": 4}
    assert len(data.batches) == 6


def test_reusing_d_fakes_for_g_when_fresh_noise_is_off():
    trainer, counts, data, noises = _counting_trainer(d_steps=2, g_steps=1, fresh_g_noise=False)
    trainer.step()
    assert counts == {"d": 2, "g": 1}
    assert len(noises) == 2  # G's update reused the last D step's fakes


# -- the noise prior ------------------------------------------------------------------------------------------


def test_uniform_prior():
    z = Prior("uniform", 3).sample(100000, torch.Generator().manual_seed(0))
    assert z.shape == (100000, 3)
    assert float(z.min()) >= -1.0 and float(z.max()) <= 1.0
    assert float(z.min()) < -0.99 and float(z.max()) > 0.99
    assert z.mean(0).abs().max().item() < 0.01
    assert z.std(0).sub(1 / math.sqrt(3)).abs().max().item() < 0.01  # uniform on [-1, 1]


def test_normal_prior():
    z = Prior("normal", 4).sample(100000, torch.Generator().manual_seed(0))
    assert z.shape == (100000, 4)
    assert z.mean(0).abs().max().item() < 0.02
    assert z.std(0).sub(1.0).abs().max().item() < 0.02
    assert float(z.abs().max()) > 1.0  # not bounded like the uniform prior


def test_unknown_prior_raises_config_error():
    with pytest.raises(ConfigError, match="gaussian"):
        Prior("gaussian", 2)
    with pytest.raises(ConfigError):
        assemble(make_cfg(model={"noise": "cauchy"}))


def test_assemble_uses_the_configured_prior():
    parts = assemble(make_cfg(model={"noise": "uniform", "z_dim": 5}))
    assert parts.prior.kind == "uniform" and parts.prior.dim == 5
    z = parts.prior.sample(1000)
    assert z.shape == (1000, 5) and float(z.abs().max()) <= 1.0


# -- optimizers ------------------------------------------------------------------------------------------------


def _params() -> list[nn.Parameter]:
    return list(nn.Linear(2, 2).parameters())


def test_sgd_with_momentum():
    opt = build_optimizer(_params(), OptimConfig(name="sgd", lr=0.01, momentum=0.9), "optim_g")
    assert type(opt) is torch.optim.SGD
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.01


def test_adam_with_betas():
    opt = build_optimizer(_params(), OptimConfig(name="adam", lr=3e-4, betas=[0.0, 0.9]), "optim_g")
    assert type(opt) is torch.optim.Adam
    assert tuple(opt.param_groups[0]["betas"]) == (0.0, 0.9) and opt.param_groups[0]["lr"] == 3e-4


def test_rmsprop():
    opt = build_optimizer(_params(), OptimConfig(name="rmsprop", lr=5e-5, alpha=0.9), "optim_d")
    assert type(opt) is torch.optim.RMSprop
    assert opt.param_groups[0]["alpha"] == 0.9 and opt.param_groups[0]["lr"] == 5e-5


def test_unknown_optimizer_raises_config_error():
    with pytest.raises(ConfigError, match="optim_d"):
        build_optimizer(_params(), OptimConfig(name="adagrad"), "optim_d")


def test_separate_learning_rates_for_g_and_d():
    cfg = make_cfg(optim_g={"name": "adam", "lr": 1e-4}, optim_d={"name": "sgd", "lr": 4e-4, "momentum": 0.5})
    parts = assemble(cfg)
    assert type(parts.opt_g) is torch.optim.Adam and type(parts.opt_d) is torch.optim.SGD
    assert parts.opt_g.param_groups[0]["lr"] == 1e-4
    assert parts.opt_d.param_groups[0]["lr"] == 4e-4
    assert parts.opt_d.param_groups[0]["momentum"] == 0.5
    g_ids = {id(p) for p in parts.generator.parameters()}
    d_ids = {id(p) for p in parts.discriminator.parameters()}
    assert {id(p) for p in parts.opt_g.param_groups[0]["params"]} == g_ids
    assert {id(p) for p in parts.opt_d.param_groups[0]["params"]} == d_ids
    assert isinstance(parts.generator, MLPGenerator) and isinstance(parts.discriminator, MLPDiscriminator)
