"""Text GANs: the sequence networks, SeqGAN's policy gradient and rollouts, the Gumbel-softmax path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ganforge.config import from_dict, load_config
from ganforge.data.text import TextData
from ganforge.data.vocab import Vocabulary
from ganforge.generator import Prior
from ganforge.nn import build_discriminator
from ganforge.nn.sequence import (
    SEQGAN_FILTERS,
    SEQGAN_WINDOWS,
    SequenceGenerator,
    TextCNN,
    TextRNN,
    alive_mask,
    oracle_lstm,
    sample_categorical,
)
from ganforge.objectives.base import Phase
from ganforge.objectives.losses import LOSSES
from ganforge.objectives.text import Rollout, TextObjective, tau_at
from ganforge.registry import ConfigError
from ganforge.spec import DataSpec
from ganforge.training.game import Game

EOS, PAD = 1, 0


def tiny_g(vocab: int = 12, length: int = 6, eos: int | None = EOS, seed: int = 0) -> SequenceGenerator:
    torch.manual_seed(seed)
    return SequenceGenerator(vocab, length, emb=8, hidden=16, eos=eos, pad=PAD if eos is not None else None)


def test_alive_mask_counts_up_to_the_first_end_token():
    t = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0]])
    assert alive_mask(t, 1).int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert alive_mask(t, None).all()


def test_samples_end_with_padding_and_masked_log_probs_match_a_manual_computation():
    G = tiny_g()
    x = G.generate(200)["x"]
    for row in x.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
    lp = G.log_probs(x)
    logits = G.logits(x)
    manual = torch.log_softmax(logits, -1).gather(2, x[..., None]).squeeze(2) * G.mask(x)
    assert torch.allclose(lp, manual, atol=1e-5)
    assert math.isclose(float(G.nll(x).detach()), float(-manual.sum().detach() / G.mask(x).sum()), rel_tol=1e-5)
    # Temperature divides the logits.
    manual_t = torch.log_softmax(logits / 0.5, -1).gather(2, x[..., None]).squeeze(2) * G.mask(x)
    assert torch.allclose(G.log_probs(x, temperature=0.5), manual_t, atol=1e-5)


def test_inverse_cdf_sampling_follows_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0]]).repeat(40_000, 1)
    counts = torch.bincount(sample_categorical(logits), minlength=4).float() / 40_000
    assert torch.allclose(counts, torch.softmax(logits[0], 0), atol=0.01)


def test_gumbel_softmax_path_is_differentiable_end_to_end():
    G = tiny_g()
    D = TextCNN(12, 6, emb=8, scale=0.1)
    out = G.generate(16, tau=0.5)
    soft, hard = out["soft"], out["x"]
    assert soft.shape == (16, 6, 12) and torch.allclose(soft.sum(-1), torch.ones(16, 6), atol=1e-5)
    alive = alive_mask(hard, EOS)
    assert (soft.argmax(-1)[alive] == hard[alive]).all()  # the relaxation of the very token written
    assert (soft[~alive] == nn.functional.one_hot(torch.tensor(PAD), 12).float()).all()  # ended: exact pads
    D(soft).sum().backward()
    for name, p in G.named_parameters():
        if name.startswith("init"):
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # D reads ids and one-hots alike.
    D.eval()
    one_hot = nn.functional.one_hot(hard, 12).float()
    assert torch.allclose(D(hard), D(one_hot), atol=1e-5)
    R = TextRNN(12, 8, 8).eval()
    assert torch.allclose(R(hard), R(one_hot), atol=1e-5)


def _threes(s: torch.Tensor) -> torch.Tensor:
    return (s == 3).float().mean(1)


def test_rollout_completions_keep_exactly_the_prefix_and_reward_its_last_token():
    G = tiny_g()
    m = 4
    roll = Rollout(G, rollouts=m, update_rate=0.8)
    x = torch.tensor([[3, 4, 1, 0, 0, 0], [3, 4, 5, 6, 7, 8]])
    seen: list[torch.Tensor] = []

    def score(s: torch.Tensor) -> torch.Tensor:
        seen.append(s.clone())
        return _threes(s)

    torch.manual_seed(0)
    r = roll.rewards(x, torch.zeros(2, 0), score)
    assert r.shape == (2, 6)
    full = _threes(x)
    assert torch.equal(seen[0], x) and torch.allclose(r[:, -1], full)  # the last token: the sentence's score
    assert torch.allclose(r[0, 2:], full[0].expand(4))  # the first sentence ended at position 2: complete
    # One call per prefix length t = 1..5 (one chunk: 2 rows x 4 rollouts), for the sentences without an
    # end token before t: sentence 0 ends at position 2, so from t = 3 only sentence 1 is completed.
    expected = [(1, [0, 1]), (2, [0, 1]), (3, [1]), (4, [1]), (5, [1])]
    assert len(seen) == 1 + len(expected)
    for (t, rows), s in zip(expected, seen[1:], strict=True):
        kept = x[rows].repeat_interleave(m, 0)
        assert s.shape == (len(rows) * m, 6), t
        assert torch.equal(s[:, :t], kept[:, :t]), t  # exactly the prefix x[:, :t], every completion...
        assert (s[:, t] != kept[:, t]).any(), t  # ...and token t sampled, not copied from x (one kept too many)
        # Token t-1's reward is the mean score of the m completions of x[:, :t].
        assert torch.allclose(r[rows, t - 1], _threes(s).view(len(rows), m).mean(1)), t


def test_rollout_network_trails_the_generator():
    G = tiny_g()
    roll = Rollout(G, 2, 0.8)
    before = [p.clone() for p in roll.net.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    roll.update(G)
    for b, r in zip(before, roll.net.parameters(), strict=True):
        assert torch.allclose(r, b + 0.2, atol=1e-6)


class Favour(nn.Module):
    """A fixed judge: the more of ``token`` a sentence holds, the more real it looks."""

    def __init__(self, token: int) -> None:
        super().__init__()
        self.token = token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x if not x.is_floating_point() else x.argmax(-1)
        return 6.0 * ((ids == self.token).float().mean(1) - 0.5)


def _game(G: nn.Module, D: nn.Module, vocab: int = 8, length: int = 5) -> Game:
    data = TextData.from_tokens(torch.randint(vocab, (32, length)), Vocabulary.numbered(vocab))
    return Game(G, D, Prior("normal", 0), data, torch.Generator().manual_seed(0), torch.device("cpu"), 32, 100)


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_policy_gradient_raises_the_probability_of_a_rewarded_token(baseline):
    G = tiny_g(vocab=8, length=5, eos=None)
    game = _game(G, Favour(token=2))
    obj = TextObjective("seqgan", LOSSES.get("nonsaturating"), rollout=Rollout(G, 4, 0.5), baseline=baseline,
                        tau_span=100)
    opt = torch.optim.Adam(G.parameters(), lr=0.02)
    torch.manual_seed(1)

    def share() -> float:
        with torch.no_grad():
            return float((G.generate(2000)["x"] == 2).float().mean())

    start = share()
    for _ in range(40):
        loss, logs = obj.loss(Phase("G", "g"), game)
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.after_update(Phase("G", "g"), game, logs)
    assert start < 0.25 and share() > start + 0.3


def test_gumbel_objective_moves_the_generator_towards_what_d_favours():
    G = tiny_g(vocab=8, length=5, eos=None)
    game = _game(G, Favour(token=2))
    obj = TextObjective("gumbel", LOSSES.get("wasserstein"), tau_start=1.0, tau_end=0.5, tau_span=60)
    # A differentiable judge: the mean relaxed mass on token 2.
    game.D = nn.Module()
    game.D.forward = lambda x: 6.0 * (x[..., 2].mean(1) if x.is_floating_point() else (x == 2).float().mean(1))
    opt = torch.optim.Adam(G.parameters(), lr=0.02)
    torch.manual_seed(2)
    start = float((G.generate(2000)["x"] == 2).float().mean())
    for step in range(40):
        game.step = step
        loss, logs = obj.loss(Phase("G", "g"), game)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "tau" in logs
    assert float((G.generate(2000)["x"] == 2).float().mean()) > start + 0.3


def test_phases_pretrain_then_play():
    obj = TextObjective("seqgan", LOSSES.get("nonsaturating"), pretrain_steps=10, d_pretrain_steps=5, d_steps=3)
    due = {p.name: [s for s in range(30) if p.due(s)] for p in obj.phases()}
    assert due["Gmle"] == list(range(10))
    assert due["Dpre"] == list(range(10, 15))
    assert due["D"] == due["G"] == list(range(15, 30))
    assert [p.name for p in TextObjective("mle").phases()] == ["Gmle"]


def relgan_beta(temper: float, i: int, adapt: str, N: int = 5000) -> float:
    """RelGAN's ``get_fixed_temperature(temper, i, nadv_steps, adapt)`` (github weilinie/RelGAN,
    real/real_gan/real_train.py), its body as written there, N = 5000 as there: the inverse temperature."""
    if adapt == 'no':
        temper_var_np = temper  # no increase
    elif adapt == 'lin':
        temper_var_np = 1 + i / (N - 1) * (temper - 1)  # linear increase
    elif adapt == 'exp':
        temper_var_np = temper ** (i / N)  # exponential increase
    elif adapt == 'log':
        temper_var_np = 1 + (temper - 1) / np.log(N) * np.log(i + 1)  # logarithm increase
    elif adapt == 'sigmoid':
        temper_var_np = (temper - 1) * 1 / (1 + np.exp((N / 2 - i) * 20 / N)) + 1  # sigmoid increase
    elif adapt == 'quad':
        temper_var_np = (temper - 1) / (N - 1) ** 2 * i ** 2 + 1
    elif adapt == 'sqrt':
        temper_var_np = (temper - 1) / np.sqrt(N - 1) * np.sqrt(i) + 1
    else:
        raise Exception("Unknown adapt type!")
    return temper_var_np


@pytest.mark.parametrize("schedule", ["no", "lin", "exp", "log", "sigmoid", "quad", "sqrt"])
def test_temperature_schedules_are_relgans_on_the_inverse_temperature(schedule):
    for beta_max in (100.0, 1000.0):
        for i in (0, 1, 700, 2500, 4000, 4999):
            expected = 1.0 / relgan_beta(beta_max, i, schedule)
            assert math.isclose(tau_at(i, 5000, 1.0, 1.0 / beta_max, schedule), expected, rel_tol=1e-9), (beta_max, i)
        assert tau_at(5000, 5000, 1.0, 1.0 / beta_max, schedule) == 1.0 / beta_max  # past the span: its end
    # Another starting temperature: beta runs from 1 / tau_start, so tau_start = 1 is RelGAN's case above.
    assert tau_at(0, 11, 0.5, 0.1, schedule) == pytest.approx(0.1 if schedule == "no" else 0.5, rel=1e-3)


def test_temperature_schedule_values_by_hand():
    # lin is linear in beta = 1/tau, not in tau: half way from tau 1 to 0.01 is beta 50.5, tau 0.0198.
    assert math.isclose(tau_at(50, 101, 1.0, 0.01, "lin"), 1 / 50.5)
    assert math.isclose(tau_at(50, 100, 1.0, 0.01, "exp"), 0.1)  # tau = tau_start (tau_end / tau_start) ** (i / N)
    assert tau_at(70, 100, 0.3, 0.01, "constant") == 0.3 and tau_at(0, 100, 0.3, 0.01, "no") == 0.01
    assert tau_at(-3, 100, 1.0, 0.01, "lin") == 1.0  # before the adversarial phases: the start
    with pytest.raises(ConfigError, match="tau_schedule"):
        tau_at(0, 10, 1.0, 0.01, "cosine")


def test_the_temperature_span_is_kept_in_the_objectives_state():
    # The span a run started with travels in the checkpoint: an objective built for a longer run (resumed
    # with --steps N) that loads it has the same temperature at every step.
    first = TextObjective("gumbel", LOSSES.get("wasserstein"), pretrain_steps=10, tau_span=40)
    resumed = TextObjective("gumbel", LOSSES.get("wasserstein"), pretrain_steps=10, tau_span=90)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.tau(s) for s in range(10, 120)] == [first.tau(s) for s in range(10, 120)]
    assert first.tau(49) > first.tau(50) == first.tau(119) == 0.01  # the span ends at step 10 + 40
    assert "tau_span" not in TextObjective("seqgan", LOSSES.get("wasserstein"), rollout=None).state_dict()


def test_text_cnn_has_seqgans_filter_counts_by_default_and_refuses_hidden():
    spec = DataSpec((20,), dtype="int64", vocab_size=50)
    default = from_dict({"model": {"discriminator": {"name": "text-cnn"}}}).model.discriminator
    D = build_discriminator(default, spec)
    assert [c.kernel_size[0] for c in D.convs] == list(SEQGAN_WINDOWS)
    assert [c.out_channels for c in D.convs] == list(SEQGAN_FILTERS) and sum(SEQGAN_FILTERS) == 1720
    # The text presets' quarter, as their hidden: [25] built it before filter_scale existed.
    preset = build_discriminator(load_config("coco-seqgan").model.discriminator, spec)
    assert [c.out_channels for c in preset.convs] == [max(1, round(f / 4)) for f in SEQGAN_FILTERS]
    assert sum(c.out_channels for c in preset.convs) == 430
    for hidden in ([25], [256], []):  # once a hidden size scaled the filters by hidden[0] / 100
        cfg = from_dict({"model": {"discriminator": {"name": "text-cnn", "hidden": hidden}}}).model.discriminator
        with pytest.raises(ConfigError, match="filter_scale") as e:
            build_discriminator(cfg, spec)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="filter_scale"):
        from_dict({"model": {"discriminator": {"name": "text-cnn", "filter_scale": 0}}})
    # text-rnn still reads hidden as its state size.
    rnn = from_dict({"model": {"discriminator": {"name": "text-rnn", "hidden": [12]}}}).model.discriminator
    assert build_discriminator(rnn, spec).rnn.hidden_size == 12


def test_oracle_is_seeded_and_fixed():
    a, b = oracle_lstm(50, 5, 8, seed=3), oracle_lstm(50, 5, 8, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q) and not p.requires_grad
    assert not torch.equal(next(a.parameters()), next(oracle_lstm(50, 5, 8, seed=4).parameters()))
