"""One tolerance rule for every float comparison between two computation paths in the tests.

``max|actual - reference| <= rtol * scale + atol`` with ``scale = max|reference|`` unless given. Rounding of a
float32 computation is a fraction of the largest magnitude it handles, not of each element: an entry that
happens to land near zero (a covariance, a gradient, a feature after a projection) moves by the same few ulp of the
array's scale as any other, so an element-wise ``rtol`` fails on it the moment BLAS blocks a sum differently (other
batch size, thread count, vector width). This is the criterion of ``fixtures/reference/README.md``.

Choose ``rtol`` from the measured spread across CPU kernels (``ATEN_CPU_CAPABILITY`` default/avx2/avx512) and
thread counts (``benchmarks/cpu_spread.py``), with a margin, and say in a comment why the two sides differ at all.
Where both sides run the same kernels in the same order, compare bit-exactly instead and say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float64(value: Any) -> np.ndarray:
    """A torch tensor, numpy array, list or scalar as a float64 numpy array (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def scale_error(actual: Any, reference: Any, scale: float | None = None) -> tuple[float, float]:
    """(max|actual - reference|, scale); NaNs must sit at the same places on both sides and are then ignored."""
    a, r = as_float64(actual), as_float64(reference)
    if a.shape != r.shape:
        raise AssertionError(f"shape {a.shape} != reference {r.shape}")
    nan_a, nan_r = np.isnan(a), np.isnan(r)
    if not np.array_equal(nan_a, nan_r):
        raise AssertionError(f"NaN at {int(nan_a.sum())} places, reference at {int(nan_r.sum())}, not the same ones")
    keep = ~nan_r
    error = float(np.abs(a[keep] - r[keep]).max(initial=0.0))
    if scale is None:
        scale = float(np.abs(r[keep]).max(initial=0.0))
    return error, float(scale)


def assert_close_to_scale(
    actual: Any, reference: Any, rtol: float, atol: float = 0.0, what: str = "", scale: float | None = None
) -> None:
    """Fail unless ``max|actual - reference| <= rtol * scale + atol`` (``scale`` defaults to ``max|reference|``).

    The message gives the observed ``error / scale`` so a failure says how far past the claim it is."""
    label = f"{what}: " if what else ""
    try:
        error, scale = scale_error(actual, reference, scale)
    except AssertionError as problem:
        raise AssertionError(f"{label}{problem}") from None
    bound = rtol * scale + atol
    if not error <= bound:  # `not <=` so that an infinite or NaN error fails too
        ratio = error / scale if scale else float("inf")
        raise AssertionError(
            f"{label}max|a-b| {error:.3e} > {bound:.3e} = rtol {rtol:g} * scale {scale:.3e} + atol {atol:g}"
            f" (observed max|a-b|/scale {ratio:.3e})"
        )
