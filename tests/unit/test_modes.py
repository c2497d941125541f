"""Mode metrics on hand-built samples, and the toy data sets' modes, spreads and densities."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from ganforge.data import DATASETS, build_dataset
from ganforge.data.toy import gaussian1d, grid2d, mixture1d, ring2d
from ganforge.metrics import mode_metrics


def ring_modes() -> torch.Tensor:
    return torch.tensor([[math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)] for i in range(8)])


# -- mode_metrics ------------------------------------------------------------------------------------


def test_all_modes_equally():
    modes = ring_modes()
    samples = modes.repeat(25, 1)  # 200 samples, 25 exactly on each mode
    m = mode_metrics(samples, modes, std=0.01)
    assert m["modes_captured"] == 8 and m["modes_total"] == 8
    assert m["high_quality_fraction"] == 1.0
    assert m["reverse_kl_modes"] == pytest.approx(0.0, abs=1e-12)


def test_all_samples_on_one_mode():
    modes = ring_modes()
    samples = modes[3].repeat(100, 1)
    m = mode_metrics(samples, modes, std=0.01)
    assert m["modes_captured"] == 1
    assert m["high_quality_fraction"] == 1.0
    assert m["reverse_kl_modes"] == pytest.approx(math.log(8))


def test_two_modes_half_and_half():
    modes = ring_modes()
    samples = torch.cat([modes[0].repeat(50, 1), modes[5].repeat(50, 1)])
    m = mode_metrics(samples, modes, std=0.01)
    assert m["modes_captured"] == 2
    # q = (1/2, 1/2) on two modes: KL = log(8 / 2)
    assert m["reverse_kl_modes"] == pytest.approx(math.log(4))


def test_samples_far_from_every_mode():
    modes = ring_modes()
    samples = torch.full((100, 2), 5.0)
    m = mode_metrics(samples, modes, std=0.01)
    assert m["high_quality_fraction"] == 0.0
    assert m["modes_captured"] == 0
    # the centre of the ring is 1 from every mode: 100 std, not high quality either
    assert mode_metrics(torch.zeros(10, 2), modes, std=0.01)["high_quality_fraction"] == 0.0


def test_half_the_samples_off_mode():
    modes = ring_modes()
    on = modes.repeat(10, 1)  # 80 on the modes
    off = torch.zeros(80, 2)  # 80 at the centre
    m = mode_metrics(torch.cat([on, off]), modes, std=0.01)
    assert m["high_quality_fraction"] == 0.5
    assert m["modes_captured"] == 8
    assert m["reverse_kl_modes"] == pytest.approx(0.0, abs=1e-12)  # the histogram counts hq samples only


def test_threshold_is_in_standard_deviations():
    modes = ring_modes()
    near = modes[0] + torch.tensor([0.025, 0.0])  # 2.5 std away
    far = modes[0] + torch.tensor([0.035, 0.0])  # 3.5 std away
    assert mode_metrics(near[None], modes, std=0.01)["high_quality_fraction"] == 1.0
    assert mode_metrics(far[None], modes, std=0.01)["high_quality_fraction"] == 0.0
    assert mode_metrics(far[None], modes, std=0.01, threshold=4.0)["high_quality_fraction"] == 1.0


# -- the toy data sets ---------------------------------------------------------------------------------


def test_ring_has_8_modes_on_the_unit_circle():
    ring = ring2d()
    assert ring.shape == (2,)
    assert ring.modes.shape == (8, 2)
    torch.testing.assert_close(ring.modes.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(ring.modes, ring_modes())
    torch.testing.assert_close(ring.stds, torch.full((8,), 0.01))
    torch.testing.assert_close(ring.weights, torch.full((8,), 1 / 8))


def test_grid_has_25_modes_spaced_2_apart():
    grid = grid2d()
    assert grid.modes.shape == (25, 2)
    expected = {(float(a), float(b)) for a, b in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
    assert {(float(a), float(b)) for a, b in grid.modes.tolist()} == expected
    torch.testing.assert_close(grid.stds, torch.full((25,), 0.05))


@pytest.mark.parametrize(("name", "std", "n_modes"), [("ring2d", 0.01, 8), ("grid2d", 0.05, 25)])
def test_samples_have_the_specified_spread(name, std, n_modes):
    data = build_dataset(name, {})
    x = data.sample(40000, torch.Generator().manual_seed(0))
    assert x.shape == (40000, 2)
    nearest = torch.cdist(x, data.modes).argmin(1)
    offsets = x - data.modes[nearest]
    assert offsets.std(0).sub(std).abs().max().item() < 0.03 * std
    assert offsets.mean(0).abs().max().item() < 0.05 * std
    counts = torch.bincount(nearest, minlength=n_modes).double()
    assert counts.min() > 0
    assert counts.div(counts.sum()).sub(1 / n_modes).abs().max().item() < 0.01
    m = mode_metrics(x, data.modes, std)
    assert m["modes_captured"] == n_modes
    assert m["high_quality_fraction"] > 0.98
    assert m["reverse_kl_modes"] < 0.01


def test_sampling_is_reproducible_with_a_seeded_generator():
    a = ring2d().sample(100, torch.Generator().manual_seed(3))
    b = ring2d().sample(100, torch.Generator().manual_seed(3))
    c = ring2d().sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_toy_data_sets_are_registered():
    assert {"gaussian1d", "mixture1d", "ring2d", "grid2d"} <= set(DATASETS.keys())


@pytest.mark.parametrize("mixture", [mixture1d(), gaussian1d(), mixture1d([-1.0, 3.0], [0.3, 1.0], [0.2, 0.8])])
def test_log_prob_integrates_to_one_in_1d(mixture):
    grid = torch.linspace(-12.0, 12.0, 24001)
    density = mixture.log_prob(grid[:, None]).exp().double().numpy()
    assert integrate.trapezoid(density, grid.double().numpy()) == pytest.approx(1.0, abs=1e-4)


def test_log_prob_matches_scipy_for_one_gaussian():
    g = gaussian1d(mean=4.0, std=0.5)
    x = torch.linspace(1.0, 7.0, 61)
    expected = stats.norm(loc=4.0, scale=0.5).logpdf(x.double().numpy())
    np.testing.assert_allclose(g.log_prob(x[:, None]).double().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.prob(x[:, None]).double().numpy(), np.exp(expected), rtol=1e-5, atol=1e-8)


def test_log_prob_matches_scipy_for_a_weighted_mixture():
    mix = mixture1d([-1.0, 3.0], [0.3, 1.0], [0.2, 0.8])
    x = np.linspace(-3.0, 6.0, 91)
    expected = np.log(0.2 * stats.norm(-1.0, 0.3).pdf(x) + 0.8 * stats.norm(3.0, 1.0).pdf(x))
    np.testing.assert_allclose(mix.log_prob(torch.tensor(x)[:, None]).double().numpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_log_prob_matches_scipy_in_2d():
    ring = ring2d()
    x = ring.modes[:3] + 0.005
    mvn = [stats.multivariate_normal(mean=m, cov=0.01 ** 2 * np.eye(2)) for m in ring.modes.double().numpy()]
    expected = np.log(sum(d.pdf(x.double().numpy()) for d in mvn) / 8)
    np.testing.assert_allclose(ring.log_prob(x).double().numpy(), expected, rtol=1e-4)
