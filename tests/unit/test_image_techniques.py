"""Improved-GAN techniques and DiffAugment (ganforge.nn.techniques): each test checks the effect on tensors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from ganforge.config import NetConfig
from ganforge.nn.dcgan import DCGANGenerator
from ganforge.nn.techniques import (
    HistoricalAverage,
    MinibatchDiscrimination,
    RefBatchNorm2d,
    diff_augment,
    historical_average_penalty,
    parse_policy,
    reference_mode,
    set_reference_batch,
    use_reference_batch_norm,
)
from ganforge.registry import ConfigError
from ganforge.training.checkpoint import load_state, save_state

# -- minibatch discrimination ------------------------------------------------------------------


def test_minibatch_discrimination_appends_num_kernels_features_to_the_flattened_input() -> None:
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(12, num_kernels=7, kernel_dim=3)
    x = torch.randn(6, 3, 2, 2)
    out = layer(x)
    assert out.shape == (6, 12 + 7) and layer.out_features == 19
    assert torch.equal(out[:, :12], x.flatten(1))


def test_minibatch_discrimination_identical_batch_gives_n_minus_1_and_spread_batch_gives_0() -> None:
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(8, num_kernels=10, kernel_dim=4)
    same = torch.randn(1, 8).repeat(5, 1)
    assert torch.allclose(layer(same)[:, 8:], torch.full((5, 10), 4.0))  # n - 1: every other sample is at distance 0
    spread = torch.randn(6, 8) * 1e3
    assert layer(spread)[:, 8:].abs().max() < 1e-6


def test_minibatch_discrimination_matches_hand_computation() -> None:
    layer = MinibatchDiscrimination(2, num_kernels=1, kernel_dim=2)
    with torch.no_grad():
        layer.T.copy_(torch.eye(2))  # M_i = x_i
    x = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.0, 2.0]])
    o = layer(x)[:, 2]
    d = torch.cdist(x, x, p=1)
    expected = torch.exp(-d).sum(1) - 1
    assert torch.allclose(o, expected)
    assert math.isclose(float(o[0].detach()), math.exp(-1.5) + math.exp(-2.0), rel_tol=1e-6)


def test_minibatch_discrimination_passes_gradients_to_input_and_kernel() -> None:
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(8, num_kernels=6, kernel_dim=3)
    x = (0.3 * torch.randn(5, 8)).requires_grad_(True)
    layer(x)[:, 8:].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert layer.T.grad is not None and layer.T.grad.abs().sum() > 0


# -- historical averaging ----------------------------------------------------------------------


def _params(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def test_historical_average_penalty_is_zero_at_start_and_hand_computed_after_a_change() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    ha = HistoricalAverage(net, weight=0.5)
    assert float(ha.penalty().detach()) == 0.0
    delta = torch.randn(2, 3)
    with torch.no_grad():
        net.weight.add_(delta)
    assert torch.allclose(ha.penalty(), 0.5 * (delta**2).sum())
    # The penalty pulls theta back to the average: its gradient is 2 * weight * (theta - average).
    ha.penalty().backward()
    assert torch.allclose(net.weight.grad, 2 * 0.5 * delta)
    assert torch.allclose(net.bias.grad, torch.zeros(2))


def test_historical_average_is_the_arithmetic_mean_of_the_snapshots() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    ha = HistoricalAverage(net, weight=2.0)
    snapshots = []
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append(_params(net))
        ha.update()
    assert ha.count == 4
    mean = {k: torch.stack([s[k] for s in snapshots]).mean(0) for k in snapshots[0]}
    for k, v in mean.items():
        assert torch.allclose(ha.averages[k], v, atol=1e-6)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    expected = 2.0 * sum(((p - mean[k]) ** 2).sum() for k, p in net.named_parameters())
    assert torch.allclose(ha.penalty(), expected)
    assert torch.allclose(historical_average_penalty(net, mean, 2.0), expected)


def test_historical_average_speaks_the_regularizer_protocol() -> None:
    net, other = nn.Linear(2, 1), nn.Linear(2, 1)
    ha = HistoricalAverage(net, weight=1.0)
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    assert ha.interval == 1
    assert float(ha.penalty(net, real, fake, generator=torch.Generator()).detach()) == 0.0
    with torch.no_grad():
        net.weight.fill_(1.0)
    ha.after_step(net)
    assert ha.count == 1 and torch.equal(ha.averages["weight"], net.weight.detach())
    with pytest.raises(ValueError, match="another module"):
        ha.penalty(other, real, fake)


def test_historical_average_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    ha = HistoricalAverage(net, weight=1.0)
    for _ in range(3):
        with torch.no_grad():
            net.weight.add_(torch.randn(2, 3))
        ha.update()
    save_state(tmp_path / "s.safetensors", {"ha": ha.state_dict()})  # the checkpoint format
    state = load_state(tmp_path / "s.safetensors")["ha"]
    restored = HistoricalAverage(net, weight=1.0)
    restored.load_state_dict(state)
    assert restored.count == 3
    for k in ha.averages:
        assert torch.equal(restored.averages[k], ha.averages[k])
    # Resumed, the running mean continues exactly as without the interruption.
    with torch.no_grad():
        net.bias.add_(1.0)
    ha.update()
    restored.update()
    for k in ha.averages:
        assert torch.allclose(restored.averages[k], ha.averages[k])


# -- reference-batch normalization ----------------------------------------------------------------


def _conv_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5)).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
    return net


def test_ref_batch_norm_output_of_an_example_does_not_depend_on_its_batch() -> None:
    net = _conv_bn_net().train()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    # Plain batch norm: example 0's output changes with its batch companions.
    assert not torch.allclose(net(x)[:1], net(x[:1]), atol=1e-3)

    old_bn = net[1]
    use_reference_batch_norm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, RefBatchNorm2d) for m in net.modules()) == 2
    assert net[1].weight is old_bn.weight and net[1].bias is old_bn.bias  # an existing optimizer keeps working
    assert net[1].ref_mean.dtype == torch.float64

    set_reference_batch(net, torch.randn(16, 3, 8, 8, dtype=torch.float64))
    out = net(x)
    for i in range(len(x)):
        assert torch.allclose(net(x[i : i + 1]), out[i : i + 1], atol=1e-6)
    assert torch.allclose(net(x.flip(0)), out.flip(0), atol=1e-6)
    assert not net[1].capturing and not net[4].capturing


def test_ref_batch_norm_per_example_statistics_are_those_of_reference_union_example() -> None:
    torch.manual_seed(0)
    layer = RefBatchNorm2d(3, eps=1e-5).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        layer.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    ref = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2 + 1
    x = torch.randn(3, 3, 5, 5, dtype=torch.float64) * 3 - 2
    layer.set_reference(ref)
    assert int(layer.ref_count) == 4
    out = layer(x)
    for i in range(len(x)):
        # VBN: the reference batch and x_i as one set of n_ref + 1 images, x_i weighted 1 / (n_ref + 1).
        both = torch.cat([ref, x[i : i + 1]])
        mu = both.mean((0, 2, 3))[:, None, None]
        var = both.var((0, 2, 3), unbiased=False)[:, None, None]
        expected = (x[i] - mu) / torch.sqrt(var + 1e-5) * layer.weight[:, None, None] + layer.bias[:, None, None]
        assert torch.allclose(out[i], expected, atol=1e-10)


def test_ref_batch_norm_capture_normalizes_the_reference_like_batch_norm_and_needs_a_reference() -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4).train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    ref = torch.randn(8, 4, 6, 6)
    layer = use_reference_batch_norm(nn.Sequential(bn))
    with pytest.raises(RuntimeError, match="set_reference_batch"):
        layer(ref)
    with reference_mode(layer):
        assert layer[0].capturing
        captured = layer(ref)
    assert not layer[0].capturing
    assert torch.allclose(captured, bn(ref), atol=1e-5)
    assert torch.allclose(layer[0].ref_mean, ref.mean((0, 2, 3)), atol=1e-6)


def test_ref_batch_norm_reference_statistics_are_saved_with_the_network() -> None:
    net = use_reference_batch_norm(_conv_bn_net())
    set_reference_batch(net, torch.randn(10, 3, 8, 8, dtype=torch.float64))
    fresh = use_reference_batch_norm(_conv_bn_net())
    fresh.load_state_dict(net.state_dict())
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(fresh(x), net(x))


def test_ref_batch_norm_makes_a_dcgan_generator_per_example() -> None:
    torch.manual_seed(0)
    g = use_reference_batch_norm(DCGANGenerator(NetConfig(width=8), z_dim=4, out_shape=(1, 28, 28)))
    set_reference_batch(g, torch.randn(32, 4))
    z = torch.randn(5, 4)
    out = g(z)
    assert out.shape == (5, 1, 28, 28)
    assert torch.allclose(g(z[2:3]), out[2:3], atol=1e-5)


# -- DiffAugment ----------------------------------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_passes_gradients_to_the_images(policy: str) -> None:
    x = torch.rand(4, 3, 16, 16, generator=_gen(1)).mul(2).sub(1).requires_grad_(True)
    w = torch.randn(4, 3, 16, 16, generator=_gen(2))
    (diff_augment(x, policy, _gen()) * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_diff_augment_is_reproducible_with_the_same_generator_seed() -> None:
    x = torch.rand(8, 3, 32, 32, generator=_gen(1)) * 2 - 1
    a, b = diff_augment(x, generator=_gen(5)), diff_augment(x, generator=_gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, generator=_gen(6)))


def test_diff_augment_empty_policy_is_the_identity_and_draws_nothing() -> None:
    x = torch.randn(2, 1, 8, 8)
    g = _gen()
    state = g.get_state()
    assert diff_augment(x, "", g) is x
    assert diff_augment(x, " , ", g) is x
    assert torch.equal(g.get_state(), state)


def test_diff_augment_translation_shifts_each_image_by_at_most_an_eighth_with_zero_fill() -> None:
    n, c, h, w = 12, 2, 28, 28
    x = torch.arange(1, n * c * h * w + 1, dtype=torch.float64).view(n, c, h, w)  # distinct nonzero values
    y = diff_augment(x, "translation", _gen(3))
    shift = 4  # int(28 / 8 + 0.5)
    padded = nn.functional.pad(x, [shift] * 4)
    seen = set()
    for i in range(n):
        matches = [(dy, dx) for dy, dx in itertools.product(range(-shift, shift + 1), repeat=2)
                   if torch.equal(y[i], padded[i, :, shift + dy : shift + dy + h, shift + dx : shift + dx + w])]
        assert len(matches) == 1, f"image {i} is not a zero-filled shift of at most {shift} pixels"
        seen.add(matches[0])
        kept = y[i][y[i] != 0]  # the pixels that remain are a sub-multiset of the image's own pixels
        assert torch.isin(kept, x[i]).all() and kept.unique().numel() == kept.numel()
    assert len(seen) > 1


def test_diff_augment_cutout_zeroes_a_square_of_half_the_image_size() -> None:
    n, size, half = 64, 28, 14
    x = torch.ones(n, 3, size, size)
    y = diff_augment(x, "cutout", _gen(4))
    assert ((y == 0) | (y == 1)).all()
    holes = y == 0
    assert (holes == holes[:, :1]).all()  # the same hole in every channel
    interior = 0
    for hole in holes[:, 0]:
        rows = hole.any(1).nonzero().squeeze(1)
        cols = hole.any(0).nonzero().squeeze(1)
        # One axis-aligned rectangle of contiguous rows and columns, at most half x half (clipped at the border).
        assert hole.sum() == len(rows) * len(cols)
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        assert torch.equal(cols, torch.arange(cols[0], cols[-1] + 1))
        assert 0 < len(rows) <= half and 0 < len(cols) <= half
        if 0 < rows[0] and rows[-1] < size - 1 and 0 < cols[0] and cols[-1] < size - 1:
            assert len(rows) == len(cols) == half
            interior += 1
    assert interior > 0


def test_diff_augment_color_is_a_per_image_brightness_and_contrast_change() -> None:
    x = torch.rand(8, 1, 16, 16, generator=_gen(1), dtype=torch.float64) * 2 - 1
    y = diff_augment(x, "color", _gen(2))
    for xi, yi in zip(x.flatten(1), y.flatten(1), strict=True):
        # On one channel saturation is the identity: y = gamma * x + beta, with contrast gamma in [0.5, 1.5].
        gamma = ((xi - xi.mean()) * (yi - yi.mean())).sum() / ((xi - xi.mean()) ** 2).sum()
        assert 0.5 <= gamma <= 1.5
        assert torch.allclose(yi, gamma * xi + (yi - gamma * xi).mean(), atol=1e-10)
    const = torch.full((16, 3, 4, 4), 0.2)
    shifted = diff_augment(const, "color", _gen(3)) - 0.2  # a flat image only gets its brightness shift
    assert torch.allclose(shifted, shifted[:, :1, :1, :1].expand_as(shifted), atol=1e-6)
    assert shifted.abs().max() <= 0.5 and shifted.std() > 0.05


def test_diff_augment_unknown_policy_names_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match="unknown DiffAugment policy 'translate'; did you mean 'translation'"):
        diff_augment(torch.zeros(1, 1, 8, 8), "color,translate")
    with pytest.raises(ConfigError, match="did you mean 'color'"):
        parse_policy("colour")
    assert parse_policy(" color , cutout ") == ["color", "cutout"]
    with pytest.raises(ConfigError, match=r"\(n, C, H, W\)"):
        diff_augment(torch.zeros(4, 2), "translation")


# -- reference-batch norm as a config switch -----------------------------------------------------


def _ref_config(**generator) -> dict:
    g = {"name": "dcgan", "width": 4, "reference_batch": 8} | generator
    return {"model": {"z_dim": 8, "generator": g, "discriminator": {"name": "dcgan", "width": 4}},
            "train": {"batch_size": 8, "steps": 3, "progress": False, "seed": 0}}


def test_reference_batch_switch_trains_and_keeps_samples_independent_of_their_batch() -> None:
    from ganforge.config import from_dict
    from ganforge.training.run import train

    data = torch.rand(64, 1, 28, 28) * 2 - 1
    result = train(from_dict(_ref_config()), data=data)
    g = result.parts.generator
    refs = [m for m in g.modules() if isinstance(m, RefBatchNorm2d)]
    assert len(refs) == 2 and all(int(m.ref_count) == 8 for m in refs)
    # The reference was re-captured after the last update: capturing again changes nothing.
    before = [m.ref_mean.clone() for m in refs]
    result.trainer.callbacks[0].capture(result.trainer)
    assert all(torch.allclose(b, m.ref_mean) for b, m in zip(before, refs, strict=True))
    g.train()
    v = result.parts.prior.sample(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone, together = g(v[:1]), g(v)[:1]
    assert torch.allclose(alone, together, atol=1e-5)


@pytest.mark.parametrize("model, match", [
    ({"generator": {"name": "mlp", "reference_batch": 8}}, "no 2-D batch norm"),
    ({"discriminator": {"name": "dcgan", "width": 4, "reference_batch": 8}}, "reference-batch norm is for G"),
])
def test_reference_batch_misuse_is_a_config_error(model, match) -> None:
    from ganforge.config import from_dict
    from ganforge.training.assemble import assemble

    cfg = _ref_config()
    cfg["model"] |= model
    with pytest.raises(ConfigError, match=match):
        assemble(from_dict(cfg), data=torch.rand(32, 1, 28, 28) * 2 - 1)
