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
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import LossConfig, TechniquesConfig, TrainConfig
from ganforge.losses.adversarial import AdversarialLoss, began_convergence, began_k_update, mmd2
from ganforge.nn.techniques import diff_augment


class DataSource(Protocol):
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


class Prior:
    """The noise prior p_z (standard normal, or uniform on [-1, 1]) and any codes G is given.

    A sample is one vector ``[z, one-hot class, continuous codes]``: ``classes`` > 0 adds a uniformly
    drawn one-hot label (conditional GANs; InfoGAN's categorical code) and ``continuous`` adds codes
    uniform on [-1, 1] (InfoGAN). A generator simply takes the whole vector, so sampling, export and
    evaluation treat conditional and unconditional models alike.
    """

    def __init__(self, kind: str, dim: int, classes: int = 0, continuous: int = 0,
                 class_probs: list[float] | None = None) -> None:
        from ganforge.registry import ConfigError
        if kind not in ("normal", "uniform"):
            raise ConfigError(f"model.noise: unknown prior '{kind}' (choices: normal, uniform)")
        if class_probs and (len(class_probs) != classes or min(class_probs) < 0 or sum(class_probs) <= 0):
            raise ConfigError(f"model.class_probs: need {classes} non-negative numbers, got {len(class_probs)}")
        self.kind, self.z_dim, self.classes, self.continuous = kind, dim, classes, continuous
        # Labels are drawn uniformly unless the classes have known frequencies (self-conditioning).
        self.class_probs = torch.tensor(class_probs, dtype=torch.float64) if class_probs else None
        self.dim = dim + classes + continuous  # the generator's input width

    def sample(self, n: int, generator: torch.Generator | None = None, device: Any = "cpu",
               labels: Tensor | None = None) -> Tensor:
        """``n`` input vectors; ``labels`` (n,) fixes the class codes instead of drawing them."""
        if self.kind == "normal":
            z = torch.randn(n, self.z_dim, generator=generator, device=device)
        else:
            z = torch.rand(n, self.z_dim, generator=generator, device=device) * 2 - 1
        if not self.classes and not self.continuous:
            return z
        parts = [z]
        if self.classes:
            if labels is None and self.class_probs is not None:
                labels = torch.multinomial(self.class_probs, n, replacement=True, generator=generator)
            elif labels is None:
                labels = torch.randint(self.classes, (n,), generator=generator, device=device)
            parts.append(F.one_hot(labels.to(device).long(), self.classes).to(z.dtype))
        if self.continuous:
            parts.append(torch.rand(n, self.continuous, generator=generator, device=device) * 2 - 1)
        return torch.cat(parts, dim=1)

    def codes(self, v: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The one-hot class part and the continuous part of sampled vectors (None where absent)."""
        one_hot = v[:, self.z_dim:self.z_dim + self.classes] if self.classes else None
        cont = v[:, self.z_dim + self.classes:] if self.continuous else None
        return one_hot, cont


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
    conditioning: Any = None  # a training.conditioning.Conditioning for conditional / InfoGAN models
    g_history: Any = None  # historical averaging of G's weights (nn.techniques.HistoricalAverage)


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
        self._d_trainable = [p for p in self._d_params if p.requires_grad]
        tech = parts.techniques
        self._channels_last = cfg.channels_last and len(parts.data.shape) == 3
        if self._channels_last:
            for m in (self.G, self.D):
                if m is not None:
                    m.to(memory_format=torch.channels_last)
        if cfg.autocast not in ("none", "bf16"):
            from ganforge.registry import ConfigError
            raise ConfigError(f"train.autocast: unknown mode '{cfg.autocast}' (choices: none, bf16)")
        self._noise_anneal = tech.instance_noise_anneal_steps or cfg.steps

    # -- the step ---------------------------------------------------------------------------

    def _amp(self) -> torch.autocast:
        """bf16 autocast for forward passes when configured (losses are computed in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast == "bf16")

    def _to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _real(self, n: int) -> Tensor:
        return self._to_device(self.parts.data.sample(n, self.rng))

    def _real_labeled(self, n: int) -> tuple[Tensor, Tensor | None]:
        """A real minibatch and, when the conditioning needs them, its labels."""
        cond = self.parts.conditioning
        if cond is None or not cond.needs_real_labels:
            return self._real(n), None
        x, y = self.parts.data.sample_labeled(n, self.rng)
        return self._to_device(x), y.to(self.device, non_blocking=True)

    def _fake(self, n: int) -> tuple[Tensor, Tensor]:
        """A fake minibatch and G's input vectors (noise and any codes)."""
        v = self.parts.prior.sample(n, self.rng).to(self.device, non_blocking=True)
        with self._amp():
            return self.G(v), v

    def _d_out(self, x: Tensor, c: Tensor | None = None, features: bool = False) -> tuple[Tensor, Tensor | None]:
        """D's output (and its features, for auxiliary heads); ``c`` is the label D sees, if any."""
        assert self.D is not None
        args = (x,) if c is None else (x, c)
        with self._amp():
            out, h = self.D.forward_features(*args) if features else (self.D(*args), None)
        out = out.float()
        # A user D ending in Linear(h, 1) gives (n, 1); the losses take (n,), and (n, 1) would
        # broadcast against per-sample targets (label smoothing/flipping) into an (n, n) loss.
        return (out.squeeze(1) if out.dim() == 2 and out.shape[1] == 1 else out), h

    def d_update(self, real: Tensor, fake: Tensor, labels: Tensor | None = None,
                 codes: Tensor | None = None) -> dict[str, Tensor]:
        """One discriminator update on a real and a (detached) fake minibatch; ``labels`` of the
        real images and G's input ``codes`` matter only to conditional models."""
        parts, tech, cond = self.parts, self.parts.techniques, self.parts.conditioning
        std = instance_noise_std(tech.instance_noise, self.step_num, self._noise_anneal)
        if std > 0:
            real = real + std * torch.randn(real.shape, generator=self.rng).to(real)
            fake = fake + std * torch.randn(fake.shape, generator=self.rng).to(fake)
        if tech.diff_augment:  # the same kind of augmentation for real and fake, fresh draws for each
            real = diff_augment(real, tech.diff_augment, self.rng)
            fake = diff_augment(fake, tech.diff_augment, self.rng)
        c_real = cond.real_input(labels) if cond is not None else None
        c_fake = cond.fake_input(codes) if cond is not None and codes is not None else None
        heads = cond is not None and cond.needs_features
        (d_real, h_real), (d_fake, h_fake) = self._d_out(real, c_real, heads), self._d_out(fake, c_fake, heads)
        if parts.loss.soft_targets and (tech.label_smoothing or tech.label_flip):
            rt, ft = d_targets(len(real), tech.label_smoothing, tech.label_flip, self.rng, device=d_real.device)
            loss = parts.loss.d_loss(d_real, d_fake, real_target=rt, fake_target=ft)
        elif parts.loss.kind == "energy":
            loss = parts.loss.d_loss(d_real, d_fake, k=self.began_k)
        else:
            loss = parts.loss.d_loss(d_real, d_fake)
        out = {"d_loss": loss.detach()}
        if cond is not None and codes is not None and cond.needs_features:
            aux = cond.d_loss(h_real, labels, h_fake, codes)
            out["aux_d"] = aux.detach()
            loss = loss + aux
        for reg in parts.regularizers:
            if hasattr(reg, "penalty") and self.d_updates % reg.interval == 0:
                # A label-conditioned D is penalized at the real images' labels.
                pen = reg.penalty(self.D, real, fake, c=c_real, generator=self.rng)
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

    def g_loss(self, fake: Tensor | None, codes: Tensor | None = None) -> Tensor:
        parts, tech, cond = self.parts, self.parts.techniques, self.parts.conditioning
        if parts.loss.kind == "elbo":
            loss, self._elbo_terms = self.G.negative_elbo(self._real(self.cfg.batch_size), self.rng)
            return loss
        assert fake is not None
        n = len(fake)
        if tech.diff_augment and self.D is not None:  # G is judged through the same augmentation as D sees
            fake = diff_augment(fake, tech.diff_augment, self.rng)
        if parts.loss.kind == "moment":
            real = self._real(n)
            return mmd2(real, fake, parts.loss_cfg.mmd_bandwidths)
        if tech.feature_matching:
            features: Callable[[Tensor], Tensor] = self.D.features
            with torch.no_grad():
                f_real = features(self._real(n)).mean(0)
            return ((features(fake).mean(0) - f_real) ** 2).sum()
        if cond is None or codes is None:
            return parts.loss.g_loss(self._d_out(fake)[0])
        d_fake, h_fake = self._d_out(fake, cond.fake_input(codes), cond.needs_features)
        return parts.loss.g_loss(d_fake) + cond.g_loss(h_fake, codes)

    def g_update(self, fake: Tensor | None, codes: Tensor | None = None) -> dict[str, Tensor]:
        """One generator update on a fake minibatch that still carries G's graph (None for a VAE)."""
        # D's weights need no gradient in G's step: skipping them saves a third of D's backward pass.
        for p in self._d_trainable:
            p.requires_grad_(False)
        try:
            loss = self.g_loss(fake, codes)
            out = {"g_loss": loss.detach()}
            if self.parts.g_history is not None:
                loss = loss + self.parts.g_history.penalty()
            self.parts.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            for p in self._d_trainable:
                p.requires_grad_(True)
        if self.parts.loss.kind == "elbo":
            out.update(self._elbo_terms)
        if self.want_stats:
            out["grad_norm_g"] = grad_norm(self._g_params)
        self.parts.opt_g.step()
        if self.parts.g_history is not None:
            self.parts.g_history.update()
        return out

    def step(self) -> dict[str, Tensor]:
        """One iteration of Algorithm 1; returns detached scalars."""
        b, out, fake, codes = self.cfg.batch_size, {}, None, None
        if self.D is not None:
            for _ in range(self.cfg.d_steps):
                fake, codes = self._fake(b)
                real, labels = self._real_labeled(b)
                out.update(self.d_update(real, fake.detach(), labels, codes))
        for i in range(self.cfg.g_steps):
            # Algorithm 1 draws new noise for G; reusing D's fakes (the common shortcut) is an option.
            if self.parts.loss.kind == "elbo":
                fake = None  # a VAE learns from data alone
            elif fake is None or self.cfg.fresh_g_noise or i > 0:
                fake, codes = self._fake(b)
            out.update(self.g_update(fake, codes))
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
        state["regularizers"] = {str(i): r.state_dict() for i, r in enumerate(self.parts.regularizers)
                                 if hasattr(r, "state_dict")}
        if self.parts.g_history is not None:
            state["g_history"] = self.parts.g_history.state_dict()
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
        for i, reg in enumerate(self.parts.regularizers):
            if str(i) in state.get("regularizers", {}):
                reg.load_state_dict(state["regularizers"][str(i)])
        if self.parts.g_history is not None and "g_history" in state:
            self.parts.g_history.load_state_dict(state["g_history"])
        for cb in self.callbacks:
            s = state.get("callbacks", {}).get(type(cb).__name__)
            if s is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(s)
