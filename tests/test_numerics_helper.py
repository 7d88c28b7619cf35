"""The shared tolerance rule of tests/numerics.py: scale-aware where element-wise rtol is not, and it still fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numerics import assert_close_to_scale, scale_error


def test_near_zero_entry_is_judged_at_the_array_scale() -> None:
    reference = np.array([1.0, -0.5, -0.0031797537], np.float32)  # the issue-12 case: one entry near zero
    actual = reference + np.array([0, 0, 1.7e-8], np.float32)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(actual, reference, rtol=1e-6)  # element-wise rtol trips on the near-zero entry
    assert_close_to_scale(actual, reference, rtol=1e-6, what="features")  # 1.7e-8 <= 1e-6 * 1.0


def test_error_above_the_bound_fails_with_the_observed_ratio() -> None:
    reference = torch.tensor([2.0, -4.0, 0.0])
    actual = reference + torch.tensor([0, 4e-4, 0])
    with pytest.raises(AssertionError, match=r"images: max\|a-b\| 4\.00\de-04 > .*max\|a-b\|/scale 1\.000e-04"):
        assert_close_to_scale(actual, reference, rtol=1e-5, what="images")
    assert_close_to_scale(actual, reference, rtol=1.01e-4)


def test_shape_nan_and_explicit_scale() -> None:
    with pytest.raises(AssertionError, match="shape"):
        assert_close_to_scale(np.zeros(3), np.zeros(4), rtol=1)
    with pytest.raises(AssertionError, match="NaN"):
        assert_close_to_scale([np.nan, 1.0], [0.0, 1.0], rtol=1)
    with pytest.raises(AssertionError):
        assert_close_to_scale([np.inf], [1.0], rtol=1e3)
    assert_close_to_scale([np.nan, 1.0], [np.nan, 1.0], rtol=0)  # NaN where the reference has NaN is agreement
    assert scale_error([1.0, 2.5], [1.0, 2.0]) == (0.5, 2.0)
    assert_close_to_scale([0.1005], [0.1], rtol=1e-3, scale=10.0)  # a sample judged at its tensor's scale
    with pytest.raises(AssertionError):
        assert_close_to_scale([0.1005], [0.1], rtol=1e-3)
