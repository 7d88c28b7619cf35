"""2-D convolution combined with FIR up/downsampling, arranged to spend as few FLOPs and as little memory as possible.

Result equals: upsample by ``up`` with ``f`` (``upfirdn2d`` conventions, gain ``up**2``), pad, convolve with ``w``,
downsample by ``down`` with ``f``. Depending on the case the convolution runs before or after the filtering, as a
strided or a transposed convolution (NVIDIA's fast paths); every path is plain torch and differentiable to any order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylegan_core.ops.upfirdn2d import Padding, filter_size, parse_padding, upfirdn2d


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d (or conv_transpose2d); ``flip_weight=False`` turns torch's correlation into a true convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _resampling_padding(padding: Padding, f: torch.Tensor | None, up: int, down: int) -> tuple[int, int, int, int]:
    """Add to the caller's padding what keeps the filter centred when resampling (as in upsample2d/downsample2d)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def _transposed_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """Reorder ``[O, I/g, kh, kw]`` to the ``[I, O/g, kh, kw]`` layout conv_transpose2d expects."""
    out_channels, in_per_group, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def _upsampling_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None,
    up: int,
    down: int,
    pad: tuple[int, int, int, int],
    groups: int,
    flip_weight: bool,
    flip_filter: bool,
) -> torch.Tensor:
    """up > 1: a stride-``up`` transposed conv does zero insertion and the conv at once; then filter (and downsample).

    The transposed conv already yields ``kw - 1`` (``kh - 1``) extra border pixels, so that much is taken off the
    padding; whatever both sides still need to crop is cropped by the transposed conv's own padding.
    """
    kh, kw = w.shape[2], w.shape[3]
    px0, px1, py0, py1 = pad
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    crop_x = max(min(-px0, -px1), 0)
    crop_y = max(min(-py0, -py1), 0)
    # A transposed conv flips the kernel relative to conv2d, hence the inverted flip_weight.
    x = _conv(
        x,
        _transposed_weight(w, groups),
        stride=up,
        padding=(crop_y, crop_x),
        groups=groups,
        transpose=True,
        flip_weight=not flip_weight,
    )
    rest = [px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y]
    x = upfirdn2d(x, f, padding=rest, gain=up**2, flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def _check_arguments(x: torch.Tensor, w: torch.Tensor, up: int, down: int, groups: int) -> None:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample: x and w must be 4-D, got {list(x.shape)} and {list(w.shape)}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be ints >= 1, got up={up!r}, down={down!r}")
    if not isinstance(groups, int) or groups < 1 or w.shape[0] % groups or x.shape[1] != w.shape[1] * groups:
        raise ValueError(
            f"conv2d_resample: x {list(x.shape)} and w {list(w.shape)} do not fit groups={groups} "
            "(need x channels = w.shape[1] * groups and w.shape[0] divisible by groups)"
        )


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve ``x`` [N, C, H, W] with ``w`` [O, C/groups, kh, kw], upsampling and/or downsampling with filter ``f``.

    ``padding`` (int, [x, y] or [x0, x1, y0, y1]) is relative to the upsampled image. ``flip_weight=True`` is
    correlation (like ``torch.nn.functional.conv2d``), False a true convolution.
    """
    _check_arguments(x, w, up, down, groups)
    kh, kw = w.shape[2], w.shape[3]
    pad = _resampling_padding(padding, f, up, down)
    px0, px1, py0, py1 = pad

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # 1x1 conv commutes with per-channel filtering: shrink first so the conv sees fewer pixels.
        x = upfirdn2d(x, f, down=down, padding=list(pad), flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        # ...and convolve before growing the image.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=list(pad), gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        # Filter at full size, then a strided conv skips the outputs downsampling would discard.
        x = upfirdn2d(x, f, padding=list(pad), flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        return _upsampling_conv(x, w, f, up, down, pad, groups, flip_weight, flip_filter)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
    # Asymmetric or negative padding without resampling: pad (or crop) explicitly, then convolve.
    x = F.pad(x, [px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
