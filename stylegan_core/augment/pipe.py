"""The ADA augmentation pipeline (Karras et al. 2020, "Training GANs with Limited Data", section 2.3 and appendix B).

Every transform is applied per sample with probability ``multiplier * p``; ``p`` is the overall strength that the ADA
controller adjusts. Geometric transforms are composed into one inverse 3x3 matrix and executed once (reflect pad,
2x upsample with the sym6 low-pass, bilinear resampling, 2x downsample), colour transforms into one 4x4 matrix, then
image-space filtering, additive noise and cutout follow. Random values are drawn in the same order, shapes and dtype
as NVIDIA's ``training/augment.py``, so the same generator state yields the same per-sample strengths.

As in NVIDIA's pipeline, flips and quarter turns also go through the resampler. sym6 is not symmetric, so a mirrored
axis comes out shifted by about 0.1 px with slightly altered high frequencies; integer translations are exact.

Two deliberate differences from NVIDIA, both invisible to training statistics:
- samples whose geometric (or filter) transform is the identity skip the resampling instead of being resampled
  by an identity matrix, so unaugmented samples stay bit-exact and low ``p`` costs little (one host sync per call);
- in debug mode the discrete choices at percentile 1 stay in range (NVIDIA computes floor(2 * 1) = 2, which turns
  xflip into an x-scale of -3 and lumaflip into no reflection) and Gaussian quantiles stay finite at 0 and 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stylegan_core.augment import transforms as T
from stylegan_core.augment.grid_sample import grid_sample_bilinear
from stylegan_core.augment.wavelets import IMGFILTER_EXPECTED_POWER, SYM2, SYM6, octave_filter_bank
from stylegan_core.ops import downsample2d, setup_filter, upsample2d

SUPPORTED_CHANNELS = (1, 3)

# Probability multipliers, in the order the pipeline applies them (the 4 imgfilter bands make the paper's 18).
MULTIPLIERS = (
    "xflip", "rotate90", "xint",                                   # pixel blitting
    "scale", "rotate", "aniso", "xfrac",                           # general geometric
    "brightness", "contrast", "lumaflip", "hue", "saturation",     # colour
    "imgfilter",                                                   # image-space filtering
    "noise", "cutout",                                             # image-space corruptions
)  # fmt: skip


class AugmentPipe(torch.nn.Module):
    """NVIDIA's ``AugmentPipe``: the keyword arguments and defaults are those of :class:`AugmentSettings` (all
    probability multipliers 0, i.e. off). ``p`` is the initial value of the ``p`` buffer (NVIDIA starts it at 1;
    training overwrites it with ``augment_p`` and the ADA controller moves it). The state dict holds only ``p``.
    """

    def __init__(self, *, p: float = 1.0, **settings: float | Sequence[float]) -> None:
        super().__init__()
        try:
            self.settings = T.AugmentSettings(**settings)  # type: ignore[arg-type]
        except TypeError as error:
            valid = ", ".join(f.name for f in dataclasses.fields(T.AugmentSettings))
            raise TypeError(f"AugmentPipe: {error}; valid arguments: p, {valid}") from None
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        # Constant filters are rebuilt from the wavelet tables, so they stay out of the state dict.
        self.register_buffer("geom_filter", setup_filter(list(SYM6)), persistent=False)
        bank = octave_filter_bank(SYM2, num_bands=len(IMGFILTER_EXPECTED_POWER))
        self.register_buffer("filter_bank", torch.as_tensor(bank, dtype=torch.float32), persistent=False)
        self.register_buffer("expected_power", torch.tensor(IMGFILTER_EXPECTED_POWER), persistent=False)

    def extra_repr(self) -> str:
        enabled = [f"{name}={getattr(self.settings, name):g}" for name in MULTIPLIERS if getattr(self.settings, name)]
        return f"p={float(self.p):g}, " + (", ".join(enabled) or "all transforms off")

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None) -> torch.Tensor:
        """Augment ``images`` [N, C, H, W] (C = 1 or 3). ``debug_percentile`` in [0, 1] forces every enabled
        transform to the same deterministic strength for all samples, whatever ``p``, to visualise the pipeline."""
        _check_images(images)
        s = self.settings
        draws = T.Draws(images.shape[0], images.device, self.p, debug_percentile)
        _, num_channels, height, width = images.shape

        geometric = T.blit_matrix(draws, s, width, height)
        geometric = T.general_geometric_matrix(draws, geometric, s, width, height)
        if geometric is not None:
            eye = torch.eye(3, device=geometric.device)
            changed = (geometric != eye).flatten(1).any(dim=1)
            images = _on_changed_samples(images, changed, self._resample, geometric)

        colour = T.colour_matrix(draws, s, num_channels)
        if colour is not None:
            images = _apply_colour(images, colour.to(images.dtype))

        if s.imgfilter > 0:
            gains, changed = T.band_gains(draws, s, self.expected_power)
            taps = gains.to(self.filter_bank.dtype) @ self.filter_bank  # [batch, tap]
            images = _on_changed_samples(images, changed, _filter_separable, taps)

        if s.noise > 0:
            sigma = T.noise_sigma(draws, s)
            images = images + (torch.randn(images.shape, device=images.device) * sigma).to(images.dtype)
        if s.cutout > 0:
            images = images * T.cutout_mask(draws, s, width, height).to(images.dtype)
        return images

    def _resample(self, images: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """Resample each image so that output pixel q shows input pixel ``inverse @ q`` (pixel units, centre origin)."""
        n, c, h, w = images.shape
        filter_pad = self.geom_filter.shape[0] // 4  # a quarter of the sym6 support, in input pixels
        mx0, mx1, my0, my1 = _reflect_margin(inverse, w, h, filter_pad)
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        images = upsample2d(images, self.geom_filter, up=2)

        # Map normalised output coordinates of the 2x canvas (which has filter_pad extra pixels per side so the
        # downsampling filter sees valid data) to normalised coordinates of the padded, upsampled input. The half
        # pixel shifts account for where upsample2d puts its samples relative to the input pixel centres.
        out_h, out_w = 2 * (h + 2 * filter_pad), 2 * (w + 2 * filter_pad)
        to_input = (
            T.affine_np(2 / images.shape[3], 2 / images.shape[2])
            @ T.affine_np(1, 1, -0.5, -0.5)
            @ T.affine_np(2, 2)
            @ T.affine_np(1, 1, (mx0 - mx1) / 2, (my0 - my1) / 2)
        )
        from_output = T.affine_np(0.5, 0.5) @ T.affine_np(1, 1, 0.5, 0.5) @ T.affine_np(out_w / 2, out_h / 2)
        theta = torch.as_tensor(to_input, dtype=inverse.dtype, device=inverse.device) @ inverse
        theta = (theta @ torch.as_tensor(from_output, dtype=inverse.dtype, device=inverse.device)).to(images.dtype)
        grid = F.affine_grid(theta[:, :2, :], [n, c, out_h, out_w], align_corners=False)
        images = grid_sample_bilinear(images, grid)
        return downsample2d(images, self.geom_filter, down=2, padding=-2 * filter_pad, flip_filter=True)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"AugmentPipe: images must be a floating-point [N, C, H, W] tensor, got {shape}")
    if images.shape[1] not in SUPPORTED_CHANNELS:
        raise ValueError(
            f"AugmentPipe: images have {images.shape[1]} channels; supported are {SUPPORTED_CHANNELS} "
            "(RGB or greyscale, as NVIDIA's pipeline)"
        )


def _on_changed_samples(
    images: torch.Tensor,
    changed: torch.Tensor,
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: torch.Tensor,
) -> torch.Tensor:
    """``apply(images[i], params[i])`` for the samples where ``changed`` [batch] is set; the others pass unchanged.

    Skipping identity samples keeps them bit-exact and saves the expensive resampling when p is small (early in ADA
    training almost nothing is augmented). Costs one host sync: the subset size decides the shapes.
    """
    selected = changed.nonzero()[:, 0]
    if selected.numel() == 0:
        return images
    if selected.numel() == images.shape[0]:
        return apply(images, params)
    return images.index_copy(0, selected, apply(images[selected], params[selected]))


def _reflect_margin(inverse: torch.Tensor, width: int, height: int, filter_pad: int) -> list[int]:
    """Reflect padding [x0, x1, y0, y1] that covers where the output corners land in the input, plus the filter
    support; capped at size - 1 (reflection cannot go further; beyond it the resampler reads zeros, as NVIDIA)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], dtype=inverse.dtype)
    landed = (inverse @ corners.to(inverse.device))[:, :2, :]  # [batch, xy, corner]
    landed = landed.transpose(0, 1).flatten(1)  # [xy, batch * corner]
    reach = torch.cat([-landed, landed]).amax(dim=1).cpu().double()  # [left, top, right, bottom] from the centre
    margin = reach + torch.tensor([2 * filter_pad - cx, 2 * filter_pad - cy] * 2, dtype=torch.float64)
    limit = torch.tensor([width - 1, height - 1] * 2, dtype=torch.float64)
    x0, y0, x1, y1 = margin.clamp(min=0).minimum(limit).ceil().long().tolist()
    return [x0, x1, y0, y1]


