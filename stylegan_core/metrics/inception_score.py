"""Inception Score (Salimans et al. 2016) as NVIDIA's `is50k` computes it: class probabilities of NVIDIA's Inception
network with the output bias left out (`no_output_bias=True`), scored in 10 equal splits."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from stylegan_core.metric_names import IS_NUM_SPLITS


def inception_score(probabilities: ArrayLike, num_splits: int = IS_NUM_SPLITS) -> tuple[float, float]:
    """(mean, std) over `num_splits` splits of exp(E_x KL(p(y|x) ‖ p(y))), p(y) being the split's mean.

    Split i holds items [i·N // s, (i+1)·N // s), as NVIDIA splits them. Computed in float64 (NVIDIA: float32, a
    difference of ~1e-7 relative); a zero probability contributes 0 (0·log 0 = 0) where NVIDIA's formula gives NaN.
    The std is the population one (numpy's default, as NVIDIA).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < num_splits or num_splits < 1:
        raise ValueError(
            f"inception_score: expected probabilities [N, classes] with N >= {num_splits}, got {list(probs.shape)}"
        )
    count = len(probs)
    scores = []
    for i in range(num_splits):
        part = probs[i * count // num_splits : (i + 1) * count // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
