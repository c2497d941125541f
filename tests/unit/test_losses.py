"""Adversarial losses against values computed by hand with ``math`` on small fixed tensors."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.objectives import OBJECTIVES, objective_name
from ganforge.objectives.losses import (
    LOSSES,
    AdversarialLoss,
    bce_d_loss,
    began_convergence,
    began_d_loss,
    began_g_loss,
    began_k_update,
    hinge_d_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    minimax_g_loss,
    mmd2,
    nonsaturating_g_loss,
    register_loss,
    wasserstein_d_loss,
    wasserstein_g_loss,
)
from ganforge.registry import ConfigError, Registry

REAL = [0.0, 1.0, -2.0]
FAKE = [0.5, -1.0]


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def close(actual: torch.Tensor | float, expected: float, tol: float = 1e-9) -> bool:
    return math.isclose(float(actual), expected, rel_tol=tol, abs_tol=tol)


# -- the original game -----------------------------------------------------------------------


def test_minimax_d_loss_by_hand():
    expected = -mean([math.log(sig(r)) for r in REAL]) - mean([math.log(1 - sig(f)) for f in FAKE])
    assert close(bce_d_loss(t(REAL), t(FAKE)), expected)
    assert close(LOSSES.get("minimax").d_loss(t(REAL), t(FAKE)), expected)


def test_minimax_g_loss_is_the_saturating_objective():
    # G minimizes E[log(1 - D(G(z)))] with D = sigmoid(logit).
    expected = mean([math.log(1 - sig(f)) for f in FAKE])
    assert close(minimax_g_loss(t(FAKE)), expected)
    assert LOSSES.get("minimax").g_loss is minimax_g_loss
    # Saturating: the loss goes down when D is fooled more (higher logit).
    assert minimax_g_loss(t([2.0])) < minimax_g_loss(t([-2.0]))


def test_minimax_g_gradient_saturates_when_d_rejects_fakes():
    # The paper's motivation for the non-saturating loss: with D(G(z)) ~ 0 the minimax gradient vanishes.
    low = t([-10.0]).requires_grad_(True)
    minimax_g_loss(low).backward()
    low_ns = t([-10.0]).requires_grad_(True)
    nonsaturating_g_loss(low_ns).backward()
    assert abs(float(low.grad)) < 1e-4
    assert abs(float(low_ns.grad)) > 0.99


def test_nonsaturating_g_loss_by_hand():
    expected = -mean([math.log(sig(f)) for f in FAKE])
    assert close(nonsaturating_g_loss(t(FAKE)), expected)
    ns = LOSSES.get("nonsaturating")
    assert ns.g_loss is nonsaturating_g_loss
    assert close(ns.d_loss(t(REAL), t(FAKE)), -mean([math.log(sig(r)) for r in REAL])
                 - mean([math.log(1 - sig(f)) for f in FAKE]))


def test_bce_d_loss_with_one_sided_label_smoothing():
    s = 0.9
    expected = (-mean([s * math.log(sig(r)) + (1 - s) * math.log(1 - sig(r)) for r in REAL])
                - mean([math.log(1 - sig(f)) for f in FAKE]))
    assert close(bce_d_loss(t(REAL), t(FAKE), real_target=0.9), expected)


def test_bce_d_loss_with_per_sample_targets():
    rt, ft = t([1.0, 0.0, 0.9]), t([0.9, 0.0])
    def bce(logits: list[float], targets: list[float]) -> float:
        return -mean([y * math.log(sig(v)) + (1 - y) * math.log(1 - sig(v))
                      for v, y in zip(logits, targets, strict=True)])

    expected = bce(REAL, [1.0, 0.0, 0.9]) + bce(FAKE, [0.9, 0.0])
    assert close(bce_d_loss(t(REAL), t(FAKE), real_target=rt, fake_target=ft), expected)


# -- Wasserstein, least squares, hinge -------------------------------------------------------


def test_wasserstein_losses_by_hand():
    # critic maximizes E[D(x)] - E[D(G(z))] -> minimizes mean(fake) - mean(real)
    assert close(wasserstein_d_loss(t(REAL), t(FAKE)), mean(FAKE) - mean(REAL))
    assert close(wasserstein_d_loss(t(REAL), t(FAKE)), -0.25 - (-1.0 / 3.0))
    assert close(wasserstein_g_loss(t(FAKE)), 0.25)


def test_lsgan_losses_by_hand():
    expected_d = 0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f ** 2 for f in FAKE])
    assert close(lsgan_d_loss(t(REAL), t(FAKE)), expected_d)
    # 0.5 * (1 + 0 + 9)/3 + 0.5 * (0.25 + 1)/2
    assert close(lsgan_d_loss(t(REAL), t(FAKE)), 5.0 / 3.0 + 0.3125)
    assert close(lsgan_g_loss(t(FAKE)), 0.5 * mean([(f - 1) ** 2 for f in FAKE]))
    assert close(lsgan_g_loss(t(FAKE)), 0.5 * (0.25 + 4.0) / 2)
    # smoothed target
    assert close(lsgan_d_loss(t(REAL), t(FAKE), real_target=0.9),
                 0.5 * mean([(r - 0.9) ** 2 for r in REAL]) + 0.5 * mean([f ** 2 for f in FAKE]))


def test_hinge_losses_by_hand():
    # relu(1 - r): [1, 0, 3] -> 4/3; relu(1 + f): [1.5, 0] -> 0.75
    assert close(hinge_d_loss(t(REAL), t(FAKE)), 4.0 / 3.0 + 0.75)
    assert LOSSES.get("hinge").g_loss(t(FAKE)) == pytest.approx(-mean(FAKE))


# -- BEGAN ----------------------------------------------------------------------------------


def test_began_losses_by_hand():
    real_err, fake_err = t([0.2, 0.4]), t([0.1, 0.5, 0.6])
    assert close(began_d_loss(real_err, fake_err, k=0.0), 0.3)
    assert close(began_d_loss(real_err, fake_err, k=0.5), 0.3 - 0.5 * 0.4)
    assert close(began_d_loss(real_err, fake_err, k=1.0), 0.3 - 0.4)
    assert close(began_g_loss(fake_err), 0.4)


def test_began_k_update_by_hand_and_clipped():
    # k + lambda (gamma L(x) - L(G(z))) = 0.5 + 0.1 * (0.5 * 0.4 - 0.1) = 0.51
    assert close(began_k_update(0.5, 0.4, 0.1, gamma=0.5, lambda_k=0.1), 0.51)
    assert close(began_k_update(0.5, 0.4, 0.5, gamma=0.5, lambda_k=0.1), 0.47)
    assert began_k_update(0.99, 10.0, 0.0, gamma=1.0, lambda_k=1.0) == 1.0
    assert began_k_update(0.01, 0.0, 10.0, gamma=1.0, lambda_k=1.0) == 0.0


def test_began_convergence_by_hand():
    # M = L(x) + |gamma L(x) - L(G(z))|
    assert close(began_convergence(0.4, 0.1, 0.5), 0.4 + 0.1)
    assert close(began_convergence(0.4, 0.5, 0.5), 0.4 + 0.3)


# -- MMD ------------------------------------------------------------------------------------


def test_mmd2_is_zero_for_identical_sets():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    assert abs(float(mmd2(x, x.clone(), [0.5, 1.0, 2.0]))) < 1e-5


def test_mmd2_is_positive_for_different_sets():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = torch.randn(40, 3, generator=g) + 2.0
    assert float(mmd2(x, y, [0.5, 1.0, 2.0])) > 0.1


def test_mmd2_one_point_against_one_point_by_hand():
    x, y, s = t([[0.0, 0.0]]), t([[3.0, 4.0]]), 2.0
    expected = 2.0 - 2.0 * math.exp(-25.0 / (2 * s * s))
    assert close(mmd2(x, y, [s]), expected, tol=1e-7)
    # two bandwidths: the kernels add
    expected2 = (2.0 - 2.0 * math.exp(-25.0 / 8)) + (2.0 - 2.0 * math.exp(-25.0 / 50))
    assert close(mmd2(x, y, [2.0, 5.0]), expected2, tol=1e-7)


# -- the registry ---------------------------------------------------------------------------


def test_all_seven_losses_are_registered():
    """Five adversarial losses; BEGAN and MMD are objectives of their own, chosen by the same name."""
    assert {"minimax", "nonsaturating", "wasserstein", "lsgan", "hinge"} <= set(LOSSES.keys())
    assert {"adversarial", "began", "mmd", "elbo"} <= set(OBJECTIVES.keys())
    assert LOSSES.get("wasserstein").kind == "critic" and LOSSES.get("nonsaturating").kind == "logit"
    assert LOSSES.get("minimax").soft_targets and not LOSSES.get("hinge").soft_targets
    assert OBJECTIVES.get("began").discriminator == "autoencoder" and OBJECTIVES.get("mmd").discriminator is None
    from ganforge.config import from_dict
    for loss, objective in (("hinge", "adversarial"), ("began", "began"), ("mmd", "mmd")):
        assert objective_name(from_dict({"model": {"loss": {"name": loss}}})) == objective
    assert objective_name(from_dict({"model": {"family": "vae"}})) == "elbo"
    with pytest.raises(ConfigError, match="did you mean 'hinge'"):
        objective_name(from_dict({"model": {"loss": {"name": "hinje"}}}))


def test_registering_a_duplicate_loss_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_loss(AdversarialLoss("hinge", hinge_d_loss, wasserstein_g_loss, "critic"))
    # the original entry survives
    assert LOSSES.get("hinge").d_loss is hinge_d_loss


def test_registry_duplicate_and_unknown_names():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)
    with pytest.raises(ValueError):
        reg.register("alpha", 2)
    assert reg.get("alpha") == 1
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        reg.get("alpah")
