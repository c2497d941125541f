"""FID, KID, IS, precision/recall, density/coverage and streaming statistics on hand-built feature sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from ganforge.metrics import (
    FeatureStats,
    collect,
    compute_image_metrics,
    density_coverage,
    frechet_distance,
    inception_score,
    kid,
    knn_radii,
    precision_recall,
)
from ganforge.metrics.manifold import ball_membership
from ganforge.registry import ConfigError


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """n samples of one fixed correlated Gaussian per (d, shift, scale); ``seed`` only picks the samples."""
    mix = np.random.default_rng(d).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mix * scale + shift


def textbook_fid(x: np.ndarray, y: np.ndarray) -> float:
    """The pytorch-fid formula: sqrtm of the covariance product, imaginary round-off discarded."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def stats_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.cov(x, rowvar=False)


# -- FID ---------------------------------------------------------------------------------------------


def test_fid_matches_textbook_sqrtm():
    x, y = gaussian(2000, 16, 0), gaussian(2000, 16, 1, shift=0.3, scale=1.5)
    assert frechet_distance(*stats_of(x), *stats_of(y)) == pytest.approx(textbook_fid(x, y), rel=1e-6)


def test_fid_of_set_with_itself_is_zero():
    x = gaussian(2000, 16, 0, scale=3.0)
    mu, s = stats_of(x)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6 * np.trace(s)


@pytest.mark.parametrize("case", ["rank3", "duplicates"])
def test_fid_near_singular_is_finite_real_nonnegative(case):
    rng = np.random.default_rng(0)
    if case == "rank3":  # 3-dimensional data embedded in 16 dimensions
        x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 16))
        y = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 16))
    else:  # 10 distinct samples repeated: rank 9 covariance in 16 dimensions
        x = np.repeat(rng.normal(size=(10, 16)), 50, axis=0)
        y = np.repeat(rng.normal(size=(10, 16)), 50, axis=0)
    for a, b in ((x, y), (x, x)):
        d = frechet_distance(*stats_of(a), *stats_of(b))
        assert isinstance(d, float) and np.isfinite(d) and d >= 0


def test_fid_mean_shift_adds_squared_norm():
    x = gaussian(1000, 16, 0)
    mu, s = stats_of(x)
    v = np.random.default_rng(1).normal(size=16)
    assert frechet_distance(mu, s, mu + v, s) == pytest.approx(float(v @ v), rel=1e-8)


# -- KID ---------------------------------------------------------------------------------------------


def test_kid_unbiased_on_same_distribution():
    # Independent small-sample estimates average to 0; the biased (V-statistic) estimator would be
    # ~0.8 here (25 standard errors), far outside the tolerance.
    est = np.array([kid(gaussian(50, 4, 2 * s), gaussian(50, 4, 2 * s + 1), subsets=1, subset_size=50)[0]
                    for s in range(200)])
    assert abs(est.mean()) < 4 * est.std() / np.sqrt(len(est))


def test_kid_separates_shifted_distributions():
    x = gaussian(1000, 8, 0)
    same_mean, same_std = kid(x, gaussian(1000, 8, 1), subsets=20, subset_size=200)
    shifted_mean, shifted_std = kid(x, gaussian(1000, 8, 2, shift=1.0), subsets=20, subset_size=200)
    assert abs(same_mean) < 3 * same_std
    assert shifted_mean > 5 * shifted_std > 0


def test_kid_small_sets_and_too_small():
    x, y = gaussian(30, 8, 0), gaussian(40, 8, 1)
    mean, std = kid(x, y, subsets=5, subset_size=1000)  # m = 30
    assert np.isfinite(mean) and np.isfinite(std)
    with pytest.raises(ConfigError, match="at least 2"):
        kid(x[:1], y)


# -- IS ----------------------------------------------------------------------------------------------


def test_inception_score_uniform_is_one():
    assert inception_score(torch.zeros(100, 10))[0] == pytest.approx(1.0, abs=1e-12)


def test_inception_score_confident_balanced_is_k():
    k = 7
    logits = 100.0 * torch.nn.functional.one_hot(torch.arange(10 * 3 * k) % k, k).double()  # 3k per split
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std < 1e-9
    assert inception_score(logits[:5], splits=10)[0] == pytest.approx(1.0)  # 5 splits of one sample each


# -- precision / recall, density / coverage ----------------------------------------------------------


