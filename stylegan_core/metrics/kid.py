"""Kernel Inception Distance (Bińkowski et al. 2018) as NVIDIA computes it, with an explicit seed."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

NUM_SUBSETS = 100
MAX_SUBSET_SIZE = 1000


def polynomial_mmd2(features1: ArrayLike, features2: ArrayLike) -> float:
    """Unbiased MMD² between two equally sized samples [m, D] under the kernel k(x, y) = (x·y / D + 1)³ (float64)."""
    x = np.asarray(features1, dtype=np.float64)
    y = np.asarray(features2, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(
            f"polynomial_mmd2: expected two [m, D] arrays with m >= 2, got {list(x.shape)} and {list(y.shape)}"
        )
    m, dim = x.shape
    within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
    between = (x @ y.T / dim + 1) ** 3
    # The within-sample sums leave out the diagonal (k(x_i, x_i)): that is what makes the estimate unbiased.
    within_sum = within.sum() - np.trace(within)
    return float(within_sum / (m * (m - 1)) - 2 * between.sum() / (m * m))


def kernel_distance(
    feats1: ArrayLike,
    feats2: ArrayLike,
    num_subsets: int = NUM_SUBSETS,
    max_subset_size: int = MAX_SUBSET_SIZE,
    seed: int = 0,
) -> float:
    """KID: mean unbiased polynomial MMD² over `num_subsets` random subsets of m = min(N1, N2, max_subset_size).

    Subsets are drawn without replacement, from `feats2` first and then `feats1` as NVIDIA draws generated then
    real; NVIDIA's RNG is unseeded, ours is ``numpy.random.default_rng(seed)``.
    """
    x = np.asarray(feats1)
    y = np.asarray(feats2)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"kernel_distance: expected [N1, D] and [N2, D], got {list(x.shape)} and {list(y.shape)}")
    if num_subsets < 1 or max_subset_size < 2:
        raise ValueError(
            f"kernel_distance: num_subsets must be >= 1 and max_subset_size >= 2, got {num_subsets} "
            f"and {max_subset_size}"
        )
    m = min(len(x), len(y), max_subset_size)
    if m < 2:
        raise ValueError(f"kernel_distance: needs at least 2 samples on each side, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        subset2 = y[rng.choice(len(y), m, replace=False)]
        subset1 = x[rng.choice(len(x), m, replace=False)]
        total += polynomial_mmd2(subset1, subset2)
    return total / num_subsets
