"""Text GANs: the sequence networks, SeqGAN's policy gradient and rollouts, the Gumbel-softmax path."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.data.text import TextData, Vocabulary
from ganforge.generator import Prior
from ganforge.nn.sequence import SequenceGenerator, TextCNN, TextRNN, alive_mask, oracle_lstm, sample_categorical
from ganforge.objectives.base import Phase
from ganforge.objectives.losses import LOSSES
from ganforge.objectives.text import Rollout, TextObjective, tau_at
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


def test_rollout_rewards_complete_each_prefix_and_keep_finished_ones():
    G = tiny_g()
    roll = Rollout(G, rollouts=4, update_rate=0.8)
    x = torch.tensor([[3, 4, 1, 0, 0, 0], [3, 4, 5, 6, 7, 8]])
    seen: list[torch.Tensor] = []

    def score(s: torch.Tensor) -> torch.Tensor:
        seen.append(s.clone())
        return (s == 3).float().mean(1)

    r = roll.rewards(x, torch.zeros(2, 0), score)
    assert r.shape == (2, 6)
    full = (x == 3).float().mean(1)
    assert torch.allclose(r[:, -1], full)
    assert torch.allclose(r[0, 2:], full[0].expand(4))  # the first sentence ended at position 2
    for s in seen[1:]:  # every completion keeps its prefix
        assert (s[:, 0] == 3).all()


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
                        total_steps=100)
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
    obj = TextObjective("gumbel", LOSSES.get("wasserstein"), tau_start=1.0, tau_end=0.5, total_steps=60)
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
    obj = TextObjective("seqgan", LOSSES.get("nonsaturating"), pretrain_steps=10, d_pretrain_steps=5, d_steps=3,
                        total_steps=30)
    due = {p.name: [s for s in range(30) if p.due(s)] for p in obj.phases()}
    assert due["Gmle"] == list(range(10))
    assert due["Dpre"] == list(range(10, 15))
    assert due["D"] == due["G"] == list(range(15, 30))
    assert [p.name for p in TextObjective("mle").phases()] == ["Gmle"]


def test_temperature_schedules():
    assert tau_at(0, 1, 0.01, "exp") == 1 and math.isclose(tau_at(1, 1, 0.01, "exp"), 0.01)
    assert math.isclose(tau_at(0.5, 1, 0.01, "exp"), 0.1)
    assert math.isclose(tau_at(0.5, 1, 0.5, "linear"), 0.75)
    assert tau_at(0.7, 0.3, 0.01, "constant") == 0.3
    assert tau_at(2.0, 1, 0.01, "exp") == pytest.approx(0.01)  # clipped to the schedule's end


def test_oracle_is_seeded_and_fixed():
    a, b = oracle_lstm(50, 5, 8, seed=3), oracle_lstm(50, 5, 8, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q) and not p.requires_grad
    assert not torch.equal(next(a.parameters()), next(oracle_lstm(50, 5, 8, seed=4).parameters()))
