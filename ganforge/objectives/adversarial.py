"""The adversarial objective: Algorithm 1's discriminator and generator phases, composed of parts.

Parts, each optional and chosen by config: an adversarial loss (:data:`~ganforge.objectives.losses.LOSSES`),
what D sees beside x (a label or a data condition), an auxiliary term (AC-GAN, InfoGAN), D's input
techniques (instance noise, DiffAugment: the same in both phases, so D judges G's samples in G's
phase as it saw them in its own), one-sided label smoothing and label flipping, feature matching,
D's penalties (gradient penalty, R1; merged into D's phase or, lazily, a ``Dreg`` phase of their
own), weight clipping, historical averaging of either player, and a balance (BEGAN's k_t).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ganforge.config import TechniquesConfig
from ganforge.nn.techniques import HistoricalAverage, diff_augment
from ganforge.objectives.base import Batch, Game, Phase, readout
from ganforge.objectives.losses import AdversarialLoss, began_convergence, began_k_update
from ganforge.objectives.regularizers import WeightClip


def instance_noise_std(start: float, step: int, anneal_steps: int) -> float:
    """Linear annealing of instance noise from ``start`` at step 0 to 0 at ``anneal_steps``."""
    if start <= 0 or anneal_steps <= 0:
        return 0.0
    return start * max(0.0, 1.0 - step / anneal_steps)


def d_targets(n: int, smoothing: float, flip: float, generator: torch.Generator | None,
              dtype: torch.dtype = torch.float32, device: Any = "cpu") -> tuple[Tensor | float, Tensor | float]:
    """D's targets for real and fake samples: one-sided smoothing (real -> 1 - s), then flipping.
    Flips are drawn with ``generator`` (on its own device); the targets are returned on ``device``."""
    real, fake = 1.0 - smoothing, 0.0
    if flip <= 0:
        return real, fake
    rt = torch.full((n,), real, dtype=dtype)
    ft = torch.zeros(n, dtype=dtype)
    flip_r = torch.rand(n, generator=generator) < flip
    flip_f = torch.rand(n, generator=generator) < flip
    # A flipped real is labelled fake (0) and a flipped fake is labelled real (1 - s).
    return torch.where(flip_r, ft, rt).to(device), torch.where(flip_f, torch.full_like(ft, real), ft).to(device)


class BEGANBalance:
    """BEGAN's equilibrium (Berthelot et al. 2017): k_t weighs the fake term of D's loss and moves
    towards gamma = E[L(G(z))] / E[L(x)] after each D update; M is the convergence measure."""

    def __init__(self, gamma: float, lambda_k: float) -> None:
        self.gamma, self.lambda_k, self.k = gamma, lambda_k, 0.0

    def d_kwargs(self) -> dict[str, Any]:
        return {"k": self.k}

    def update(self, real_err: float, fake_err: float) -> dict[str, Tensor]:
        self.k = began_k_update(self.k, real_err, fake_err, self.gamma, self.lambda_k)
        return {"began_k": torch.tensor(self.k),
                "began_convergence": torch.tensor(began_convergence(real_err, fake_err, self.gamma))}

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k = float(state["k"])


@dataclass
class AdversarialObjective:
    """D's phase (``D``, repeated ``d_steps`` times), lazy penalties (``Dreg``) and G's phase (``G``)."""

    criterion: AdversarialLoss  # the pair of loss functions (d_loss, g_loss)
    techniques: TechniquesConfig = field(default_factory=TechniquesConfig)
    condition: Callable[[Batch], Tensor] | None = None  # what D sees beside x (CGAN, projection)
    aux: Any = None  # ACGANTerm / InfoGANTerm
    g_terms: list[Any] = field(default_factory=list)  # more terms of G's loss on its fakes (CTGAN's conditional one)
    penalties: list[Any] = field(default_factory=list)  # GradientPenalty, R1Penalty (each with an interval)
    weight_clip: WeightClip | None = None
    d_history: HistoricalAverage | None = None
    g_history: HistoricalAverage | None = None
    balance: BEGANBalance | None = None
    d_steps: int = 1
    g_steps: int = 1
    fresh_g_noise: bool = True  # False: G's first update reuses the fakes of D's last update
    noise_anneal_steps: int = 0
    mismatch: bool = False  # GAN-CLS: real images with mismatched captions (batch "c_wrong") count as fake
    interpolation: Any = None  # GAN-INT: a CaptionInterpolation, G's term on mixed captions
    mode_seeking: Any = None  # MSGAN's term against one image per caption (a ModeSeeking)

    def __post_init__(self) -> None:
        self.probabilistic = self.criterion.kind == "logit"
        self._reusable: Batch | None = None
        # D's last minibatch per micro-batch (gradient accumulation), for the lazy penalties.
        self._last: dict[int, tuple[Tensor, Tensor, Tensor | None, Tensor | None]] = {}
        self._errors: tuple[float, float] = (0.0, 0.0)

    # -- phases --------------------------------------------------------------------------------

    def phases(self, train: Any = None) -> list[Phase]:
        phases = [Phase("D", "d", repeat=self.d_steps)]
        for interval in sorted({p.interval for p in self.penalties if p.interval > 1}):
            phases.append(Phase(f"Dreg{interval}", "d", interval=interval))
        phases.append(Phase("G", "g", repeat=self.g_steps, freeze=("d",)))
        return phases

    def _inputs(self, game: Game, x: Tensor) -> Tensor:
        """What D sees of a sample: instance noise (annealed), then DiffAugment; the same in both phases."""
        std = instance_noise_std(self.techniques.instance_noise, game.step,
                                 self.techniques.instance_noise_anneal_steps or self.noise_anneal_steps)
        if std > 0:
            x = x + std * torch.randn(x.shape, generator=game.rng).to(x)
        if self.techniques.diff_augment:  # fresh draws for each batch
            x = diff_augment(x, self.techniques.diff_augment, game.rng)
        return x

    def _cond(self, batch: Batch) -> Tensor | None:
        return self.condition(batch) if self.condition is not None else None

    def loss(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        if phase.name == "D":
            return self.d_loss(game)
        if phase.name == "G":
            return self.g_loss(game)
        return self.lazy_penalty(phase, game)

    def d_loss(self, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """Algorithm 1's discriminator loss on a fresh real and a fresh (detached) fake minibatch."""
        # G's forward keeps its graph only when G's next update will reuse these fakes.
        fake = game.fake(grad=not self.fresh_g_noise)
        real = game.real()
        if not self.fresh_g_noise:
            self._reusable = fake
        x_real, x_fake = self._inputs(game, real["x"]), self._inputs(game, fake["x"].detach())
        c_real, c_fake = self._cond(real), self._cond(fake)
        aux = self.aux is not None
        d_real, ex_real = game.judge(x_real, c_real, aux=aux and self.aux.needs_real)
        d_fake, ex_fake = game.judge(x_fake, c_fake, aux=aux)
        d_negative, logs = d_fake, {}
        if self.mismatch:
            # GAN-CLS (Reed et al. 2016): a real image with another image's caption is a negative too;
            # the fake side of the loss averages both kinds, Reed's (log(1-s_w) + log(1-s_f)) / 2.
            d_wrong, _ = game.judge(x_real, real["c_wrong"])
            d_negative = torch.cat([d_fake, d_wrong])
            logs["d_wrong"] = readout(d_wrong, self.probabilistic)
        t = self.techniques
        if self.criterion.soft_targets and (t.label_smoothing or t.label_flip):
            rt, ft = d_targets(len(x_real), t.label_smoothing, t.label_flip, game.rng, device=d_real.device)
            if self.mismatch and isinstance(ft, Tensor):
                ft = torch.cat([ft, d_targets(len(x_real), t.label_smoothing, t.label_flip, game.rng,
                                              device=d_real.device)[1]])
            loss = self.criterion.d_loss(d_real, d_negative, real_target=rt, fake_target=ft)
        else:
            loss = self.criterion.d_loss(d_real, d_negative, **(self.balance.d_kwargs() if self.balance else {}))
        logs["d_loss"] = loss.detach()
        if aux:
            a = self.aux.d_loss(real, ex_real.get("aux"), fake, ex_fake["aux"])
            logs["aux_d"] = a.detach()
            loss = loss + a
        if self.d_history is not None:
            pen = self.d_history.penalty()
            logs["HistoricalAverage"] = pen.detach()
            loss = loss + pen
        for reg in self.penalties:
            if reg.interval == 1:
                # A label-conditioned D is penalized at the real samples' labels.
                pen = reg.penalty(game.D, x_real, x_fake, c=c_real, generator=game.rng, c_fake=c_fake)
                logs[type(reg).__name__] = pen.detach()
                loss = loss + pen
        self._last[getattr(game, "micro", 0)] = (x_real, x_fake, c_real, c_fake)
        if self.balance is not None:
            # k_t is one number for the whole run: in a multi-process run, from the global batch.
            errs = torch.stack([d_real.detach().mean(), d_fake.detach().mean()])
            errs = game.reduce_mean(errs) if hasattr(game, "reduce_mean") else errs
            self._errors = (float(errs[0]), float(errs[1]))
        logs["d_real"], logs["d_fake"] = readout(d_real, self.probabilistic), readout(d_fake, self.probabilistic)
        return loss, logs

    def lazy_penalty(self, phase: Phase, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """Penalties with an interval N, on D's last minibatch, every N iterations. Each is scaled by
        the number of D updates it stands for (N times D's updates per iteration), the same rule for
        every regularizer, so its expected strength matches the same penalty applied every update."""
        last = self._last.get(getattr(game, "micro", 0))
        assert last is not None, "a lazy regularization phase needs a D phase before it"
        x_real, x_fake, c_real, c_fake = last
        loss: Tensor = torch.zeros((), device=x_real.device)
        logs: dict[str, Tensor] = {}
        for reg in self.penalties:
            if reg.interval == phase.interval:
                gain = phase.interval * self.d_steps
                pen = reg.penalty(game.D, x_real, x_fake, c=c_real, generator=game.rng, c_fake=c_fake) * gain
                logs[type(reg).__name__] = pen.detach()
                loss = loss + pen
        return loss, logs

    def g_loss(self, game: Game) -> tuple[Tensor, dict[str, Tensor]]:
        """G's loss on fresh fakes (or D's last ones), judged through the same input techniques."""
        fake, self._reusable = (self._reusable, None) if self._reusable is not None else (game.fake(), None)
        x = self._inputs(game, fake["x"])
        c = self._cond(fake)
        aux = self.aux is not None
        if self.techniques.feature_matching:
            # Salimans et al. (2016): match the mean of D's features on real data.
            with torch.no_grad():
                real = game.real(len(x))
                _, ex_real = game.judge(self._inputs(game, real["x"]), self._cond(real), features=True)
                f_real = ex_real["features"].mean(0)
            _, ex = game.judge(x, c, features=True, aux=aux)
            loss = ((ex["features"].mean(0) - f_real) ** 2).sum()
        else:
            d_fake, ex = game.judge(x, c, aux=aux)
            loss = self.criterion.g_loss(d_fake)
        if aux:
            loss = loss + self.aux.g_loss(fake, ex["aux"])
        logs = {"g_loss": loss.detach()}
        if self.interpolation is not None:
            # GAN-INT: G must also fool D on captions between training captions (no real image has them).
            mixed = game.fake(condition=self.interpolation.conditions(game))
            d_mix, _ = game.judge(self._inputs(game, mixed["x"]), mixed["c"])  # "c" on the device
            term = self.interpolation.weight * self.criterion.g_loss(d_mix)
            logs["g_int"] = term.detach()
            loss = loss + term
        if self.mode_seeking is not None:
            extra, extra_logs = self.mode_seeking(game, fake)
            loss = loss + extra
            logs.update(extra_logs)
        for term in self.g_terms:
            extra, extra_logs = term(fake)
            loss = loss + extra
            logs.update(extra_logs)
        if self.g_history is not None:
            loss = loss + self.g_history.penalty()
        return loss, logs

    def after_update(self, phase: Phase, game: Game, logs: dict[str, Tensor]) -> None:
        if phase.name == "D":
            if self.d_history is not None:
                self.d_history.update()
            if self.weight_clip is not None:
                assert game.D is not None
                self.weight_clip.after_step(game.D)
            if self.balance is not None:
                logs.update(self.balance.update(*self._errors))
        elif phase.name == "G" and self.g_history is not None:
            self.g_history.update()

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name in ("d_history", "g_history", "balance"):
            part = getattr(self, name)
            if part is not None:
                state[name] = part.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)
