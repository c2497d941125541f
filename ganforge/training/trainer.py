"""Algorithm 1 of Goodfellow et al. (2014), as a short step and a loop with callbacks.

Per iteration: ``k`` discriminator updates, each on a fresh minibatch of data and of noise, then
``g`` generator updates on fresh noise. Everything else (logging, EMA, checkpoints, sample plots,
metrics, health checks) is a callback.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ganforge.config import LossConfig, TechniquesConfig, TrainConfig
from ganforge.losses.adversarial import AdversarialLoss, began_convergence, began_k_update, mmd2


class DataSource(Protocol):
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


class Prior:
    """The noise prior p_z: standard normal, or uniform on [-1, 1]."""

    def __init__(self, kind: str, dim: int) -> None:
        if kind not in ("normal", "uniform"):
            from ganforge.registry import ConfigError
            raise ConfigError(f"model.noise: unknown prior '{kind}' (choices: normal, uniform)")
        self.kind, self.dim = kind, dim

    def sample(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu") -> Tensor:
        if self.kind == "normal":
            return torch.randn(n, self.dim, generator=generator, device=device)
        return torch.rand(n, self.dim, generator=generator, device=device) * 2 - 1


def instance_noise_std(start: float, step: int, anneal_steps: int) -> float:
    """Linear annealing of instance noise from ``start`` at step 0 to 0 at ``anneal_steps``."""
    if start <= 0 or anneal_steps <= 0:
        return 0.0
    return start * max(0.0, 1.0 - step / anneal_steps)


def d_targets(n: int, smoothing: float, flip: float, generator: torch.Generator | None,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor | float, Tensor | float]:
    """D's targets for real and fake samples: one-sided smoothing (real -> 1 - s), then flipping."""
    real, fake = 1.0 - smoothing, 0.0
    if flip <= 0:
        return real, fake
    rt = torch.full((n,), real, dtype=dtype)
    ft = torch.zeros(n, dtype=dtype)
    flip_r = torch.rand(n, generator=generator) < flip
    flip_f = torch.rand(n, generator=generator) < flip
    # A flipped real is labelled fake (0) and a flipped fake is labelled real (1 - s).
    return torch.where(flip_r, ft, rt), torch.where(flip_f, torch.full_like(ft, real), ft)


def grad_norm(params: list[Tensor]) -> Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@dataclass
class GANParts:
    """Everything the trainer needs, assembled by :mod:`ganforge.training.assemble`."""

    generator: nn.Module
    discriminator: nn.Module | None
    loss: AdversarialLoss
    loss_cfg: LossConfig
    prior: Prior
    data: DataSource
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    regularizers: list[Any] = field(default_factory=list)
    techniques: TechniquesConfig = field(default_factory=TechniquesConfig)


