"""Adversarial losses as small pure functions of D's outputs.

``d_loss(real, fake)`` and ``g_loss(fake)`` take D's raw outputs (logits for the probabilistic
losses, critic values for the Wasserstein and hinge losses) and return a scalar. They never call
backward. Each is registered in :data:`LOSSES` and used by the adversarial objective
(:mod:`ganforge.objectives.adversarial`); BEGAN's and MMD's functions live here too and are used
by their own objectives.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.registry import Registry

Target = float | Tensor


def bce_d_loss(real: Tensor, fake: Tensor, real_target: Target = 1.0, fake_target: Target = 0.0) -> Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))] with optional soft or flipped targets."""
    rt = torch.as_tensor(real_target, dtype=real.dtype, device=real.device).expand_as(real)
    ft = torch.as_tensor(fake_target, dtype=fake.dtype, device=fake.device).expand_as(fake)
    return (F.binary_cross_entropy_with_logits(real, rt) + F.binary_cross_entropy_with_logits(fake, ft))


def minimax_g_loss(fake: Tensor) -> Tensor:
    """The paper's saturating objective: G minimizes E[log(1 - D(G(z)))] = -E[softplus(logit)]."""
    return -F.softplus(fake).mean()


def nonsaturating_g_loss(fake: Tensor) -> Tensor:
    """The paper's practical alternative: G maximizes E[log D(G(z))], i.e. minimizes softplus(-logit)."""
    return F.softplus(-fake).mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The critic maximizes E[D(x)] - E[D(G(z))]."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


def lsgan_d_loss(real: Tensor, fake: Tensor, real_target: Target = 1.0, fake_target: Target = 0.0) -> Tensor:
    """Least squares (Mao et al. 2017) with a-b-c coding a=0, b=1: 1/2 E[(D(x)-b)^2] + 1/2 E[(D(G(z))-a)^2]."""
    return 0.5 * ((real - real_target) ** 2).mean() + 0.5 * ((fake - fake_target) ** 2).mean()


def lsgan_g_loss(fake: Tensor) -> Tensor:
    """1/2 E[(D(G(z)) - c)^2] with c = 1."""
    return 0.5 * ((fake - 1.0) ** 2).mean()


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def began_d_loss(real: Tensor, fake: Tensor, k: float = 0.0) -> Tensor:
    """BEGAN: D's outputs are auto-encoder reconstruction errors; L_D = L(x) - k_t L(G(z))."""
    return real.mean() - k * fake.mean()


def began_g_loss(fake: Tensor) -> Tensor:
    """L_G = L(G(z))."""
    return fake.mean()


def began_k_update(k: float, real_err: float, fake_err: float, gamma: float, lambda_k: float) -> float:
    """k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)."""
    return min(max(k + lambda_k * (gamma * real_err - fake_err), 0.0), 1.0)


def began_convergence(real_err: float, fake_err: float, gamma: float) -> float:
    """The convergence measure M = L(x) + |gamma L(x) - L(G(z))|."""
    return real_err + abs(gamma * real_err - fake_err)


def mmd2(x: Tensor, y: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Biased (V-statistic) squared MMD with a mixture of Gaussian kernels exp(-|a-b|^2 / (2 s^2))."""
    x, y = x.flatten(1), y.flatten(1)
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()


@dataclass(frozen=True)
class AdversarialLoss:
    """A registered loss: its two functions and how to read D's outputs.

    ``kind`` is ``"logit"`` (outputs are logits; D(x) is a probability) or ``"critic"`` (unbounded
    scores, or BEGAN's reconstruction errors). ``soft_targets`` says whether label smoothing and
    label flipping apply (then ``d_loss`` takes ``real_target`` and ``fake_target``).
    """

    name: str
    d_loss: Callable[..., Tensor]
    g_loss: Callable[[Tensor], Tensor]
    kind: str = "logit"
    soft_targets: bool = False
    description: str = ""


LOSSES: Registry[AdversarialLoss] = Registry("loss")


def register_loss(loss: AdversarialLoss) -> AdversarialLoss:
    """Register a user-defined :class:`AdversarialLoss` under ``loss.name``."""
    return LOSSES.register(loss.name, loss, help=loss.description)


for _loss in (
    AdversarialLoss("minimax", bce_d_loss, minimax_g_loss, "logit", True,
                    "the original saturating game: G minimizes log(1 - D(G(z)))"),
    AdversarialLoss("nonsaturating", bce_d_loss, nonsaturating_g_loss, "logit", True,
                    "the original paper's practical G loss: maximize log D(G(z))"),
    AdversarialLoss("wasserstein", wasserstein_d_loss, wasserstein_g_loss, "critic", False,
                    "Wasserstein critic: pair with weight_clip (WGAN) or gradient_penalty (WGAN-GP)"),
    AdversarialLoss("lsgan", lsgan_d_loss, lsgan_g_loss, "critic", True,
                    "least squares GAN (Mao et al. 2017)"),
    AdversarialLoss("hinge", hinge_d_loss, wasserstein_g_loss, "critic", False,
                    "hinge loss for D, -D(G(z)) for G"),
):
    register_loss(_loss)
