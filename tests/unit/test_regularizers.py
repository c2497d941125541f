"""D's regularizers on a linear critic D(x) = w.x + b, whose input gradient is w everywhere."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.objectives.regularizers import GradientPenalty, R1Penalty, WeightClip


class Linear(nn.Module):
    def __init__(self, w: list[float], b: float = 0.3) -> None:
        super().__init__()
        self.lin = nn.Linear(len(w), 1).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
            self.lin.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).squeeze(1)


def batches(n: int = 16, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, dim, generator=g, dtype=torch.float64),
            torch.randn(n, dim, generator=g, dtype=torch.float64) * 3)


@pytest.mark.parametrize("w", [[3.0, 4.0, 0.0], [0.1, -0.2, 0.2], [1.0, 0.0, 0.0]])
def test_gradient_penalty_on_a_linear_critic(w):
    real, fake = batches()
    norm = math.sqrt(sum(v * v for v in w))
    pen = GradientPenalty(weight=10.0).penalty(Linear(w), real, fake)
    assert float(pen.detach()) == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-9, abs=1e-12)


def test_gradient_penalty_is_differentiable_in_d_weights():
    real, fake = batches()
    d = Linear([3.0, 4.0, 0.0])
    GradientPenalty(weight=2.0).penalty(d, real, fake).backward()
    # d/dw of 2 (|w| - 1)^2 = 4 (|w| - 1) w / |w| = 4 * 4 / 5 * w
    expected = torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64) * 4 * 4 / 5
    torch.testing.assert_close(d.lin.weight.grad, expected)


@pytest.mark.parametrize("gamma", [10.0, 0.5])
def test_r1_on_a_linear_critic(gamma):
    real, fake = batches()
    pen = R1Penalty(gamma=gamma, interval=1).penalty(Linear([3.0, 4.0, 0.0]), real, fake)
    assert float(pen.detach()) == pytest.approx(gamma / 2 * 25.0, rel=1e-9)


def test_a_penalty_is_unscaled_by_its_interval():
    """Lazy regularization is scaled by the objective, the same way for every penalty
    (tests/unit/test_defects.py::test_lazy_regularization_is_scaled_by_its_interval_for_every_regularizer)."""
    real, fake = batches()
    for interval in (1, 4):
        pen = R1Penalty(gamma=1.0, interval=interval).penalty(Linear([3.0, 4.0, 0.0]), real, fake)
        assert float(pen.detach()) == pytest.approx(0.5 * 25.0, rel=1e-9)
        gp = GradientPenalty(weight=1.0, interval=interval).penalty(Linear([3.0, 4.0, 0.0]), real, fake)
        assert float(gp.detach()) == pytest.approx((5.0 - 1.0) ** 2, rel=1e-9)


def test_r1_uses_real_data_only():
    real, fake = batches()

    class Quadratic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x ** 2).sum(1)  # grad = x

    pen = R1Penalty(gamma=2.0).penalty(Quadratic(), real, fake)
    assert float(pen.detach()) == pytest.approx(float((real ** 2).sum(1).mean()), rel=1e-9)


def test_weight_clip_clamps_every_parameter():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(100.0)
    assert max(float(p.detach().abs().max()) for p in d.parameters()) > 0.5
    before = [p.detach().clone() for p in d.parameters()]
    WeightClip(clip=0.25).after_step(d)
    for p, old in zip(d.parameters(), before, strict=True):
        assert float(p.detach().abs().max()) <= 0.25
        torch.testing.assert_close(p.detach(), old.clamp(-0.25, 0.25))
    # values already inside stay as they are, and some were clipped at each bound
    flat = torch.cat([p.detach().flatten() for p in d.parameters()])
    assert (flat == 0.25).any() and (flat == -0.25).any()
