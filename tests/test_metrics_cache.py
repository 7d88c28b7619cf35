"""Real-image statistics are cached by dataset content, detector and count — never by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_support import CountingDetector, lying_npy_header, npz_bytes, random_images, write_zip
from numerics import assert_close_to_scale

from stylegan_core.metrics import feature_statistics, real_statistics
from stylegan_core.metrics.cache import cache_file, load_statistics


def _stats(path: Path, detector: CountingDetector, cache: Path, **kwargs):
    return real_statistics(path, detector, cache, batch_size=4, progress=False, **kwargs)


def test_statistics_match_direct_computation(tmp_path: Path) -> None:
    images = random_images(10, resolution=8)
    path = write_zip(tmp_path / "data.zip", images)
    detector = CountingDetector()
    stats = _stats(path, detector, tmp_path / "cache")
    direct = detector(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).detach().numpy()
    mu, sigma = feature_statistics(direct)
    # Batches of 4 vs all 10 at once: BLAS blocks the float32 matmul differently, so a few ulp of each array's scale.
    assert_close_to_scale(stats.features, direct, rtol=1e-5, what="features")
    assert_close_to_scale(stats.mu, mu, rtol=1e-5, what="mu")
    assert_close_to_scale(stats.sigma, sigma, rtol=1e-5, what="sigma")
    assert stats.num_items == 10 and stats.mu.dtype == np.float64


def test_cache_hits_by_content_and_misses_when_content_changes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    detector = CountingDetector()
    path = write_zip(tmp_path / "data.zip", random_images(6, resolution=8, seed=1))
    first = _stats(path, detector, cache)
    assert detector.images_seen == 6

    again = _stats(path, detector, cache)  # same file: hit
    assert detector.images_seen == 6
    np.testing.assert_array_equal(again.sigma, first.sigma)  # read back from the cache file: bit-exact

    moved = tmp_path / "elsewhere" / "renamed.zip"
    moved.parent.mkdir()
    write_zip(moved, random_images(6, resolution=8, seed=1))  # same content, other path (and zip timestamps): hit
    _stats(moved, detector, cache)
    assert detector.images_seen == 6

    write_zip(path, random_images(6, resolution=8, seed=2))  # rebuilt at the same path with other content: miss
    rebuilt = _stats(path, detector, cache)
    assert detector.images_seen == 12
    assert not np.allclose(rebuilt.mu, first.mu)
    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_key_includes_detector_and_count(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_zip(tmp_path / "data.zip", random_images(6, resolution=8))
    detector = CountingDetector(sha256="a" * 64)
    _stats(path, detector, cache)
    _stats(path, detector, cache, max_items=4)  # fewer images: another entry
    assert detector.images_seen == 6 + 4
    other = CountingDetector(sha256="b" * 64)  # other weights: miss
    _stats(path, other, cache)
    assert other.images_seen == 6
    _stats(path, detector, cache, max_items=100)  # clipped to the 6 there are: the first entry again
    assert detector.images_seen == 10


def test_features_are_added_when_a_later_call_needs_them(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_zip(tmp_path / "data.zip", random_images(5, resolution=8))
    detector = CountingDetector()
    assert _stats(path, detector, cache, need_features=False).features is None
    assert _stats(path, detector, cache, need_features=False).features is None and detector.images_seen == 5
    assert _stats(path, detector, cache, need_features=True).features.shape == (5, 16)
    assert _stats(path, detector, cache, need_features=False).features is not None  # the richer entry serves both
    assert detector.images_seen == 10


def test_cache_file_is_plain_npz_written_atomically(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_zip(tmp_path / "data.zip", random_images(4, resolution=8))
    detector = CountingDetector()
    stats = _stats(path, detector, cache)
    file = cache_file(cache, stats.content_hash, detector.sha256, 4)
    assert [p.name for p in cache.iterdir()] == [file.name]  # no temporary files left behind
    with np.load(file, allow_pickle=False) as data:
        assert set(data.files) == {"mu", "sigma", "features", "num_items", "content_hash", "detector_sha256"}
    assert load_statistics(file).content_hash == stats.content_hash
    assert str(tmp_path) not in file.name and "data" not in file.name


def test_damaged_cache_entry_is_recomputed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_zip(tmp_path / "data.zip", random_images(4, resolution=8))
    detector = CountingDetector()
    stats = _stats(path, detector, cache)
    cache_file(cache, stats.content_hash, detector.sha256, 4).write_bytes(b"truncated")
    again = _stats(path, detector, cache)
    assert detector.images_seen == 8
    np.testing.assert_array_equal(again.mu, stats.mu)  # recomputed by the same kernels, batches, threads: bit-exact


def test_entry_whose_header_lies_is_named_and_recomputed(tmp_path: Path) -> None:
    # A covariance header promising 29 GB (60,000²) in a 1 kB file: refused before anything is allocated.
    cache = tmp_path / "cache"
    path = write_zip(tmp_path / "data.zip", random_images(4, resolution=8))
    detector = CountingDetector()
    stats = _stats(path, detector, cache)
    file = cache_file(cache, stats.content_hash, detector.sha256, 4)
    key = {"content_hash": np.array(stats.content_hash), "detector_sha256": np.array(detector.sha256),
           "num_items": np.array(4)}  # fmt: skip
    file.write_bytes(npz_bytes(mu=np.zeros(60_000), sigma=lying_npy_header((60_000, 60_000), "<f8"), **key))
    with pytest.raises(ValueError, match="unusable real-statistics cache") as error:
        load_statistics(file)
    assert str(error.value).startswith(f"{file}: ") and "more than the file's" in str(error.value)
    file.write_bytes(npz_bytes(mu=np.zeros(16), sigma=np.eye(16, dtype=np.float32), **key))  # float32 sigma
    with pytest.raises(ValueError, match=r"'sigma' is float32 \[16, 16\], expected float64"):
        load_statistics(file)
    again = _stats(path, detector, cache)
    assert detector.images_seen == 8
    np.testing.assert_array_equal(again.sigma, stats.sigma)


def test_default_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stylegan_core.metrics import default_cache_dir

    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gan-metrics"
