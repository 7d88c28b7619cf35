"""Autograd wiring of the compiled upfirdn2d kernel: gradients of any order.

upfirdn2d is linear in x, and its adjoint is another upfirdn2d: swap up and down, flip the filter (toggle
``flip_filter``) and re-pad so that each input position lines up with the outputs it fed. With output ``o`` reading
input ``i`` through tap ``k = i*up + pad0 - o*down`` (0 <= k < taps), the adjoint reads ``o`` from ``i`` through tap
``taps - 1 - k``, which is the forward rule with ``pad0' = taps - 1 - pad0``; ``pad1'`` is whatever makes the
adjoint's output exactly the input size. Because the backward is the same Function, every order of gradient works.
The filter gets no gradient (it is a fixed buffer in StyleGAN); a filter that requires one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass(frozen=True)
class UpfirdnParams:
    """Integer factors and paddings (x before y, as NVIDIA's), filter orientation and gain of one upfirdn2d call."""

    upx: int
    upy: int
    downx: int
    downy: int
    padx0: int
    padx1: int
    pady0: int
    pady1: int
    flip_filter: bool
    gain: float


def taps_size(f: torch.Tensor) -> tuple[int, int]:
    """(height, width) of the 2-D taps a filter stands for; a 1-D filter is separable: the same taps on both axes."""
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[0], f.shape[1]
    raise ValueError(f"upfirdn2d_cuda: filter must be 1-D (separable) or 2-D, got shape {list(f.shape)}")


def kernel_filter(f: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The filter in the precision the kernel accumulates in: float64 for float64 images, else float32.

    The kernel itself expands a 1-D filter into its outer product (the separable reference filters rows, then columns,
    with the same taps), flips it for a true convolution unless flip_filter, and applies the gain.
    """
    return f.to(torch.float64 if dtype == torch.float64 else torch.float32).contiguous()


def output_size(in_size: int, up: int, pad0: int, pad1: int, taps: int, down: int) -> int:
    return (in_size * up + pad0 + pad1 - taps + down) // down


def adjoint_params(
    p: UpfirdnParams, in_hw: tuple[int, int], out_hw: tuple[int, int], taps_hw: tuple[int, int]
) -> UpfirdnParams:
    """Parameters of the upfirdn2d that computes the gradient with respect to the input (see the module docstring)."""
    (in_h, in_w), (out_h, out_w), (taps_h, taps_w) = in_hw, out_hw, taps_hw
    return replace(
        p,
        upx=p.downx,
        upy=p.downy,
        downx=p.upx,
        downy=p.upy,
        padx0=taps_w - 1 - p.padx0,
        padx1=in_w * p.upx - out_w * p.downx + p.padx0 - p.upx + 1,
        pady0=taps_h - 1 - p.pady0,
        pady1=in_h * p.upy - out_h * p.downy + p.pady0 - p.upy + 1,
        flip_filter=not p.flip_filter,
    )


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, p: UpfirdnParams, backend: Any) -> torch.Tensor:  # noqa: ANN001
        y = backend.upfirdn2d(
            x.contiguous(),
            kernel_filter(f, x.dtype),
            p.upx,
            p.upy,
            p.downx,
            p.downy,
            p.padx0,
            p.padx1,
            p.pady0,
            p.pady1,
            p.flip_filter,
            p.gain,
        )
        ctx.save_for_backward(f)
        ctx.p, ctx.backend = p, backend
        ctx.in_hw, ctx.out_hw = (x.shape[2], x.shape[3]), (y.shape[2], y.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # noqa: ANN001, ANN205
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            q = adjoint_params(ctx.p, ctx.in_hw, ctx.out_hw, taps_size(f))
            dx = _Upfirdn2d.apply(dy, f, q, ctx.backend)
        return dx, None, None, None


def upfirdn2d_with_backend(
    backend: Any,
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """upfirdn2d through ``backend.upfirdn2d`` (the compiled module, or a stand-in with its signature in tests)."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d_cuda: x must be NCHW, got shape {list(x.shape)}")
    if f.requires_grad:
        raise ValueError("upfirdn2d_cuda: the filter must not require grad (the kernel gives it no gradient)")
    if len(up) != 2 or len(down) != 2 or len(padding) != 4 or min(*up, *down) < 1:
        raise ValueError(
            f"upfirdn2d_cuda: expected up=(x, y) >= 1, down=(x, y) >= 1 and 4 paddings, got "
            f"up={up}, down={down}, padding={padding}"
        )
    p = UpfirdnParams(*(int(v) for v in (*up, *down, *padding)), bool(flip_filter), float(gain))
    taps_h, taps_w = taps_size(f)
    out_w = output_size(x.shape[3], p.upx, p.padx0, p.padx1, taps_w, p.downx)
    out_h = output_size(x.shape[2], p.upy, p.pady0, p.pady1, taps_h, p.downy)
    if out_w < 1 or out_h < 1:
        raise ValueError(
            f"upfirdn2d_cuda: input {list(x.shape)} with filter {taps_h}x{taps_w}, up={up}, down={down}, "
            f"padding={padding} leaves an empty output ({out_h}x{out_w})"
        )
    return _Upfirdn2d.apply(x, f.to(x.device), p, backend)
