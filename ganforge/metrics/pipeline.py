"""Image metrics from two sets of feature statistics, returned together with the protocol that produced them."""
from __future__ import annotations

from typing import Any

from ganforge.metrics.distribution import frechet_distance, inception_score, kid
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.manifold import density_coverage, precision_recall
from ganforge.metrics.stats import FeatureStats
from ganforge.registry import ConfigError, closest

IMAGE_METRICS = ("fid", "kid", "is", "pr", "dc")
IS_SPLITS = 10


def compute_image_metrics(
    fake_stats: FeatureStats,
    real_stats: FeatureStats,
    metrics: list[str],
    extractor: FeatureExtractor,
    reference: str,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    dc_k: int = 5,
) -> dict[str, Any]:
    """Compute the requested metrics among ``IMAGE_METRICS`` and record how they were computed.

    ``fid`` uses the streamed mean/covariance; ``kid``, ``pr`` (precision, recall) and ``dc`` (density,
    coverage) use the kept feature rows (collect with ``max_keep`` > 0); ``is`` uses the fake logits and
    needs an extractor with a classifier head. ``reference`` names the real split (e.g. "mnist-test").
    The ``protocol`` entry holds everything a number depends on, so results are only compared like with like.
    """
    for name in metrics:
        if name not in IMAGE_METRICS:
            choices = ", ".join(IMAGE_METRICS)
            raise ConfigError(f"unknown metric '{name}'{closest(name, IMAGE_METRICS)} (choices: {choices})")
    if fake_stats.dim != real_stats.dim:
        raise ConfigError(f"fake and real features differ in dimension: {fake_stats.dim} vs {real_stats.dim}")
    needs_rows = [m for m in metrics if m in ("kid", "pr", "dc")]
    if needs_rows and (len(fake_stats.features) == 0 or len(real_stats.features) == 0):
        raise ConfigError(f"metrics {needs_rows} need raw features: collect both sets with max_keep > 0")

    result: dict[str, Any] = {}
    if "fid" in metrics:
        result["fid"] = frechet_distance(fake_stats.mean, fake_stats.cov, real_stats.mean, real_stats.cov)
    if "kid" in metrics:
        result["kid"], result["kid_std"] = kid(
            fake_stats.features, real_stats.features, subsets=kid_subsets, subset_size=kid_subset_size
        )
    if "is" in metrics:
        if extractor.num_classes == 0:
            raise ConfigError(f"the Inception Score needs class logits; extractor '{extractor.name}' has no classifier")
        if fake_stats.logits is None:
            raise ConfigError("the Inception Score needs class logits; the fake statistics were collected without them")
        result["inception_score"], result["inception_score_std"] = inception_score(fake_stats.logits, IS_SPLITS)
    if "pr" in metrics:
        result["precision"], result["recall"] = precision_recall(real_stats.features, fake_stats.features, k=pr_k)
    if "dc" in metrics:
        result["density"], result["coverage"] = density_coverage(real_stats.features, fake_stats.features, k=dc_k)

    result["protocol"] = {
        "metrics": list(metrics),
        "extractor": extractor.name,
        "extractor_sha256": extractor.sha256,
        "feature_dim": extractor.feature_dim,
        "resize": extractor.resize,
        "n_fake": fake_stats.count,
        "n_real": real_stats.count,
        # KID / PR / DC see only the kept rows; FID and IS see every sample.
        "n_fake_kept": len(fake_stats.features),
        "n_real_kept": len(real_stats.features),
        "reference": reference,
        "kid": {"subsets": kid_subsets, "subset_size": kid_subset_size, "kernel": "cubic polynomial", "seed": 0},
        "is_splits": IS_SPLITS,
        "pr_k": pr_k,
        "dc_k": dc_k,
    }
    return result