class Trainer:
    """Runs Algorithm 1 on :class:`GANParts`; callbacks see every step's outputs."""

    def __init__(self, parts: GANParts, cfg: TrainConfig, callbacks: list[Any] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.parts, self.cfg = parts, cfg
        self.G, self.D = parts.generator, parts.discriminator
        self.callbacks = list(callbacks or [])
        self.device = torch.device(device)
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self.step_num = 0  # completed iterations
        self.d_updates = 0
        self.began_k = 0.0
        self._elbo_terms: dict[str, Tensor] = {}
        self.want_stats = False  # callbacks set this when they need gradient norms this step
        self.stop_reason: str | None = None
        self._g_params = [p for p in self.G.parameters() if p.requires_grad]
        self._d_params = [p for p in self.D.parameters()] if self.D is not None else []
        tech = parts.techniques
        self._noise_anneal = tech.instance_noise_anneal_steps or cfg.steps

    # -- the step ---------------------------------------------------------------------------

    def _real(self, n: int) -> Tensor:
        return self.parts.data.sample(n, self.rng).to(self.device, non_blocking=True)

    def _fake(self, n: int) -> Tensor:
        return self.G(self.parts.prior.sample(n, self.rng).to(self.device, non_blocking=True))

    def _d_out(self, x: Tensor) -> Tensor:
        assert self.D is not None
        out = self.D(x)
        # A user D ending in Linear(h, 1) gives (n, 1); the losses take (n,), and (n, 1) would
        # broadcast against per-sample targets (label smoothing/flipping) into an (n, n) loss.
        return out.squeeze(1) if out.dim() == 2 and out.shape[1] == 1 else out

    def d_update(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """One discriminator update on a real and a (detached) fake minibatch."""
        parts, tech = self.parts, self.parts.techniques
        std = instance_noise_std(tech.instance_noise, self.step_num, self._noise_anneal)
        if std > 0:
            real = real + std * torch.randn(real.shape, generator=self.rng).to(real)
            fake = fake + std * torch.randn(fake.shape, generator=self.rng).to(fake)
        d_real, d_fake = self._d_out(real), self._d_out(fake)
        if parts.loss.soft_targets and (tech.label_smoothing or tech.label_flip):
            rt, ft = d_targets(len(real), tech.label_smoothing, tech.label_flip, self.rng)
            loss = parts.loss.d_loss(d_real, d_fake, real_target=rt, fake_target=ft)
        elif parts.loss.kind == "energy":
            loss = parts.loss.d_loss(d_real, d_fake, k=self.began_k)
        else:
            loss = parts.loss.d_loss(d_real, d_fake)
        out = {"d_loss": loss.detach()}
        for reg in parts.regularizers:
            if hasattr(reg, "penalty") and self.d_updates % reg.interval == 0:
                pen = reg.penalty(self.D, real, fake, generator=self.rng)
                out[type(reg).__name__] = pen.detach()
                loss = loss + pen
        assert parts.opt_d is not None
        parts.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        if self.want_stats:
            out["grad_norm_d"] = grad_norm(self._d_params)
        parts.opt_d.step()
        for reg in parts.regularizers:
            if hasattr(reg, "after_step") and self.d_updates % reg.interval == 0:
                reg.after_step(self.D)
        self.d_updates += 1
        if parts.loss.kind == "energy":
            real_err, fake_err = float(d_real.detach().mean()), float(d_fake.detach().mean())
            cfg = parts.loss_cfg
            self.began_k = began_k_update(self.began_k, real_err, fake_err, cfg.began_gamma, cfg.began_lambda_k)
            out["began_k"] = torch.tensor(self.began_k)
            out["began_convergence"] = torch.tensor(began_convergence(real_err, fake_err, cfg.began_gamma))
        out["d_real"], out["d_fake"] = self._readout(d_real), self._readout(d_fake)
        return out

    def _readout(self, d: Tensor) -> Tensor:
        """D(x) as logged: a mean probability for logit losses, the mean raw output otherwise."""
        d = d.detach().float()
        return torch.sigmoid(d).mean() if self.parts.loss.kind == "logit" else d.mean()

    def g_loss(self, fake: Tensor | None) -> Tensor:
        parts, tech = self.parts, self.parts.techniques
        if parts.loss.kind == "elbo":
            loss, self._elbo_terms = self.G.negative_elbo(self._real(self.cfg.batch_size), self.rng)
            return loss
        assert fake is not None
        n = len(fake)
        if parts.loss.kind == "moment":
            real = self._real(n)
            return mmd2(real, fake, parts.loss_cfg.mmd_bandwidths)
        if tech.feature_matching:
            features: Callable[[Tensor], Tensor] = self.D.features
            with torch.no_grad():
                f_real = features(self._real(n)).mean(0)
            return ((features(fake).mean(0) - f_real) ** 2).sum()
        return parts.loss.g_loss(self._d_out(fake))

    def g_update(self, fake: Tensor | None) -> dict[str, Tensor]:
        """One generator update on a fake minibatch that still carries G's graph (None for a VAE)."""
        loss = self.g_loss(fake)
        self.parts.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        out = {"g_loss": loss.detach()}
        if self.parts.loss.kind == "elbo":
            out.update(self._elbo_terms)
        if self.want_stats:
            out["grad_norm_g"] = grad_norm(self._g_params)
        self.parts.opt_g.step()
        return out

    def step(self) -> dict[str, Tensor]:
        """One iteration of Algorithm 1; returns detached scalars."""
        b, out, fake = self.cfg.batch_size, {}, None
        if self.D is not None:
            for _ in range(self.cfg.d_steps):
                fake = self._fake(b)
                out.update(self.d_update(self._real(b), fake.detach()))
        for i in range(self.cfg.g_steps):
            # Algorithm 1 draws new noise for G; reusing D's fakes (the common shortcut) is an option.
            if self.parts.loss.kind == "elbo":
                fake = None  # a VAE learns from data alone
            elif fake is None or self.cfg.fresh_g_noise or i > 0:
                fake = self._fake(b)
            out.update(self.g_update(fake))
        self.step_num += 1
        return out

    # -- the loop ---------------------------------------------------------------------------

    def _emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    def fit(self, steps: int | None = None) -> None:
        """Train until ``steps`` iterations are done (counting those of a resumed run)."""
        total = steps if steps is not None else self.cfg.steps
        self.G.train()
        if self.D is not None:
            self.D.train()
        self._emit("on_train_start")
        while self.step_num < total and self.stop_reason is None:
            self.want_stats = any(getattr(cb, "wants_stats", lambda t: False)(self) for cb in self.callbacks)
            out = self.step()
            self._emit("on_step_end", out)
        self._emit("on_train_end")

    # -- state for checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step_num,
            "d_updates": self.d_updates,
            "began_k": self.began_k,
            "generator": self.G.state_dict(),
            "opt_g": self.parts.opt_g.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.D is not None:
            state["discriminator"] = self.D.state_dict()
            assert self.parts.opt_d is not None
            state["opt_d"] = self.parts.opt_d.state_dict()
        if hasattr(self.parts.data, "state_dict"):
            state["data"] = self.parts.data.state_dict()
        state["callbacks"] = {type(cb).__name__: cb.state_dict() for cb in self.callbacks
                              if hasattr(cb, "state_dict")}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_num = int(state["step"])
        self.d_updates = int(state["d_updates"])
        self.began_k = float(state["began_k"])
        self.G.load_state_dict(state["generator"])
        self.parts.opt_g.load_state_dict(state["opt_g"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.D is not None:
            self.D.load_state_dict(state["discriminator"])
            assert self.parts.opt_d is not None
            self.parts.opt_d.load_state_dict(state["opt_d"])
        if "data" in state and hasattr(self.parts.data, "load_state_dict"):
            self.parts.data.load_state_dict(state["data"])
        for cb in self.callbacks:
            s = state.get("callbacks", {}).get(type(cb).__name__)
            if s is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(s)
