"""Fused multiply-add used by the non-fused modulated convolution (demodulation and noise in one op)."""

from __future__ import annotations

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` with broadcasting, in one kernel; gradients (of any order) reduce to each input's shape."""
    return torch.addcmul(c, a, b)
