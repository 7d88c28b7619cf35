"""Upsample, FIR-filter and downsample 2-D images in one op (like ``scipy.signal.upfirdn`` on both axes).

Semantics follow NVIDIA's ``upfirdn2d``: insert ``up - 1`` zeros after every sample, pad (negative values crop) with
padding given relative to the upsampled image, convolve each channel with the filter ``f`` (a true convolution unless
``flip_filter``), then keep every ``down``-th sample. Scaling factors and paddings are given x first, then y.
The reference here is plain PyTorch and so supports gradients of any order (R1 and path length need them).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylegan_core.ops.dispatch import choose_impl

Scaling = int | Sequence[int]
Padding = int | Sequence[int]
FilterLike = torch.Tensor | Sequence[float] | Sequence[Sequence[float]] | float | None
_CPU = torch.device("cpu")


def parse_scaling(scaling: Scaling) -> tuple[int, int]:
    """An int or an ``[x, y]`` pair -> ``(sx, sy)``, both >= 1."""
    values = (scaling, scaling) if isinstance(scaling, numbers.Integral) else tuple(scaling)
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
        raise ValueError(f"upfirdn2d: scaling factor must be an int >= 1 or an [x, y] pair of them, got {scaling!r}")
    return int(values[0]), int(values[1])


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """An int, ``[x, y]`` or ``[x0, x1, y0, y1]`` -> ``(x0, x1, y0, y1)``; negative values crop."""
    values = (padding,) if isinstance(padding, numbers.Integral) else tuple(padding)
    if not all(isinstance(v, numbers.Integral) for v in values) or len(values) not in (1, 2, 4):
        raise ValueError(f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1] of ints, got {padding!r}")
    if len(values) == 1:
        return (int(values[0]),) * 4  # type: ignore[return-value]
    if len(values) == 2:
        return int(values[0]), int(values[0]), int(values[1]), int(values[1])
    return int(values[0]), int(values[1]), int(values[2]), int(values[3])


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Width and height of a prepared filter (``None`` is the 1x1 identity; 1-D filters are separable)."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[1], f.shape[0]
    raise ValueError(f"upfirdn2d: filter must be 1-D (separable) or 2-D, got shape {list(f.shape)}")


def setup_filter(
    f: FilterLike,
    device: torch.device = _CPU,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into the float32 tensor ``upfirdn2d`` expects.

    A 1-D filter becomes its 2-D outer product unless ``separable`` (default: separable when it has >= 8 taps).
    ``normalize`` makes the taps sum to 1; ``gain`` is spread over the axes (``gain ** (ndim / 2)``) so that a
    separable and a 2-D filter scale the image by the same amount.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(
            f"setup_filter: filter must be a non-empty scalar, 1-D or 2-D array, got shape {list(f.shape)}"
        )
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if separable and f.ndim != 1:
        raise ValueError(f"setup_filter: separable=True needs 1-D taps, got shape {list(f.shape)}")
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _insert_zeros(x: torch.Tensor, upx: int, upy: int) -> torch.Tensor:
    """Upsample by placing each sample at the top-left of an ``upy x upx`` block of zeros."""
    if upx == 1 and upy == 1:
        return x
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


def _fir_per_channel(x: torch.Tensor, f: torch.Tensor, downx: int, downy: int) -> torch.Tensor:
    """Correlate every channel with the same (already flipped and scaled) filter and subsample.

    A depthwise (grouped) conv2d is the fastest of the torch formulations on CPU (measured against a single-channel
    conv over the folded batch, shifted-slice sums and average pooling). A strided conv equals filtering followed by
    keeping every ``down``-th sample, without computing the discarded outputs. With few channels (RGB images in the
    augment pipe) the batch is folded into the groups too: CPU grouped convs with 3 groups take a path about 10x
    slower than with N*3 groups.
    """
    batch, channels, height, width = x.shape
    if f.numel() == 1:
        return (x * f.reshape([]))[:, :, ::downy, ::downx]
    fold = channels < _FOLD_BATCH_BELOW_CHANNELS and batch > 1
    if fold:
        x = x.reshape(1, batch * channels, height, width)
    groups = x.shape[1]
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(groups, 1, 1, 1), stride=(downy, downx), groups=groups)
    else:
        x = F.conv2d(x, f[None, None, None, :].repeat(groups, 1, 1, 1), stride=(1, downx), groups=groups)
        x = F.conv2d(x, f[None, None, :, None].repeat(groups, 1, 1, 1), stride=(downy, 1), groups=groups)
    return x.reshape(batch, channels, x.shape[2], x.shape[3]) if fold else x


# Measured on CPU: folding helps at 3 channels (upsample of 32x3x94x94: 838 -> 76 ms) and is neutral at 128.
_FOLD_BATCH_BELOW_CHANNELS = 16


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Plain PyTorch upfirdn2d on an NCHW tensor; see the module docstring."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be NCHW, got shape {list(x.shape)}")
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    filter_size(f)  # validates the rank

    x = _insert_zeros(x, upx, upy)
    # F.pad crops where a padding is negative.
    x = F.pad(x, [padx0, padx1, pady0, pady1])
    # conv2d correlates; NVIDIA's upfirdn2d convolves, so the filter is flipped unless flip_filter asks otherwise.
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    return _fir_per_channel(x, f, downx, downy)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Pad, upsample, filter and downsample ``x`` [NCHW] with the prepared filter ``f`` (see ``setup_filter``)."""
    if choose_impl("upfirdn2d", impl, x) == "cuda":
        from stylegan_core.ops.cuda import upfirdn2d_cuda

        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return upfirdn2d_cuda(x, f, parse_scaling(up), parse_scaling(down), parse_padding(padding), flip_filter, gain)
    return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter ``x`` keeping its size (plus ``padding``); the filter is centred, odd sizes exactly."""
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample by ``up`` with filter ``f``: output is ``up`` times the input size (plus ``padding``).

    The extra gain of ``upx * upy`` restores the mean brightness lost by inserting zeros.
    """
    upx, upy = parse_scaling(up)
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter with ``f`` and downsample by ``down``: output is the input size divided by ``down`` (plus ``padding``)."""
    downx, downy = parse_scaling(down)
    padx0, padx1, pady0, pady1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
