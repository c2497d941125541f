"""The integration helpers of the theory demo, against values known by hand.

JSD of identical densities is 0 and of disjoint ones log 2; KL of two Gaussians has a closed form;
V(G, D*) = -log 4 + 2 JSD (Theorem 1) for two known Gaussians; D* maximizes V (Proposition 1).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from ganforge.demos.theory import (
    AffineGenerator,
    jensen_shannon,
    kl_divergence,
    optimal_discriminator,
    optimal_logit,
    significant_region,
    value_function,
)

X = np.linspace(-30.0, 30.0, 60001)


def gauss(mean: float, std: float) -> np.ndarray:
    return norm.pdf(X, mean, std)


def test_jsd_of_identical_densities_is_zero() -> None:
    p = gauss(4.0, 0.5)
    assert jensen_shannon(p, p, X) == pytest.approx(0.0, abs=1e-12)


def test_jsd_of_disjoint_densities_is_log2() -> None:
    # 40 standard deviations apart: the overlap is far below double precision.
    assert jensen_shannon(gauss(-20.0, 1.0), gauss(20.0, 1.0), X) == pytest.approx(math.log(2), abs=1e-9)


def test_jsd_is_symmetric_and_between_0_and_log2() -> None:
    p, q = gauss(4.0, 0.5), gauss(3.5, 0.8)
    j = jensen_shannon(p, q, X)
    assert 0 < j < math.log(2)
    assert jensen_shannon(q, p, X) == pytest.approx(j, abs=1e-12)


def test_kl_of_two_gaussians_matches_closed_form() -> None:
    m1, s1, m2, s2 = 4.0, 0.5, 3.5, 0.8
    exact = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert kl_divergence(gauss(m1, s1), gauss(m2, s2), X) == pytest.approx(exact, abs=1e-9)


def test_value_at_dstar_is_minus_log4_plus_2jsd() -> None:
    log_p, log_q = norm.logpdf(X, 4.0, 0.5), norm.logpdf(X, 3.5, 0.8)
    p, q = np.exp(log_p), np.exp(log_q)
    v_star = value_function(X, p, q, optimal_logit(log_p, log_q))
    assert v_star == pytest.approx(-math.log(4) + 2 * jensen_shannon(p, q, X), abs=1e-8)


def test_value_at_p_g_equal_p_data_is_minus_log4() -> None:
    # Theorem 1's global minimum: p_g = p_data, D* = 1/2 (logit 0), V = -log 4.
    p = gauss(0.0, 1.0)
    assert value_function(X, p, p, np.zeros_like(X)) == pytest.approx(-math.log(4), abs=1e-9)


@pytest.mark.parametrize("shift", [-1.0, -0.2, 0.3, 2.0])
def test_dstar_maximizes_value(shift: float) -> None:
    log_p, log_q = norm.logpdf(X, 4.0, 0.5), norm.logpdf(X, 3.5, 0.8)
    p, q = np.exp(log_p), np.exp(log_q)
    best = optimal_logit(log_p, log_q)
    bumped = best + shift * np.exp(-((X - 4.0) ** 2))
    assert value_function(X, p, q, bumped) < value_function(X, p, q, best)


def test_optimal_discriminator_values() -> None:
    p = np.array([1.0, 0.0, 0.3, 0.0])
    q = np.array([1.0, 2.0, 0.1, 0.0])
    np.testing.assert_allclose(optimal_discriminator(p, q), [0.5, 0.0, 0.75, 0.5])


def test_value_function_ignores_points_without_mass() -> None:
    # D = 0 (logit -inf) where p_data = 0 and D = 1 where p_g = 0 is optimal and costs nothing.
    x = np.linspace(0.0, 3.0, 3001)
    p = np.where(x < 1.0, 1.0, 0.0)
    q = np.where(x > 2.0, 1.0, 0.0)
    logit = np.where(x < 1.0, np.inf, np.where(x > 2.0, -np.inf, 0.0))
    assert value_function(x, p, q, logit) == pytest.approx(0.0, abs=1e-12)


def test_significant_region_of_a_standard_normal() -> None:
    p = gauss(0.0, 1.0)
    _, lo, hi = significant_region(X, p, p, fraction=0.01)
    edge = math.sqrt(2 * math.log(100))  # exp(-x^2 / 2) = 0.01
    assert lo == pytest.approx(-edge, abs=2e-3) and hi == pytest.approx(edge, abs=2e-3)


def test_affine_generator_density_is_gaussian() -> None:
    g = AffineGenerator(0.8, 3.5)
    np.testing.assert_allclose(g.log_prob(X[::100]), norm.logpdf(X[::100], 3.5, 0.8))
