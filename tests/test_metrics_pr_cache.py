"""PR's real features are cached alone (float16 features, no mean or covariance); FID's cache is unchanged; cache
files are read as untrusted and entries of the older statistics kind are reused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_support import CountingDetector, lying_npy_header, npz_bytes, random_images, tiny_generator, write_zip
from vgg_standin import save_standin_vgg16

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.metrics import compute_metrics, precision_recall, real_statistics
from stylegan_core.metrics.cache import cache_file
from stylegan_core.metrics.feature_cache import features_cache_file, load_features, real_features, save_features
from stylegan_core.metrics.precision_recall import VGG16Features
from stylegan_core.metrics.sampling import dataset_features, dataset_label_sampler, generator_features
from stylegan_core.metrics.vgg import load_vgg16

DIM = 64
KEY_MEMBERS = {"num_items", "content_hash", "detector_sha256"}


def _features(path: Path, detector: CountingDetector, cache: Path, **kwargs):
    return real_features(path, detector, cache, batch_size=4, progress=False, **kwargs)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_zip(tmp_path / "data.zip", random_images(12, resolution=8))


def test_entry_holds_float16_features_and_no_statistics(tmp_path: Path, data: Path) -> None:
    detector = CountingDetector(feature_dim=DIM)
    entry = _features(data, detector, tmp_path / "cache")
    (file,) = (tmp_path / "cache").iterdir()  # one entry, no temporary file left behind
    assert file == features_cache_file(tmp_path / "cache", entry.content_hash, detector.sha256, 12)
    with np.load(file, allow_pickle=False) as stored:
        assert set(stored.files) == {"features"} | KEY_MEMBERS  # no mu, no sigma
        assert stored["features"].dtype == np.float16 and stored["features"].shape == (12, DIM)
    # The .npz is the features plus headers and the key: far below the D x D float64 covariance it used to carry.
    assert file.stat().st_size < 12 * DIM * 2 + 4096 < DIM * DIM * 8
    # Exactly the float32 features (same batches) rounded to float16, as precision_recall rounds them itself.
    stats = real_statistics(data, CountingDetector(feature_dim=DIM), tmp_path / "stats", batch_size=4, progress=False)
    np.testing.assert_array_equal(entry.features, stats.features.astype(np.float16))


def test_hit_reads_back_the_same_features_and_misses_on_another_key(tmp_path: Path, data: Path) -> None:
    cache = tmp_path / "cache"
    detector = CountingDetector(feature_dim=DIM)
    first = _features(data, detector, cache)
    again = _features(data, detector, cache)
    assert detector.images_seen == 12
    np.testing.assert_array_equal(again.features, first.features)
    _features(data, detector, cache, max_items=5)  # another count
    other = CountingDetector(feature_dim=DIM, sha256="b" * 64)  # other detector weights
    _features(data, other, cache)
    write_zip(data, random_images(12, resolution=8, seed=7))  # rebuilt at the same path with other content
    rebuilt = _features(data, detector, cache)
    assert (detector.images_seen, other.images_seen) == (12 + 5 + 12, 12)
    assert not np.array_equal(rebuilt.features, first.features)
    assert len(list(cache.glob("real-features-*.npz"))) == 4


def test_statistics_entry_of_earlier_versions_is_reused(tmp_path: Path, data: Path) -> None:
    # What PR wrote before it had its own entry: mean, covariance and float32 features under the statistics key.
    cache = tmp_path / "cache"
    detector = CountingDetector(feature_dim=DIM)
    legacy = real_statistics(data, detector, cache, batch_size=4, progress=False, need_features=True)
    entry = _features(data, detector, cache)
    assert detector.images_seen == 12  # read from the old entry, not recomputed
    np.testing.assert_array_equal(entry.features, legacy.features.astype(np.float16))
    assert features_cache_file(cache, entry.content_hash, detector.sha256, 12).is_file()  # converted once
    # A statistics entry without features (FID's) cannot serve PR: computed, silently.
    fid_only = tmp_path / "fid_only"
    real_statistics(data, detector, fid_only, batch_size=4, progress=False, need_features=False)
    _features(data, detector, fid_only)
    assert detector.images_seen == 12 + 12 + 12


def _damaged_entries(content_hash: str, sha256: str) -> dict[str, bytes]:
    key = {"content_hash": np.array(content_hash), "detector_sha256": np.array(sha256), "num_items": np.array(12)}
    good = np.zeros([12, DIM], np.float16)
    nan = good.copy()
    nan[3, 5] = np.nan
    return {
        "truncated": npz_bytes(features=good, **key)[:-100],
        "not a zip": b"not a zip file at all",
        "terabyte header": npz_bytes(features=lying_npy_header((1 << 30, 1 << 10)), **key),
        "short data": npz_bytes(features=lying_npy_header((12, DIM)), **key),
        "huge feature size": npz_bytes(features=lying_npy_header((12, 60_000)), **key),
        "float32": npz_bytes(features=good.astype(np.float32), **key),
        "other feature size": npz_bytes(features=np.zeros([12, DIM + 1], np.float16), **key),
        "other count": npz_bytes(features=good, **{**key, "num_items": np.array(11)}),
        "other dataset": npz_bytes(features=good, **{**key, "content_hash": np.array("0" * 64)}),
        "object key": npz_bytes(features=good, **{**key, "content_hash": np.array([content_hash], dtype=object)}),
        "no features": npz_bytes(**key),
        "nan": npz_bytes(features=nan, **key),
    }


def test_damaged_or_hostile_entries_are_named_and_recomputed(tmp_path: Path, data: Path, capsys) -> None:
    cache = tmp_path / "cache"
    detector = CountingDetector(feature_dim=DIM)
    good = _features(data, detector, cache)
    file = features_cache_file(cache, good.content_hash, detector.sha256, 12)
    for problem, content in _damaged_entries(good.content_hash, detector.sha256).items():
        file.write_bytes(content)
        with pytest.raises(ValueError, match="unusable real-feature cache") as error:
            load_features(file, good.content_hash, detector.sha256, 12, DIM)
        assert str(error.value).startswith(f"{file}: "), problem
        seen = detector.images_seen
        again = real_features(data, detector, cache, batch_size=4, progress=True)
        assert detector.images_seen == seen + 12, problem
        np.testing.assert_array_equal(again.features, good.features)
        assert f"{file}: unusable real-feature cache" in capsys.readouterr().err, problem
        assert load_features(file, good.content_hash, detector.sha256, 12, DIM).features.shape == (12, DIM)


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory) -> torch.nn.Module:
    return load_vgg16(save_standin_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16.pt", seed=0))


def test_pr_through_compute_metrics_caches_features_only(tmp_path: Path, vgg16: torch.nn.Module) -> None:
    G = tiny_generator()
    data = write_zip(tmp_path / "data.zip", random_images(9, resolution=16))
    cache = tmp_path / "cache"
    kwargs = dict(cache_dir=cache, batch_size=4, vgg16=vgg16, progress=False)
    cold = compute_metrics(G, data, ["pr93_full"], **kwargs)["pr93_full"]
    (file,) = cache.iterdir()
    assert file.name.startswith("real-features-")
    with np.load(file, allow_pickle=False) as stored:
        assert "sigma" not in stored.files and "mu" not in stored.files
        real = stored["features"]
    assert real.shape == (9, 16)  # the stand-in's 16-d features for the 9 reals
    written = file.stat().st_mtime_ns
    warm = compute_metrics(G, data, ["pr93_full"], **kwargs)["pr93_full"]
    assert dict(warm) == dict(cold)  # float16 features read back bit-exactly
    assert file.stat().st_mtime_ns == written  # a hit: read, not rewritten
    # The same value as the formula on features computed directly (the generated side recomputed with seed 0).
    detector = VGG16Features(vgg16)
    dataset = ImageDataset(data, xflip=False)
    try:
        direct_real = dataset_features(dataset, detector, num_items=9, batch_size=4, progress=False)
        fake = generator_features(G, detector, num_images=9, labels=dataset_label_sampler(dataset), batch_size=4,
                                  seed=0, progress=False)  # fmt: skip
    finally:
        dataset.close()
    assert tuple(cold.values()) == precision_recall(direct_real, fake, 3)


def test_fid_cache_keeps_mean_and_covariance(tmp_path: Path) -> None:
    data = write_zip(tmp_path / "data.zip", random_images(6, resolution=16))
    detector = CountingDetector(feature_dim=DIM)
    compute_metrics(tiny_generator(), data, ["fid6_full"], cache_dir=tmp_path / "cache", batch_size=4,
                    detector=detector, progress=False)  # fmt: skip
    (file,) = (tmp_path / "cache").iterdir()
    with np.load(file, allow_pickle=False) as stored:
        assert stored["mu"].shape == (DIM,) and stored["sigma"].shape == (DIM, DIM)
        assert stored["sigma"].dtype == np.float64
    assert file == cache_file(tmp_path / "cache", str(np.load(file)["content_hash"]), detector.sha256, 6)


def test_header_may_not_promise_more_than_the_file_holds(tmp_path: Path) -> None:
    # Without a known feature size any D up to 65536 passes the shape check; the file's own size still bounds it.
    key = {"content_hash": np.array("c" * 64), "detector_sha256": np.array("d" * 64), "num_items": np.array(200_000)}
    file = tmp_path / "real-features-x.npz"
    file.write_bytes(npz_bytes(features=lying_npy_header((200_000, 60_000)), **key))  # 24 GB promised, 1 kB there
    with pytest.raises(ValueError, match=r"'features' claims 24000000000 bytes, more than the file's \d+"):
        load_features(file, "c" * 64, "d" * 64, 200_000)


def test_infinite_features_are_kept(tmp_path: Path, data: Path) -> None:
    # float16 rounds |x| > 65504 to inf, exactly as precision_recall's own rounding would: such an entry is valid
    # (refusing it would recompute it on every run), only NaN marks a broken one.
    cache = tmp_path / "cache"
    detector = CountingDetector(feature_dim=DIM)
    entry = _features(data, detector, cache)
    features = entry.features.copy()
    features[0, 0] = np.inf
    file = features_cache_file(cache, entry.content_hash, detector.sha256, 12)
    save_features(file, dataclasses.replace(entry, features=features))
    again = _features(data, detector, cache)
    assert detector.images_seen == 12 and again.features[0, 0] == np.inf
