"""FID and KID formulas against independent oracles: torchmetrics' functions and scipy's sqrtm."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from numerics import assert_close_to_scale
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

from stylegan_core.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_distance,
    polynomial_mmd2,
)
from stylegan_core.metrics import fid as fid_module


def _features(rng: np.random.Generator, count: int, dim: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    mixing = rng.standard_normal([dim, dim]) / np.sqrt(dim)  # correlated features, like real ones
    return ((rng.standard_normal([count, dim]) @ mixing) * scale + shift).astype(np.float32)


def _torchmetrics_fid(mu1, sigma1, mu2, sigma2) -> float:
    return float(_compute_fid(*(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (mu1, sigma1, mu2, sigma2))))


@pytest.mark.parametrize(
    ("count", "dim", "scale"),
    [(400, 64, 1.0), (40, 96, 1.0), (40, 96, 30.0), (20, 96, 0.05)],
    ids=["full-rank", "rank-deficient", "rank-deficient-large", "rank-deficient-small"],
)
def test_frechet_distance_matches_torchmetrics(count: int, dim: int, scale: float) -> None:
    rng = np.random.default_rng(count + dim)
    mu1, sigma1 = feature_statistics(_features(rng, count, dim, scale))
    mu2, sigma2 = feature_statistics(_features(rng, count, dim, scale * 1.2, shift=0.1 * scale))
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    oracle = _torchmetrics_fid(mu1, sigma1, mu2, sigma2)
    assert ours > 0
    assert abs(ours - oracle) <= 1e-6 * abs(oracle)


@pytest.mark.parametrize(("count", "dim"), [(30, 96), (120, 48)], ids=["fewer-samples-than-dims", "more"])
def test_frechet_distance_from_features_equals_statistics_route(count: int, dim: int) -> None:
    rng = np.random.default_rng(count)
    generated = _features(rng, count, dim, 2.0)
    mu2, sigma2 = feature_statistics(_features(rng, 300, dim, 1.5, 0.2))
    expected = _torchmetrics_fid(*feature_statistics(generated), mu2, sigma2)
    assert frechet_distance_from_features(generated, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    mu1, sigma1 = feature_statistics(generated)
    assert abs(frechet_distance_from_features(generated, mu1, sigma1)) < 1e-9 * np.trace(sigma1)


def test_frechet_distance_matches_scipy_sqrtm_full_rank() -> None:
    rng = np.random.default_rng(3)
    mu1, sigma1 = feature_statistics(_features(rng, 500, 32))
    mu2, sigma2 = feature_statistics(_features(rng, 500, 32, 0.7, 0.3))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    expected = np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("count", "dim"), [(400, 64), (40, 96)], ids=["full-rank", "rank-deficient"])
def test_frechet_distance_of_identical_statistics_is_zero(count: int, dim: int) -> None:
    mu, sigma = feature_statistics(_features(np.random.default_rng(5), count, dim, scale=10))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_mean_term_only() -> None:
    sigma = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance([0, 0, 0], sigma, [1, 2, 2], sigma) == pytest.approx(9.0, abs=1e-12)


def test_frechet_distance_rejects_bad_shapes_and_values() -> None:
    eye = np.eye(3)
    with pytest.raises(ValueError, match="shapes disagree"):
        frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma1 must be a square"):
        frechet_distance(np.zeros(3), np.zeros([3, 2]), np.zeros(3), eye)
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.full(3, np.nan), eye, np.zeros(3), eye)


def test_feature_statistics_float64_biased_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    features = _features(np.random.default_rng(7), 103, 8, scale=100, shift=1000)
    monkeypatch.setattr(fid_module, "_CHUNK_ROWS", 10)  # several partial chunks
    mu, sigma = feature_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    # Chunked float64 sums vs numpy's one pass: rounding at the scale of each array (covariances near zero move too).
    assert_close_to_scale(mu, features.astype(np.float64).mean(axis=0), 1e-12, what="mu")
    assert_close_to_scale(sigma, np.cov(features.astype(np.float64), rowvar=False, bias=True), 1e-10, what="sigma")


def test_polynomial_mmd2_matches_torchmetrics() -> None:
    rng = np.random.default_rng(11)
    x, y = _features(rng, 50, 64), _features(rng, 50, 64, 1.3, 0.2)
    oracle = float(poly_mmd(torch.from_numpy(x).double(), torch.from_numpy(y).double()))
    assert polynomial_mmd2(x, y) == pytest.approx(oracle, rel=1e-6)


def test_kernel_distance_is_the_mean_over_seeded_subsets_of_torchmetrics_mmd() -> None:
    rng = np.random.default_rng(13)
    real, fake = _features(rng, 70, 32), _features(rng, 90, 32, 1.1, 0.3)
    ours = kernel_distance(real, fake, num_subsets=7, max_subset_size=40, seed=5)
    # The subsets ours draws: generated first, then real, from default_rng(seed), as documented.
    draws = np.random.default_rng(5)
    values = []
    for _ in range(7):
        fake_subset = fake[draws.choice(90, 40, replace=False)]
        real_subset = real[draws.choice(70, 40, replace=False)]
        values.append(float(poly_mmd(torch.from_numpy(real_subset).double(), torch.from_numpy(fake_subset).double())))
    assert ours == pytest.approx(np.mean(values), rel=1e-6)


def test_kernel_distance_subset_size_seed_and_sign() -> None:
    rng = np.random.default_rng(17)
    real, same, shifted = _features(rng, 30, 16), _features(rng, 25, 16), _features(rng, 25, 16, 1.0, 2.0)
    # m = min(30, 25, 1000) = 25: the whole generated set in every subset.
    near_zero = kernel_distance(real, same, num_subsets=20, seed=0)
    far = kernel_distance(real, shifted, num_subsets=20, seed=0)
    assert far > 0.5 and abs(near_zero) < 0.05 * far
    seeded = [kernel_distance(real, same, num_subsets=5, seed=seed) for seed in (1, 1, 2)]
    assert seeded[0] == seeded[1] != seeded[2]


def test_kernel_distance_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="expected"):
        kernel_distance(np.zeros([5, 3]), np.zeros([5, 4]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        kernel_distance(np.zeros([1, 3]), np.zeros([5, 3]))
