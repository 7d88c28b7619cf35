"""Real-image statistics (mean, covariance and, for KID, the features), cached on disk by what they depend on.

The key is the dataset's *content* hash, the detector's sha256 and the number of images, never the path: NVIDIA keys
its cache by path and options, so a dataset rebuilt at the same path silently reuses stale statistics. Real
statistics use xflip=False and the first `num_items` dataset items, as NVIDIA's `*_full` metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.io.atomic import atomic_file
from stylegan_core.metrics.fid import feature_statistics
from stylegan_core.metrics.npz_bounded import describe_error, read_key, read_member
from stylegan_core.metrics.progress import LineProgress
from stylegan_core.metrics.sampling import Detector, Shard, dataset_features

CACHE_DIR_ENV = "STYLEGAN_CACHE_DIR"
DEFAULT_BATCH_SIZE = 32
_CACHE_VERSION = "real-stats-v1"
_Cached = TypeVar("_Cached")


def default_cache_dir() -> Path:
    """$STYLEGAN_CACHE_DIR/gan-metrics, else ~/.cache/stylegan_core/gan-metrics."""
    base = os.environ.get(CACHE_DIR_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "stylegan_core"
    return root / "gan-metrics"


@dataclass(frozen=True)
class RealStatistics:
    mu: np.ndarray
    """float64 [D] feature mean."""
    sigma: np.ndarray
    """float64 [D, D] biased feature covariance."""
    features: np.ndarray | None
    """float32 [num_items, D] features (kept for KID), or None when only mean and covariance were asked for."""
    num_items: int
    content_hash: str
    detector_sha256: str


def cache_file(cache_dir: Path, content_hash: str, detector_sha256: str, num_items: int) -> Path:
    return keyed_cache_file(cache_dir, "real", _CACHE_VERSION, content_hash, detector_sha256, num_items)


def keyed_cache_file(
    cache_dir: Path, prefix: str, version: str, content_hash: str, detector_sha256: str, num_items: int
) -> Path:
    """`<prefix>-<hash>.npz`: the hash of the format version and the key, so no path or dataset name leaks in."""
    key = json.dumps([version, content_hash, detector_sha256, int(num_items)])
    return Path(cache_dir) / f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def real_statistics(
    dataset_path: str | os.PathLike[str],
    detector: Detector,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_items: int | None = None,
    need_features: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard: Shard | None = None,
    progress: bool | LineProgress = True,
) -> RealStatistics:
    """Statistics of the first min(len, max_items) images of the dataset, from the cache or computed (and cached).

    `detector` must have a ``sha256`` attribute (the InceptionDetector does). With several ranks every rank must
    call this; rank 0 decides whether the cache hits and is the only one that writes it.
    """
    shard = shard or Shard()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dataset = ImageDataset(dataset_path, xflip=False)
    try:
        num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
        content_hash = dataset.content_hash
        path = cache_file(cache_dir, content_hash, detector.sha256, num_items)
        found = _try_load(path, content_hash, detector.sha256, need_features) if shard.rank == 0 else None
        cached = broadcast_from_rank0(found, shard)
        if cached is not None:
            return cached
        features = dataset_features(
            dataset, detector, num_items=num_items, batch_size=batch_size, shard=shard, progress=progress
        )
    finally:
        dataset.close()
    mu, sigma = feature_statistics(features)
    stats = RealStatistics(mu, sigma, features if need_features else None, num_items, content_hash, detector.sha256)
    if shard.rank == 0:
        save_statistics(path, stats)
    return stats


def save_statistics(path: Path, stats: RealStatistics) -> None:
    """Atomic .npz write: a temporary file in the same folder, renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mu": stats.mu,
        "sigma": stats.sigma,
        "num_items": np.int64(stats.num_items),
        "content_hash": np.str_(stats.content_hash),
        "detector_sha256": np.str_(stats.detector_sha256),
    }
    if stats.features is not None:
        arrays["features"] = stats.features
    with atomic_file(path) as file:
        np.savez(file, **arrays)


def load_statistics(path: Path) -> RealStatistics:
    """The entry at `path`, each array's header checked before it is read (`npz_bounded`); ValueError naming the file
    if it is damaged: float64 mu [D] and sigma [D, D], float32 features [num_items, D] if present."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            key = read_key(archive)
            mu = read_member(archive, "mu", np.dtype(np.float64), (None,), size)
            sigma = read_member(archive, "sigma", np.dtype(np.float64), (len(mu), len(mu)), size)
            features = None
            if "features.npy" in archive.namelist():
                features = read_member(archive, "features", np.dtype(np.float32), (key.num_items, len(mu)), size)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{path}: unusable real-statistics cache ({describe_error(error)})") from None
    return RealStatistics(mu, sigma, features, key.num_items, key.content_hash, key.detector_sha256)


def _try_load(path: Path, content_hash: str, detector_sha256: str, need_features: bool) -> RealStatistics | None:
    """The cached statistics if present, for this key and sufficient; a damaged file is a miss (and is rewritten)."""
    if not path.is_file():
        return None
    try:
        stats = load_statistics(path)
    except ValueError:
        return None
    if (stats.content_hash, stats.detector_sha256) != (content_hash, detector_sha256):
        return None
    if need_features and stats.features is None:
        return None
    return stats


def broadcast_from_rank0(value: _Cached | None, shard: Shard) -> _Cached | None:
    """Rank 0's cache lookup, on every rank (each rank would otherwise decide on its own whether to compute)."""
    if shard.world_size == 1:
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]
