"""Modulated convolution with weight demodulation (StyleGAN2 paper, section 2.2, eq. 1-3)."""

from __future__ import annotations

import torch

from stylegan_core.ops.conv2d_resample import conv2d_resample
from stylegan_core.ops.fma import fma
from stylegan_core.ops.upfirdn2d import Padding


def _prenormalize_for_fp16(weight: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale weight and styles so the per-sample weights cannot overflow in fp16.

    Demodulation divides out any per-output-channel scale of the weight and any per-sample scale of the styles, so
    the result is unchanged apart from rounding.
    """
    out_channels, in_channels, kh, kw = weight.shape
    weight_max = weight.abs().amax(dim=[1, 2, 3], keepdim=True)  # [O111]
    weight = weight * ((in_channels * kh * kw) ** -0.5 / weight_max)
    styles = styles / styles.abs().amax(dim=1, keepdim=True)  # [NI]
    return weight, styles


def _demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(sum_{i,k} (w[o,i,k] * s[n,i])^2 + 1e-8)`` per sample and output channel, ``[N, O]``.

    Written as a matrix product of the squared styles with the weight's squared per-(o, i) energy, which is the same
    sum without materialising the ``[N, O, I, kh, kw]`` per-sample weights.
    """
    weight_energy = weight.square().sum(dim=[2, 3])  # [OI]
    return (styles.square() @ weight_energy.t() + 1e-8).rsqrt()  # [NO]


def _non_fused(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    conv_kwargs: dict,
) -> torch.Tensor:
    """Shared weights for the whole batch: scale the input channels by the styles, convolve, scale the outputs."""
    batch_size = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), **conv_kwargs)
    if dcoefs is not None and noise is not None:
        return fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
    if dcoefs is not None:
        return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
    if noise is not None:
        return x + noise.to(x.dtype)
    return x


def _fused(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    conv_kwargs: dict,
) -> torch.Tensor:
    """Per-sample weights: fold the batch into channels and run one grouped convolution with ``groups = N``."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [NOIkk]
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, batch_size * in_channels, *x.shape[2:])
    w = w.reshape(batch_size * out_channels, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), groups=batch_size, **conv_kwargs)
    x = x.reshape(batch_size, out_channels, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """Convolve ``x`` [N, I, H, W] with ``weight`` [O, I, kh, kw] modulated per sample by ``styles`` [N, I].

    ``noise`` (broadcastable to the output) is added after demodulation. ``fused_modconv`` selects one grouped
    convolution with per-sample weights (inference) or a shared convolution with activations scaled before and after
    (training); both give the same result up to rounding.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels or tuple(styles.shape) != (batch_size, in_channels):
        raise ValueError(
            f"modulated_conv2d: expected x [N, {in_channels}, H, W] and styles [N, {in_channels}], "
            f"got x {list(x.shape)} and styles {list(styles.shape)}"
        )
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _prenormalize_for_fp16(weight, styles)
    dcoefs = _demodulation_coefficients(weight, styles) if demodulate else None
    conv_kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    if fused_modconv:
        return _fused(x, weight, styles, dcoefs, noise, conv_kwargs)
    return _non_fused(x, weight, styles, dcoefs, noise, conv_kwargs)
