"""Text objectives: maximum likelihood, SeqGAN's policy gradient and the Gumbel-softmax relaxation.

A sampled word is discrete, so D's gradient cannot reach G through it. The two ways round it are
parts of one objective, :class:`TextObjective`, whose phases are

- ``Gmle``: G's maximum-likelihood (teacher-forced) loss on real sentences, for the first
  ``pretrain_steps`` iterations (for ever in the plain MLE model);
- ``Dpre``: D alone, real sentences against G's samples, for ``d_pretrain_steps`` iterations;
- ``D`` and ``G``: the adversarial game from then on. G's loss is either

  * SeqGAN's (Yu et al. 2017): REINFORCE with per-token rewards, the mean of D's probability
    over Monte-Carlo completions of each prefix by a rollout network that trails G (its weights
    keep ``rollout_update`` of themselves at each G update), or
  * the Gumbel-softmax relaxation (Kusner and Hernandez-Lobato 2016, in RelGAN's form): G writes
    soft one-hots softmax((logits + Gumbel) / tau), D reads them, and the gradient flows through;
    tau follows one of RelGAN's schedules of the inverse temperature beta = 1 / tau, from
    1 / ``tau_start`` to 1 / ``tau_end`` over the adversarial iterations (see :func:`tau_at`).

The trainer runs these phases like any other objective's; nothing in it knows about text.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.generator import sampling_mode
from ganforge.nn.sequence import SequenceGenerator, repeat_state, select_state
from ganforge.objectives.base import Game, Phase, readout
from ganforge.objectives.losses import AdversarialLoss
from ganforge.registry import ConfigError

METHODS = ("mle", "seqgan", "gumbel")
# RelGAN's schedules (Nie et al. 2019, `get_fixed_temperature`), and `constant`: tau_start throughout.
TAU_SCHEDULES = ("no", "lin", "exp", "log", "sigmoid", "quad", "sqrt", "constant")


def tau_at(i: int, span: int, start: float, end: float, schedule: str) -> float:
    """The Gumbel-softmax temperature at adversarial iteration ``i`` (0 = the first) of a schedule over ``span``.

    RelGAN's schedules act on the inverse temperature beta = 1 / tau, which rises from beta_0 = 1 / ``start``
    to beta_max = 1 / ``end``; with ``start`` = 1 (RelGAN's beta_0) each is RelGAN's
    ``get_fixed_temperature(beta_max, i, -, schedule)`` with its N = ``span``, formula for formula:

    - ``no``: beta_max throughout (tau = ``end`` from the first iteration);
    - ``lin``: beta_0 + (beta_max - beta_0) i / (N - 1);
    - ``exp``: beta_0 (beta_max / beta_0) ** (i / N), i.e. tau = start (end / start) ** (i / N);
    - ``log``: beta_0 + (beta_max - beta_0) log(i + 1) / log N;
    - ``sigmoid``: beta_0 + (beta_max - beta_0) / (1 + exp((N / 2 - i) 20 / N));
    - ``quad``: beta_0 + (beta_max - beta_0) i^2 / (N - 1)^2;
    - ``sqrt``: beta_0 + (beta_max - beta_0) sqrt(i) / sqrt(N - 1);
    - ``constant`` (not RelGAN's): tau = ``start`` throughout.

    Before the first iteration every schedule but ``no`` is at its start; from iteration N on (a run extended past its
    span) it holds its end, tau = ``end``.
    """
    if schedule == "constant":
        return start
    if schedule not in TAU_SCHEDULES:
        raise ConfigError(f"model.text.tau_schedule: unknown '{schedule}' (choices: {', '.join(TAU_SCHEDULES)})")
    n = max(1, span)
    if i >= n or schedule == "no":
        return end
    i = max(0, i)
    b0, b1 = 1.0 / start, 1.0 / end
    if schedule == "exp":
        return start * (end / start) ** (i / n)  # = 1 / (b0 (b1 / b0) ** (i / n)), without the round trip
    # The share of the way from b0 to b1; max(..., 1) and log(max(n, 2)) only matter for a one-step span,
    # where i = 0 and every share is 0.
    share = {
        "lin": i / max(n - 1, 1),
        "log": math.log(i + 1) / math.log(max(n, 2)),
        "sigmoid": 1.0 / (1.0 + math.exp((n / 2 - i) * 20 / n)),
        "quad": i ** 2 / max(n - 1, 1) ** 2,
        "sqrt": math.sqrt(i) / math.sqrt(max(n - 1, 1)),
    }[schedule]
    return 1.0 / (b0 + (b1 - b0) * share)


class Rollout:
    """SeqGAN's rollout policy: a copy of G updated with a delay, completing prefixes for rewards."""

    chunk = 512  # completions generated at once

    def __init__(self, generator: SequenceGenerator, rollouts: int, update_rate: float) -> None:
        if rollouts < 1:
            raise ConfigError(f"model.text.rollouts must be at least 1, got {rollouts}")
        if not 0 <= update_rate < 1:
            raise ConfigError(f"model.text.rollout_update must lie in [0, 1), got {update_rate}")
        self.net: SequenceGenerator = copy.deepcopy(generator).requires_grad_(False)
        self.m, self.rate = rollouts, update_rate

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """rollout <- rate * rollout + (1 - rate) * G (SeqGAN's delayed update; SeqGAN's own code
        copies the embeddings at once and delays only the recurrent and output weights, this
        delays all of them)."""
        for r, g in zip(self.net.parameters(), generator.parameters(), strict=True):
            r.mul_(self.rate).add_(g.detach(), alpha=1.0 - self.rate)

    @torch.no_grad()
    def rewards(self, tokens: Tensor, v: Tensor, score: Any) -> Tensor:
        """(n, T) rewards: for token t < T-1 the mean of ``score`` (D's probability that a sentence is
        real) over ``m`` completions of tokens[:, :t+1]; for the last token, the score of the sentence.
        A prefix that already holds the end token is complete: its reward is the sentence's score."""
        n, T = tokens.shape
        full = score(tokens)
        rewards = full[:, None].repeat(1, T)
        net, m = self.net, self.m
        eos = net.eos
        done_before = torch.zeros(n, dtype=torch.bool, device=tokens.device)
        states = net.states(tokens, v)
        for t in range(1, T):
            # The prefix tokens[:, :t] is kept; token t-1 is rewarded. A prefix ending in eos is complete.
            if eos is not None:
                done_before = done_before | (tokens[:, t - 1] == eos)
            rows = (~done_before).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            # Completions in chunks: sampling over a vocabulary of thousands is memory-bound, and
            # a few hundred rows at a time stay in cache (measured 1.6x faster per row than 4,096).
            for part in rows.split(max(1, self.chunk // m)):
                state = repeat_state(select_state(states[t], part), m)
                prefix = tokens[part, :t].repeat_interleave(m, 0)
                rest = net.generate(state=state, first=prefix[:, -1], steps=T - t, prefix=prefix)["x"]
                rewards[part, t - 1] = score(torch.cat([prefix, rest], 1)).view(len(part), m).mean(1)
        return rewards

    def state_dict(self) -> dict[str, Any]:
        return {k: v.clone() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state)


@dataclass
class TextObjective:
    """MLE pretraining, then SeqGAN's or the Gumbel-softmax adversarial phases (see the module doc)."""

    method: str  # mle | seqgan | gumbel
    criterion: AdversarialLoss | None = None
    pretrain_steps: int = 0
    d_pretrain_steps: int = 0
    d_steps: int = 1
    g_steps: int = 1
    rollout: Rollout | None = None
    baseline: str = "none"
    tau_start: float = 1.0
    tau_end: float = 0.01
    tau_schedule: str = "exp"
    mle_weight: float = 0.0
    # The adversarial iterations the temperature schedule spans (RelGAN's N). build_text_objective sets it from
    # train.steps for a new run; it is saved in the checkpoint and a resumed run keeps it, whatever --steps it is
    # given (a longer run holds tau_end past it), so tau at a step never depends on how the run was split.
    tau_span: int = 1

    def __post_init__(self) -> None:
        self.probabilistic = self.criterion is not None and self.criterion.kind == "logit"

    @property
    def adversarial_start(self) -> int:
        return self.pretrain_steps + self.d_pretrain_steps

    def phases(self, train: Any = None) -> list[Phase]:
        """Gmle (until ``pretrain_steps``), Dpre (for ``d_pretrain_steps``), then D and G; MLE alone: Gmle."""
        if self.method == "mle":
            return [Phase("Gmle", "g", repeat=self.g_steps)]
        p, a = self.pretrain_steps, self.adversarial_start
        phases = []
        if p:
            phases.append(Phase("Gmle", "g", stop=p))
        if self.d_pretrain_steps:
            phases.append(Phase("Dpre", "d", start=p, stop=a))
        phases += [Phase("D", "d", repeat=self.d_steps, start=a),
                   Phase("G", "g", repeat=self.g_steps, start=a, freeze=("d",))]
        return phases

    def tau(self, step: int) -> float:
        """The Gumbel-softmax temperature at iteration ``step`` (its schedule starts with the adversarial phases
        and spans ``tau_span`` iterations)."""
        return tau_at(step - self.adversarial_start, self.tau_span, self.tau_start, self.tau_end, self.tau_schedule)

    # -- losses ----------------------------------------------------------------------------------

    def loss(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one phase (see the module docstring) and what to log."""
        if phase.name == "Gmle":
            loss = self.mle(game)
            return loss, {"mle_loss": loss.detach()}
        if phase.name in ("D", "Dpre"):
            return self.d_loss(game)
        return self.g_loss(game)

    def mle(self, game: Game) -> Tensor:
        """Teacher-forced negative log-likelihood per token of a real minibatch."""
        tokens = game.real()["tokens"]
        with game.amp():
            return game.G.nll(tokens, game.noise(len(tokens))["v"])

    def _fakes(self, game: Game, grad: bool) -> tuple[Tensor, Tensor]:
        """G's samples as D reads them (soft one-hots for the relaxation, else token ids) and the ids."""
        v = game.noise()["v"]
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), game.amp():
            out = game.G.generate(v=v, tau=self.tau(game.step) if self.method == "gumbel" else None)
        return (out["soft"] if self.method == "gumbel" else out["x"]), out["x"]

    def d_loss(self, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """D's adversarial loss: real sentences against G's samples (soft one-hots for the relaxation)."""
        assert self.criterion is not None
        x_fake, _ = self._fakes(game, grad=False)
        real = game.real()["tokens"]
        d_real, _ = game.judge(real)
        d_fake, _ = game.judge(x_fake.detach())
        loss = self.criterion.d_loss(d_real, d_fake)
        return loss, {"d_loss": loss.detach(), "d_real": readout(d_real, self.probabilistic),
                      "d_fake": readout(d_fake, self.probabilistic)}

    def g_loss(self, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """G's adversarial loss: the relaxed one through D, or SeqGAN's policy gradient (+ an MLE term)."""
        assert self.criterion is not None
        logs: dict[str, Tensor] = {}
        if self.method == "gumbel":
            soft, _ = self._fakes(game, grad=True)
            d_fake, _ = game.judge(soft)
            loss = self.criterion.g_loss(d_fake)
            logs["tau"] = torch.tensor(self.tau(game.step))
        else:
            loss, logs = self.policy_gradient(game)
        logs["g_loss"] = loss.detach()
        if self.mle_weight:
            mle = self.mle(game)
            logs["mle_loss"] = mle.detach()
            loss = loss + self.mle_weight * mle
        return loss, logs

    def policy_gradient(self, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """SeqGAN's G loss: -sum_t log G(y_t | y_<t) * Q(y_<=t), averaged over counted tokens."""
        assert self.rollout is not None and game.D is not None
        G: SequenceGenerator = game.G
        v = game.noise()["v"]
        with torch.no_grad():
            tokens = G.generate(v=v)["x"]
        # D scores rollouts as it would judge a sentence: without dropout, as a probability.
        with sampling_mode(game.D):
            rewards = self.rollout.rewards(tokens, v, lambda x: torch.sigmoid(game.judge(x)[0]))
        mask = G.mask(tokens).float()
        logs = {"reward": (rewards * mask).sum() / mask.sum(), "d_fake": rewards[:, -1].mean()}
        if self.baseline == "mean":
            rewards = rewards - logs["reward"]
        with game.amp():
            logp = G.log_probs(tokens, v)
        return -(logp * rewards * mask).sum() / mask.sum().clamp_min(1.0), logs

    def after_update(self, phase: Phase, game: Game, logs: dict[str, Tensor]) -> None:
        """SeqGAN: the rollout network trails G after each G update, and starts as the pretrained G."""
        if phase.name == "G" and self.rollout is not None:
            self.rollout.update(game.G)
        if phase.name == "Gmle" and self.rollout is not None and game.step == self.pretrain_steps - 1:
            # The rollout network starts the adversarial phase as a copy of the pretrained G.
            self.rollout.net.load_state_dict(game.G.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The rollout network's weights (a resumed SeqGAN run continues with the same rollout policy) and the
        temperature schedule's span (a resumed Gumbel-softmax run keeps its temperatures)."""
        state: dict[str, Any] = {"tau_span": self.tau_span} if self.method == "gumbel" else {}
        if self.rollout is not None:
            state["rollout"] = self.rollout.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s entries (a checkpoint written before the span was saved keeps the span
        this run was built with, as it was read then)."""
        if "rollout" in state and self.rollout is not None:
            self.rollout.load_state_dict(state["rollout"])
        if "tau_span" in state and self.method == "gumbel":
            self.tau_span = int(state["tau_span"])


def build_text_objective(setup: Any, method: str) -> TextObjective:
    """The text objective of a config (``model.objective`` mle, seqgan or gumbel)."""
    from ganforge.objectives.losses import LOSSES

    cfg, tc = setup.cfg, setup.cfg.model.text
    if not isinstance(setup.generator, SequenceGenerator):
        raise ConfigError(f"model.objective={method} trains a sequence generator (model.generator.name lstm or gru), "
                          f"not {type(setup.generator).__name__}")
    for key in ("pretrain_steps", "d_pretrain_steps"):
        if getattr(tc, key) < 0:
            raise ConfigError(f"model.text.{key} must be non-negative, got {getattr(tc, key)}")
    if tc.baseline not in ("none", "mean"):
        raise ConfigError(f"model.text.baseline: unknown '{tc.baseline}' (choices: none, mean)")
    if tc.tau_schedule == "linear":  # the old name, linear in tau: refused rather than silently changed
        raise ConfigError("model.text.tau_schedule: 'linear' (linear in tau) is gone; RelGAN's schedules act on "
                          "beta = 1/tau: lin (linear in beta), or one of " + ", ".join(TAU_SCHEDULES))
    if tc.tau_schedule not in TAU_SCHEDULES:
        raise ConfigError(f"model.text.tau_schedule: unknown '{tc.tau_schedule}' (choices: {', '.join(TAU_SCHEDULES)})")
    if tc.tau_start <= 0 or tc.tau_end <= 0:
        raise ConfigError("model.text.tau_start and tau_end must be positive")
    if method == "mle":
        return TextObjective("mle", g_steps=cfg.train.g_steps)
    if tc.pretrain_steps + tc.d_pretrain_steps >= cfg.train.steps:
        raise ConfigError(f"model.text: pretraining ({tc.pretrain_steps} + {tc.d_pretrain_steps} steps) leaves no "
                          f"adversarial step within train.steps={cfg.train.steps}")
    rollout = Rollout(setup.generator, tc.rollouts, tc.rollout_update) if method == "seqgan" else None
    # The schedule spans the adversarial iterations of this config's train.steps; a resumed run replaces the
    # span with its checkpoint's (load_state_dict), so `--resume --steps N` does not stretch it.
    span = cfg.train.steps - tc.pretrain_steps - tc.d_pretrain_steps
    return TextObjective(method, LOSSES.get(cfg.model.loss.name), tc.pretrain_steps, tc.d_pretrain_steps,
                         cfg.train.d_steps, cfg.train.g_steps, rollout, tc.baseline, tc.tau_start, tc.tau_end,
                         tc.tau_schedule, tc.mle_weight, span)