def _apply_colour(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply the homogeneous colour matrix [batch, 4, 4]; greyscale uses the channel mean of its RGB rows."""
    batch_size, num_channels, height, width = images.shape
    flat = images.reshape(batch_size, num_channels, height * width)
    if num_channels == 3:
        out = matrix[:, :3, :3] @ flat + matrix[:, :3, 3:]
    else:
        mean_row = matrix[:, :3, :].mean(dim=1)  # [batch, 4]
        out = flat * mean_row[:, :3].sum(dim=1).reshape(-1, 1, 1) + mean_row[:, 3:].reshape(-1, 1, 1)
    eye = torch.eye(4, dtype=matrix.dtype, device=matrix.device)
    changed = (matrix != eye).flatten(1).any(dim=1).reshape(-1, 1, 1, 1)
    return torch.where(changed, out.reshape(images.shape), images)


def _filter_separable(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter every image with its own zero-phase taps [batch, tap] along x then y (reflect padding), so each band's
    2-D gain is the square of its 1-D gain, as in NVIDIA's pipeline."""
    batch_size, num_channels, height, width = images.shape
    radius = taps.shape[1] // 2
    kernels = taps.to(images.dtype).repeat_interleave(num_channels, dim=0)  # [batch * channels, tap]
    x = _reflect_pad(images.reshape(1, batch_size * num_channels, height, width), radius)
    x = F.conv2d(x, kernels[:, None, None, :], groups=batch_size * num_channels)
    x = F.conv2d(x, kernels[:, None, :, None], groups=batch_size * num_channels)
    return x.reshape(images.shape)


def _reflect_pad(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Reflect-pad the last two axes by ``radius``; unlike F.pad this also works when radius >= the image size
    (the 43-tap filter bank needs 21 pixels, more than a 16-pixel image has) by reflecting repeatedly."""
    if radius < min(x.shape[-2:]):
        return F.pad(x, [radius] * 4, mode="reflect")
    for axis in (-1, -2):
        size = x.shape[axis]
        index = np.arange(-radius, size + radius)
        period = max(2 * (size - 1), 1)
        index = np.mod(index, period)
        index = np.where(index >= size, period - index, index) if size > 1 else np.zeros_like(index)
        x = x.index_select(axis % x.ndim, torch.as_tensor(index, device=x.device))
    return x
