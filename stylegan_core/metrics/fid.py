"""Fréchet Inception Distance (Heusel et al. 2017) as NVIDIA computes it: float64 statistics, biased covariance."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

_CHUNK_ROWS = 4096


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and biased (1/N) covariance [D, D] of features [N, D], accumulated in float64 as NVIDIA does."""
    features = np.asarray(features)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"feature_statistics: expected features [N, D] with N > 0, got shape {list(features.shape)}")
    count, dim = features.shape
    mu = np.zeros(dim, dtype=np.float64)
    for start in range(0, count, _CHUNK_ROWS):
        mu += features[start : start + _CHUNK_ROWS].astype(np.float64).sum(axis=0)
    mu /= count
    # Centred sums (same value as NVIDIA's E[x xᵀ] - μμᵀ, without its cancellation), in chunks to bound memory.
    sigma = np.zeros([dim, dim], dtype=np.float64)
    for start in range(0, count, _CHUNK_ROWS):
        centred = features[start : start + _CHUNK_ROWS].astype(np.float64) - mu
        sigma += centred.T @ centred
    return mu, sigma / count


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """FID = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2·sqrtm(Σ1 Σ2)), in float64.

    Tr sqrtm(Σ1 Σ2) is the sum of the square roots of the eigenvalues of Σ1 Σ2 (similar to the PSD matrix
    Σ1^½ Σ2 Σ1^½, so they are real and ≥ 0 in exact arithmetic). This replaces NVIDIA's deprecated, much slower
    ``scipy.linalg.sqrtm(disp=False)``. Rank-deficient covariances (fewer samples than dimensions) leave many
    eigenvalues at rounding-noise level, slightly negative or complex: we take real parts and treat everything below
    the noise floor (D · eps · largest eigenvalue) as zero, so identical inputs give 0 rather than ±1e-4.
    """
    mu1, mu2 = _vector(mu1, "mu1"), _vector(mu2, "mu2")
    sigma1, sigma2 = _square(sigma1, "sigma1"), _square(sigma2, "sigma2")
    dim = mu1.shape[0]
    if not (mu2.shape[0] == sigma1.shape[0] == sigma2.shape[0] == dim):
        raise ValueError(
            f"frechet_distance: shapes disagree: mu1 {list(mu1.shape)}, sigma1 {list(sigma1.shape)}, "
            f"mu2 {list(mu2.shape)}, sigma2 {list(sigma2.shape)}"
        )
    eigenvalues = scipy.linalg.eigvals(sigma1 @ sigma2).real
    trace_sqrt_product = float(np.sqrt(_clip_noise(eigenvalues, dim)).sum())
    mean_term = float(np.square(mu1 - mu2).sum())
    return mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product


def frechet_distance_from_features(features1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """``frechet_distance(*feature_statistics(features1), mu2, sigma2)``, faster and exact-er when N1 < D.

    With A the centred features [N1, D] and Σ1 = AᵀA / N1, the non-zero eigenvalues of Σ1 Σ2 are those of the
    symmetric PSD N1 x N1 matrix A Σ2 Aᵀ / N1 (eig(XY) and eig(YX) share them). For a few hundred generated images
    against 2048-d features that is a small symmetric eigenproblem instead of a 2048² general one.
    """
    features1 = np.asarray(features1)
    mu1, sigma1 = feature_statistics(features1)
    count, dim = features1.shape
    if count >= dim:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    mu2, sigma2 = _vector(mu2, "mu2"), _square(sigma2, "sigma2")
    if sigma2.shape[0] != dim:
        raise ValueError(f"frechet_distance: features have {dim} dimensions, sigma2 is {list(sigma2.shape)}")
    centred = features1.astype(np.float64) - mu1
    gram = centred @ sigma2 @ centred.T / count
    eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2)
    trace_sqrt_product = float(np.sqrt(_clip_noise(eigenvalues, dim)).sum())
    mean_term = float(np.square(mu1 - mu2).sum())
    return mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product


def _clip_noise(eigenvalues: np.ndarray, dim: int) -> np.ndarray:
    """Zero every eigenvalue below the rounding-noise floor D · eps · max|λ| (they are 0 in exact arithmetic)."""
    noise_floor = dim * np.finfo(np.float64).eps * float(np.abs(eigenvalues).max(initial=0.0))
    return np.where(eigenvalues > noise_floor, eigenvalues, 0.0)


def _vector(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"frechet_distance: {name} must be a vector [D], got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"frechet_distance: {name} has non-finite values")
    return array


def _square(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"frechet_distance: {name} must be a square matrix [D, D], got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"frechet_distance: {name} has non-finite values")
    return array
