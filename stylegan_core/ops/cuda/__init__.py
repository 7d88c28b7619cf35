"""Our own CUDA kernels for the fused ops, built on first use (see ``build.py``) and chosen by ``ops.dispatch``.

``bias_act_cuda`` and ``upfirdn2d_cuda`` take the arguments of the public ops with the defaults already parsed; the
public ``ops.bias_act`` / ``ops.upfirdn2d`` call them when ``choose_impl`` answers "cuda". The arithmetic of the
kernels lives in ``sg_ops_math.h``, which the CPU tests also compile and check against the reference.
"""

from __future__ import annotations

import torch

from stylegan_core.ops.cuda.bias_act_fn import bias_act_with_backend
from stylegan_core.ops.cuda.build import CudaOpsUnavailable, load_extension
from stylegan_core.ops.cuda.upfirdn2d_fn import upfirdn2d_with_backend


def bias_act_cuda(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``ops.bias_act`` on the compiled kernel (first and second order gradients); alpha/gain None: the defaults."""
    from stylegan_core.ops.bias_act import resolve_activation  # the single home of the activation defaults

    _, alpha, gain, clamp = resolve_activation(act, alpha, gain, clamp)
    return bias_act_with_backend(load_extension(), x, b, dim, act, alpha, gain, clamp)


def upfirdn2d_cuda(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int] = (1, 1),
    down: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """``ops.upfirdn2d`` on the compiled kernel (gradients of any order).

    ``up`` and ``down`` are ``(x, y)`` factors, ``padding`` is ``(x0, x1, y0, y1)``.
    """
    return upfirdn2d_with_backend(load_extension(), x, f, up, down, padding, flip_filter, gain)


__all__ = ["CudaOpsUnavailable", "bias_act_cuda", "load_extension", "upfirdn2d_cuda"]
