"""FID, KID, PR, IS and PPL as NVIDIA computes them; real statistics cached by dataset content (docs/metrics.md)."""

from stylegan_core.metrics.cache import RealStatistics, default_cache_dir, real_statistics
from stylegan_core.metrics.fid import feature_statistics, frechet_distance, frechet_distance_from_features
from stylegan_core.metrics.inception import InceptionDetector, load_detector, resize_like_tf1
from stylegan_core.metrics.inception_score import inception_score
from stylegan_core.metrics.kid import kernel_distance, polynomial_mmd2
from stylegan_core.metrics.ppl import perceptual_path_length
from stylegan_core.metrics.precision_recall import precision_recall
from stylegan_core.metrics.registry import (
    MetricResults,
    MetricSpec,
    compute_metrics,
    parse_metric_name,
    report_metric,
)

__all__ = [
    "InceptionDetector",
    "MetricResults",
    "MetricSpec",
    "RealStatistics",
    "compute_metrics",
    "default_cache_dir",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kernel_distance",
    "load_detector",
    "parse_metric_name",
    "perceptual_path_length",
    "polynomial_mmd2",
    "precision_recall",
    "real_statistics",
    "report_metric",
    "resize_like_tf1",
]
