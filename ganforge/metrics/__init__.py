"""Metrics: mode counts on toy data; image metrics as features -> statistics -> metric pipelines."""
from ganforge.metrics.distribution import frechet_distance, inception_score, kid
from ganforge.metrics.features import (
    FEATURE_EXTRACTORS,
    FeatureExtractor,
    InceptionExtractor,
    InceptionV3Extractor,
    choose_extractor,
    file_sha256,
    get_extractor,
    prepare_images,
    register_feature_extractor,
)
from ganforge.metrics.inception import ExtractorUnavailable
from ganforge.metrics.manifold import ball_membership, density_coverage, knn_radii, precision_recall
from ganforge.metrics.modes import mode_metrics
from ganforge.metrics.pipeline import IMAGE_METRICS, compute_image_metrics
from ganforge.metrics.stats import FeatureStats, collect

__all__ = [
    "FEATURE_EXTRACTORS",
    "IMAGE_METRICS",
    "ExtractorUnavailable",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionExtractor",
    "InceptionV3Extractor",
    "ball_membership",
    "choose_extractor",
    "collect",
    "compute_image_metrics",
    "density_coverage",
    "file_sha256",
    "frechet_distance",
    "get_extractor",
    "inception_score",
    "kid",
    "knn_radii",
    "mode_metrics",
    "precision_recall",
    "prepare_images",
    "register_feature_extractor",
]
