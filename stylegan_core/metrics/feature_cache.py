"""Real-image features alone (no mean, no covariance), cached on disk for precision/recall.

PR reads the real images' VGG16 features and nothing else, and holds them in float16. The statistics cache
(`cache.py`, FID and KID) also accumulates a float64 D x D covariance: for VGG16's 4096-d features that is
2·N·D² ≈ 7 TFLOP on the CPU at N = 200,000 and 134 MB more on disk, all unused by PR. So PR keeps its own entry,
``real-features-<key>.npz``: float16 features [N, D] (PR rounds them to float16 itself, so the cached values are
exactly what it computes with; ~N·D·2 bytes, half of NVIDIA's float32 pickle) and the key fields. NVIDIA's PR
likewise caches only the raw features (`capture_all`, no mean/cov).

The key is the statistics key (dataset content hash, detector sha256, image count) under its own version tag, so the
two kinds never share a file. A statistics entry written by earlier versions for PR (with features) is still used:
only its features member is read, once, and saved as a features entry. Cache files are read as untrusted
(`npz_bounded`: each header checked against what the key implies before anything is allocated, no NaN); a
file that fails is reported in one line naming it and recomputed.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.io.atomic import atomic_file
from stylegan_core.metrics.cache import (
    DEFAULT_BATCH_SIZE,
    broadcast_from_rank0,
    cache_file,
    default_cache_dir,
    keyed_cache_file,
)
from stylegan_core.metrics.npz_bounded import CacheKey, describe_error, read_key, read_member
from stylegan_core.metrics.progress import LineProgress, say
from stylegan_core.metrics.sampling import Detector, Shard, dataset_features

_CACHE_VERSION = "real-features-v1"
FEATURE_DTYPE = np.dtype(np.float16)
_NAN_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class RealFeatures:
    features: np.ndarray
    """float16 [num_items, D] detector features of dataset items 0 .. num_items - 1."""
    num_items: int
    content_hash: str
    detector_sha256: str


def _entry(features: np.ndarray, key: CacheKey) -> RealFeatures:
    return RealFeatures(features, key.num_items, key.content_hash, key.detector_sha256)


def features_cache_file(cache_dir: Path, content_hash: str, detector_sha256: str, num_items: int) -> Path:
    return keyed_cache_file(cache_dir, "real-features", _CACHE_VERSION, content_hash, detector_sha256, num_items)


def real_features(
    dataset_path: str | os.PathLike[str],
    detector: Detector,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_items: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard: Shard | None = None,
    progress: bool | LineProgress = True,
) -> RealFeatures:
    """Features of the first min(len, max_items) images (xflip=False), from the cache or computed and cached.

    `detector` needs a ``sha256`` attribute. With several ranks every rank must call this; rank 0 decides whether
    the cache hits and is the only one that writes it.
    """
    shard = shard or Shard()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dataset = ImageDataset(dataset_path, xflip=False)
    try:
        num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
        key = CacheKey(dataset.content_hash, detector.sha256, num_items)
        found = _find_cached(cache_dir, key, _feature_dim(detector), progress) if shard.rank == 0 else None
        cached = broadcast_from_rank0(found, shard)
        if cached is not None:
            return cached
        features = dataset_features(
            dataset, detector, num_items=num_items, batch_size=batch_size, shard=shard, progress=progress
        )
    finally:
        dataset.close()
    entry = _entry(features.astype(FEATURE_DTYPE), key)
    if shard.rank == 0:
        save_features(features_cache_file(cache_dir, *key), entry)
    return entry


def save_features(path: Path, entry: RealFeatures) -> None:
    """Atomic .npz write (temporary sibling renamed over `path`), uncompressed so that reads are plain copies."""
    with atomic_file(path) as file:
        np.savez(
            file,
            features=np.ascontiguousarray(entry.features, dtype=FEATURE_DTYPE),
            num_items=np.int64(entry.num_items),
            content_hash=np.str_(entry.content_hash),
            detector_sha256=np.str_(entry.detector_sha256),
        )


def load_features(
    path: Path, content_hash: str, detector_sha256: str, num_items: int, feature_dim: int | None = None
) -> RealFeatures:
    """The entry at `path` if it holds this key; ValueError naming the file otherwise (damaged, another key)."""
    key = CacheKey(content_hash, detector_sha256, num_items)
    return _entry(_load_features(path, key, feature_dim, FEATURE_DTYPE), key)


def _find_cached(
    cache_dir: Path, key: CacheKey, feature_dim: int | None, progress: bool | LineProgress
) -> RealFeatures | None:
    """The features entry for `key`, else the features of an older statistics entry (saved as a features entry),
    else None. An unusable file is a miss, said in one line, and is overwritten by the recomputed entry."""
    path = features_cache_file(cache_dir, *key)
    if path.is_file():
        try:
            return load_features(path, *key, feature_dim)
        except ValueError as error:
            say(progress, f"{error}; recomputing the real features")
    legacy = cache_file(cache_dir, *key)
    if not _has_features(legacy):
        return None
    try:
        entry = _entry(_load_features(legacy, key, feature_dim, np.dtype(np.float32)).astype(FEATURE_DTYPE), key)
    except ValueError as error:
        say(progress, f"{error}; not reusing it for precision/recall")
        return None
    save_features(path, entry)
    return entry


def _has_features(path: Path) -> bool:
    """Whether `path` is a zip with a features member (statistics entries written for FID alone have none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "features.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _load_features(path: Path, key: CacheKey, feature_dim: int | None, dtype: np.dtype) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as archive:
            if read_key(archive) != key:
                raise ValueError("written for another dataset, detector or image count")
            features = read_member(archive, "features", dtype, (key.num_items, feature_dim), path.stat().st_size)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{path}: unusable real-feature cache ({describe_error(error)})") from None
    if _any_nan(features):
        raise ValueError(f"{path}: unusable real-feature cache (features contain NaN)")
    return features


def _any_nan(features: np.ndarray) -> bool:
    # Infinities are allowed: float16 rounds features above 65504 to inf, as PR's own rounding would, and refusing
    # them would recompute such an entry on every run. In row chunks: one boolean temporary of the whole array
    # would be N·D bytes (0.8 GB at 200k x 4096).
    return any(np.isnan(features[start : start + _NAN_CHUNK_ROWS]).any()
               for start in range(0, len(features), _NAN_CHUNK_ROWS))  # fmt: skip


def _feature_dim(detector: Detector) -> int | None:
    dim = getattr(detector, "feature_dim", None)
    return int(dim) if dim is not None else None