def blobs(centers: np.ndarray, per: int, seed: int, std: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(centers, per, axis=0) + std * rng.normal(size=(len(centers) * per, centers.shape[1]))


# 8 well separated modes on a ring in 2-D (in low dimension k-NN balls cover a blob almost fully).
CENTERS = 10.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def test_precision_recall_identical_and_disjoint():
    x = gaussian(300, 4, 0)
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_half_the_modes():
    real = blobs(CENTERS, 100, 0)
    fake = blobs(CENTERS[:4], 200, 1)
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.03)
    _, coverage = density_coverage(real, fake, k=5)
    assert coverage == pytest.approx(0.5, abs=0.05)


def test_density_coverage_same_distribution():
    real, fake = blobs(CENTERS, 300, 0), blobs(CENTERS, 300, 1)
    density, coverage = density_coverage(real, fake, k=5)
    assert 0.8 <= density <= 1.2 and coverage > 0.9


def test_chunked_distances_equal_unchunked():
    real, fake = gaussian(200, 6, 0), gaussian(150, 6, 1, shift=0.2)
    full = torch.cdist(torch.as_tensor(real), torch.as_tensor(real))
    brute = full.sort(dim=1).values[:, 3]  # index 0 is the sample itself
    assert torch.allclose(knn_radii(real, 3, chunk_size=7), brute, rtol=1e-12)
    radii = knn_radii(real, 5)
    counts_7, hit_7 = ball_membership(fake, real, radii, chunk_size=7)
    counts_all, hit_all = ball_membership(fake, real, radii, chunk_size=10_000)
    assert torch.equal(counts_7, counts_all) and torch.equal(hit_7, hit_all)
    assert precision_recall(real, fake, chunk_size=7) == precision_recall(real, fake, chunk_size=10_000)
    assert density_coverage(real, fake, chunk_size=7) == density_coverage(real, fake, chunk_size=10_000)


def test_knn_needs_more_samples_than_k():
    with pytest.raises(ConfigError, match="k-NN"):
        knn_radii(np.zeros((3, 2)), 3)


# -- streaming statistics and the pipeline -----------------------------------------------------------


def test_feature_stats_streaming_equals_numpy():
    x = gaussian(1003, 12, 0, shift=50.0)  # a large mean: naive sum-of-squares would lose digits
    stats = FeatureStats(max_keep=500)
    for chunk in np.array_split(x, [1, 64, 65, 400, 777]):
        stats.update(torch.as_tensor(chunk), torch.as_tensor(chunk[:, :3]))
    assert stats.count == 1003
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=0, atol=1e-10)
    assert stats.features.shape == (500, 12) and stats.features.dtype == torch.float32
    assert torch.equal(stats.features, torch.as_tensor(x[:500], dtype=torch.float32))
    assert stats.logits.shape == (1003, 3)


class FlattenExtractor:
    """Pixels as features, their first 4 as logits: a stand-in with no weights."""

    name, sha256, feature_dim, num_classes, resize = "flatten", "", 48, 4, "none"

    def extract(self, x):
        f = x.reshape(len(x), -1).float()
        return f, f[:, :4]


def test_pipeline_independent_of_batch_size():
    g = torch.Generator().manual_seed(0)
    fake, real = torch.rand(120, 3, 4, 4, generator=g) * 2 - 1, torch.rand(100, 3, 4, 4, generator=g) * 1.6 - 0.8
    ext = FlattenExtractor()
    results = []
    for bs in (7, 50):
        fs = collect(fake.split(bs), ext, max_keep=1000, progress=False)
        rs = collect(real.split(bs), ext, max_keep=1000, progress=False)
        results.append(compute_image_metrics(fs, rs, ["fid", "kid", "is", "pr", "dc"], ext, "test",
                                             kid_subsets=10, kid_subset_size=50))
    a, b = results
    assert a.keys() == b.keys() >= {"fid", "kid", "kid_std", "inception_score", "inception_score_std",
                                    "precision", "recall", "density", "coverage", "protocol"}
    for key in a:
        if key != "protocol":
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
    assert a["protocol"] == b["protocol"] and a["protocol"]["n_fake"] == 120 and a["protocol"]["n_real"] == 100


def test_pipeline_errors():
    ext = FlattenExtractor()
    x = torch.rand(20, 3, 4, 4)
    fs = collect([x], ext, max_keep=0, progress=False)
    with pytest.raises(ConfigError, match="did you mean 'fid'"):
        compute_image_metrics(fs, fs, ["fdi"], ext, "test")
    with pytest.raises(ConfigError, match="max_keep"):
        compute_image_metrics(fs, fs, ["kid"], ext, "test")
    ext.num_classes = 0
    with pytest.raises(ConfigError, match="classifier"):
        compute_image_metrics(fs, fs, ["is"], ext, "test")
