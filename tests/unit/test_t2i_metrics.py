"""Text-to-image metrics (ganforge.metrics.t2i): exact values on hand-made inputs, and an attribute
classifier that learns a tiny synthetic set."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch

from ganforge.metrics.t2i import (
    AttributeNet,
    attribute_accuracy,
    caption_consistency,
    feature_fid,
    fixed_caption_diversity,
    modes_covered,
    pairwise_distance,
    predict_attributes,
    r_precision,
    real_matching,
    train_attribute_net,
)
from ganforge.registry import ConfigError

SCHEMA = {"shape": ["circle", "square", "triangle"], "colour": ["red", "green"], "size": ["small", "big"]}
EASY = {"colour": ["red", "green", "blue"], "position": ["top left", "top right", "bottom left", "bottom right"]}


def easy_set(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """A lit square in one quadrant (position) of one colour channel (colour) on a dark background."""
    g = torch.Generator().manual_seed(seed)
    attrs = torch.stack([torch.randint(0, 3, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1)
    x = torch.full((n, 3, size, size), -1.0)
    half, side = size // 2, size // 3
    off = torch.randint(0, half - side + 1, (n, 2), generator=g)  # jitter inside the quadrant
    for i, (c, p) in enumerate(attrs.tolist()):
        r0 = (p // 2) * half + int(off[i, 0])
        c0 = (p % 2) * half + int(off[i, 1])
        x[i, c, r0:r0 + side, c0:c0 + side] = 1.0
    x += 0.1 * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1), attrs


# --- the attribute classifier ------------------------------------------------------------------------


def test_attribute_net_learns_easy_set():
    x, a = easy_set(1000, seed=0)
    xt, at = easy_set(500, seed=1)
    t = time.perf_counter()
    net = train_attribute_net(x, a, EASY, steps=200, batch_size=64, seed=0)
    took = time.perf_counter() - t
    assert not net.training
    pred, feats = predict_attributes(net, xt, batch=128)
    assert pred.shape == (500, 2) and pred.dtype == torch.int64
    assert feats.shape == (500, 128) and feats.dtype == torch.float32
    acc = attribute_accuracy(pred, at, EASY)
    assert set(acc) == {"colour", "position", "overall"}
    assert acc["overall"] > 0.9 and min(acc["colour"], acc["position"]) > 0.9, acc
    assert took < 15, took


def test_training_is_a_function_of_the_seed_and_keeps_the_global_rng():
    x, a = easy_set(64, seed=2)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    n1 = train_attribute_net(x, a, EASY, steps=3, batch_size=16, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    n2 = train_attribute_net(x, a, EASY, steps=3, batch_size=16, seed=5)
    n3 = train_attribute_net(x, a, EASY, steps=3, batch_size=16, seed=6)
    s1, s2, s3 = n1.state_dict(), n2.state_dict(), n3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_attribute_net_shapes_and_config_round_trip(size):
    net = AttributeNet(1, SCHEMA, width=8, feature_dim=16)
    x = torch.rand(5, 1, size, size) * 2 - 1
    logits, feats = net(x)
    assert [z.shape for z in logits] == [(5, 3), (5, 2), (5, 2)] and feats.shape == (5, 16)
    cfg = json.loads(json.dumps(net.config()))  # plain JSON values
    assert cfg == {"channels": 1, "schema": SCHEMA, "width": 8, "feature_dim": 16}
    net.eval()
    twin = AttributeNet.from_config(cfg)
    twin.load_state_dict(net.state_dict())
    twin.eval()
    assert twin.schema == SCHEMA
    with torch.no_grad():
        (a, fa), (b, fb) = net(x), twin(x)
    assert torch.equal(fa, fb) and all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    p1, f1 = predict_attributes(net, x)
    p2, f2 = predict_attributes(twin, x)
    assert torch.equal(p1, p2) and torch.equal(f1, f2)


def test_predict_restores_training_mode():
    net = AttributeNet(3, EASY, width=8, feature_dim=16).train()
    predict_attributes(net, torch.zeros(3, 3, 28, 28))
    assert net.training


def test_attribute_net_bad_input():
    with pytest.raises(ConfigError, match="schema"):
        AttributeNet(3, {})
    with pytest.raises(ConfigError, match="unknown keys"):
        AttributeNet.from_config({"channels": 3, "schema": SCHEMA, "depth": 4})
    net = AttributeNet(3, EASY, width=8, feature_dim=16)
    with pytest.raises(ConfigError, match="3-channel"):
        predict_attributes(net, torch.zeros(2, 1, 28, 28))
    x, a = easy_set(8, seed=0)
    with pytest.raises(ConfigError, match="columns"):
        train_attribute_net(x, a[:, :1], EASY, steps=1)
    with pytest.raises(ConfigError, match="rows"):
        train_attribute_net(x, a[:4], EASY, steps=1)
    with pytest.raises(ConfigError, match="out of range"):
        train_attribute_net(x, a + 3, EASY, steps=1)


def test_attribute_accuracy_exact():
    pred = torch.tensor([[0, 1, 1], [2, 0, 1], [1, 1, 0], [0, 0, 0]])
    true = torch.tensor([[0, 1, 1], [2, 1, 1], [0, 1, 0], [0, 0, 1]])
    acc = attribute_accuracy(pred, true, SCHEMA)
    assert acc == {"shape": 0.75, "colour": 0.75, "size": 0.75, "overall": 9 / 12}
    with pytest.raises(ConfigError, match="rows"):
        attribute_accuracy(pred, true[:3], SCHEMA)


# --- caption consistency ------------------------------------------------------------------------------


def test_caption_consistency_exact():
    pred = torch.tensor([[0, 1, 1], [2, 0, 0], [1, 1, 0], [0, 0, 1]])
    mentions = torch.tensor([
        [0, 1, -1],    # shape right, colour right
        [1, 0, -1],    # shape wrong, colour right
        [1, -1, -1],   # shape right
        [-1, -1, -1],  # states nothing: left out of all_correct
    ])
    c = caption_consistency(pred, mentions, SCHEMA)
    assert c["stated"] == 5
    assert c["overall"] == pytest.approx(4 / 5)
    assert c["per_attribute"] == {"shape": pytest.approx(2 / 3), "colour": 1.0, "size": None}
    assert c["all_correct"] == pytest.approx(2 / 3)


def test_caption_consistency_errors():
    pred = torch.zeros(3, 3, dtype=torch.long)
    with pytest.raises(ConfigError, match="rows"):
        caption_consistency(pred, torch.zeros(2, 3, dtype=torch.long), SCHEMA)
    with pytest.raises(ConfigError, match="columns"):
        caption_consistency(pred, torch.zeros(3, 2, dtype=torch.long), SCHEMA)
    with pytest.raises(ConfigError, match="state no attribute"):
        caption_consistency(pred, torch.full((3, 3), -1), SCHEMA)
    with pytest.raises(ConfigError, match="out of range"):
        caption_consistency(pred, torch.tensor([[0, 2, -1]] * 3), SCHEMA)
    with pytest.raises(ConfigError, match="integer"):
        caption_consistency(pred.float(), torch.zeros(3, 3, dtype=torch.long), SCHEMA)


# --- R-precision ----------------------------------------------------------------------------------------


def test_r_precision_perfect_and_random():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(300, 16, generator=g)
    assert r_precision(text * 3.0, text, candidates=100) == 1.0  # cosine: the scale does not matter
    img = torch.randn(3000, 16, generator=g)
    r = r_precision(img, torch.randn(3000, 16, generator=g), candidates=10, seed=1)
    assert abs(r - 0.1) < 0.03
    # Reversed embeddings rank their caption last, never first.
    assert r_precision(-text, text, candidates=10) == 0.0


def test_r_precision_is_seeded():
    g = torch.Generator().manual_seed(1)
    img, text = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    a = r_precision(img, text, candidates=20, seed=3)
    assert a == r_precision(img, text, candidates=20, seed=3)
    assert any(r_precision(img, text, candidates=20, seed=s) != a for s in range(4, 8))


def test_r_precision_groups_exclude_twin_captions():
    # Two captions per image with the same embedding: drawn as a competitor, the twin ties (a miss).
    g = torch.Generator().manual_seed(2)
    base = torch.randn(150, 16, generator=g)
    text = base.repeat_interleave(2, 0)
    groups = torch.arange(150).repeat_interleave(2)
    assert r_precision(text, text, candidates=100, groups=groups) == 1.0
    without = r_precision(text, text, candidates=100)
    # The twin is drawn with probability 99/299.
    assert abs(without - (1 - 99 / 299)) < 0.08


def test_r_precision_errors():
    e = torch.randn(50, 4)
    with pytest.raises(ConfigError, match="99 other captions"):
        r_precision(e, e, candidates=100)
    assert r_precision(e, e, candidates=50) == 1.0  # exactly enough: 49 others each
    with pytest.raises(ConfigError, match="outside its group"):
        r_precision(e, e, candidates=50, groups=torch.arange(50) // 2)
    with pytest.raises(ConfigError, match="same shape"):
        r_precision(e, e[:40], candidates=10)
    with pytest.raises(ConfigError, match="groups"):
        r_precision(e, e, candidates=10, groups=torch.arange(49))


# --- feature statistics -----------------------------------------------------------------------------------


def test_feature_fid():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert feature_fid(real, real) == pytest.approx(0.0, abs=1e-9)
    delta = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert feature_fid(real, real + delta) == pytest.approx(float(delta @ delta), rel=1e-6)
    other = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert 0 < feature_fid(real, other) < feature_fid(real, other + delta)
    with pytest.raises(ConfigError, match="at least 2 rows"):
        feature_fid(real, real[:1])
    with pytest.raises(ConfigError, match="dimensions differ"):
        feature_fid(real, real[:, :5])


def test_pairwise_distance():
    pts = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # distances 3, 4, 5
    assert pairwise_distance(pts) == pytest.approx(4.0)
    assert pairwise_distance(pts, max_n=2) == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="at least 2 rows"):
        pairwise_distance(pts[:1])


def test_modes_covered():
    pred = torch.tensor([[0, 1, 2], [0, 1, 3], [1, 1, 2], [0, 0, 2]])
    assert modes_covered(pred, [0]) == 2
    assert modes_covered(pred, [2]) == 2
    assert modes_covered(pred, [0, 2]) == 3
    assert modes_covered(pred, torch.tensor([0, 1, 2])) == 4
    assert modes_covered(pred, []) == 1
    with pytest.raises(ConfigError, match="out of range"):
        modes_covered(pred, [3])


def test_fixed_caption_diversity():
    pts = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # mean distance 4
    fake = [pts, pts / 2]  # 4 and 2
    real = [pts * 2, pts * 2]  # 8 and 8
    d = fixed_caption_diversity(fake, real)
    assert d["fake"] == pytest.approx(3.0) and d["real"] == pytest.approx(8.0)
    assert d["ratio"] == pytest.approx(3 / 8)
    assert [r["ratio"] for r in d["per_caption"]] == [pytest.approx(0.5), pytest.approx(0.25)]
    assert "modes_fake" not in d and "modes_fake" not in d["per_caption"][0]
    fake_p = [torch.tensor([[0, 0], [0, 0], [0, 1]]), torch.tensor([[1, 0], [1, 0], [1, 0]])]
    real_p = [torch.tensor([[0, 0], [1, 1], [2, 1]]), torch.tensor([[0, 0], [1, 1], [2, 1]])]
    d = fixed_caption_diversity(fake, real, fake_p, real_p, [[1], [0, 1]])
    assert [(r["modes_fake"], r["modes_real"]) for r in d["per_caption"]] == [(2, 2), (1, 3)]
    assert d["modes_fake"] == 1.5 and d["modes_real"] == 2.5
    with pytest.raises(ConfigError, match="together"):
        fixed_caption_diversity(fake, real, fake_p)
    with pytest.raises(ConfigError, match="per caption"):
        fixed_caption_diversity(fake, real[:1])


def test_fixed_caption_diversity_zero_real_spread_is_nan():
    same = torch.ones(4, 3)
    d = fixed_caption_diversity([torch.eye(3)], [same])
    assert d["real"] == 0.0 and math.isnan(d["ratio"])


def test_real_matching():
    attrs = torch.tensor([[0, 1, 1], [0, 0, 1], [2, 1, 0], [0, 1, 0]])
    assert real_matching(torch.tensor([0, 1, -1]), attrs).tolist() == [True, False, False, True]
    assert real_matching(torch.tensor([-1, -1, -1]), attrs).all()
    assert not real_matching(torch.tensor([1, -1, -1]), attrs).any()
    with pytest.raises(ConfigError, match="columns"):
        real_matching(torch.tensor([0, 1]), attrs)


def test_r_precision_competitors_are_false_captions_only():
    # Image attributes (one attribute, 2 values) and what each caption states (-1: nothing).
    attrs = torch.tensor([[0], [1], [0]])
    mentions = torch.tensor([[0], [1], [-1]])
    # Caption 2 states nothing: true of every image, so never a competitor. Image 0's embedding is
    # closest to caption 2; were it drawn against image 0, image 0 would miss.
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    image = torch.tensor([[0.9, 0.1], [0.0, 1.0], [0.9, 0.1]])
    kw = {"mentions": mentions, "image_attributes": attrs}
    assert r_precision(image, text, candidates=2, **kw) == 1.0
    with pytest.raises(ConfigError, match="other captions"):
        r_precision(image, text, candidates=3, **kw)  # each image has only one false caption
    with pytest.raises(ConfigError, match="must both be"):
        r_precision(image, text, candidates=2, mentions=mentions, image_attributes=attrs[:2])
