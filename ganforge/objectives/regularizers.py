"""Regularizers of D: separate objects with an interval, never folded into the losses.

A penalty is computed unscaled; the objective applies lazy regularization the same way for every
regularizer (an interval of N: the penalty runs in its own phase every N iterations, scaled by the
number of D updates it stands for), as stylegan2-ada-pytorch's ``Dreg`` phase does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge.nn import call_d


@dataclass
class GradientPenalty:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)|| - 1)^2] on interpolates.

    With PacGAN packing (``pack`` > 1, D judges packs of that many samples) one interpolation
    coefficient is drawn per pack and the norm is taken over the whole pack, as CTGAN does: the
    penalty constrains D as a function of what it judges."""

    weight: float = 10.0
    interval: int = 1
    pack: int = 1
    # CTGAN interpolates D's whole input, [x, c] of a real and a fake sample, and takes the norm
    # over both; otherwise the interpolates are judged under the real samples' conditions.
    interpolate_condition: bool = False

    def penalty(self, d: nn.Module, real: Tensor, fake: Tensor, c: Tensor | None = None,
                generator: torch.Generator | None = None, c_fake: Tensor | None = None) -> Tensor:
        n = real.shape[0]
        shape = (n // self.pack,) + (1,) * (real.dim() - 1)
        # Drawn where the seeded generator lives (the trainer's is on the CPU), then moved.
        gen_device = generator.device if generator is not None else real.device
        eps = torch.rand(shape, generator=generator, device=gen_device, dtype=real.dtype).to(real.device)
        if self.pack > 1:
            eps = eps.repeat_interleave(self.pack, dim=0)
        x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        inputs = [x_hat]
        if self.interpolate_condition and c is not None and c_fake is not None:
            e = eps.reshape(n, *([1] * (c.dim() - 1)))
            c = (e * c.detach() + (1 - e) * c_fake.detach()).requires_grad_(True)
            inputs.append(c)
        out = call_d(d, x_hat, c)
        grads = torch.autograd.grad(out.sum(), inputs, create_graph=True)
        grad = torch.cat([g.reshape(n // self.pack, -1) for g in grads], dim=1)
        return self.weight * ((grad.norm(dim=1) - 1.0) ** 2).mean()


@dataclass
class R1Penalty:
    """R1 (Mescheder et al. 2018): gamma / 2 * E[||grad D(x)||^2] on real data."""

    gamma: float = 10.0
    interval: int = 1

    def penalty(self, d: nn.Module, real: Tensor, fake: Tensor, c: Tensor | None = None,
                generator: torch.Generator | None = None, c_fake: Tensor | None = None) -> Tensor:
        x = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(call_d(d, x, c).sum(), x, create_graph=True)
        return self.gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()


@dataclass
class WeightClip:
    """WGAN (Arjovsky et al. 2017): clamp every D parameter to [-c, c] after each D update."""

    clip: float = 0.01
    interval: int = 1

    @torch.no_grad()
    def after_step(self, d: nn.Module) -> None:
        for p in d.parameters():
            p.clamp_(-self.clip, self.clip)
