"""Per-sample parameters of the 18 ADA transforms: random strengths, probability gates and the matrices they form.

Nothing here touches pixels; ``pipe.py`` executes the matrices and gains. Strength distributions, probabilities and
the order of random draws follow NVIDIA's ``training/augment.py`` (see ada_inventory.md section 3.2).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

# Debug percentiles are kept this far from 0 and 1 so the Gaussian quantiles stay finite.
_DEBUG_EPSILON = 1e-6


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentSettings:
    """NVIDIA's AugmentPipe arguments and defaults. Multipliers scale the overall probability p; 0 disables."""

    xflip: float = 0  # x-flip
    rotate90: float = 0  # rotation by a multiple of 90 degrees
    xint: float = 0  # integer translation
    xint_max: float = 0.125  # range of integer translation, fraction of the image size
    scale: float = 0  # isotropic scaling
    rotate: float = 0  # arbitrary rotation
    aniso: float = 0  # anisotropic scaling
    xfrac: float = 0  # fractional translation
    scale_std: float = 0.2  # log2 standard deviation of isotropic scaling
    rotate_max: float = 1  # range of arbitrary rotation, 1 = full circle
    aniso_std: float = 0.2  # log2 standard deviation of anisotropic scaling
    xfrac_std: float = 0.125  # standard deviation of fractional translation, fraction of the image size
    brightness: float = 0  # additive brightness
    contrast: float = 0  # contrast scaling
    lumaflip: float = 0  # luma flip (Householder reflection about the grey axis)
    hue: float = 0  # hue rotation (RGB only)
    saturation: float = 0  # saturation scaling (RGB only)
    brightness_std: float = 0.2  # standard deviation of brightness
    contrast_std: float = 0.5  # log2 standard deviation of contrast
    hue_max: float = 1  # range of hue rotation, 1 = full circle
    saturation_std: float = 1  # log2 standard deviation of saturation
    imgfilter: float = 0  # image-space filtering
    imgfilter_bands: tuple[float, ...] = (1, 1, 1, 1)  # probability multipliers of the 4 frequency bands
    imgfilter_std: float = 1  # log2 standard deviation of the band amplification
    noise: float = 0  # additive RGB noise
    cutout: float = 0  # cutout
    noise_std: float = 0.1  # standard deviation of the additive noise
    cutout_size: float = 0.5  # side of the cutout square, fraction of the image size

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values = tuple(value) if field.name == "imgfilter_bands" else (value,)
            if not all(isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"AugmentPipe: {field.name} must be finite and >= 0, got {value!r}")
            object.__setattr__(self, field.name, tuple(map(float, values)) if len(values) != 1 else float(value))
        if len(self.imgfilter_bands) != 4:
            raise ValueError(f"AugmentPipe: imgfilter_bands needs 4 values (one per band), got {self.imgfilter_bands}")


class Draws:
    """Random draws of one forward call: a strength per sample, then a gate ``rand < probability`` per sample.

    Each transform draws its strengths first and its gate second, as NVIDIA does, so the random stream (and thus
    the strengths for a given seed) match. In debug mode (a percentile in [0, 1]) the gates are still drawn, so the
    stream advances as usual, but every sample gets the deterministic strength that the percentile gives.
    """

    def __init__(self, batch_size: int, device: torch.device, p: torch.Tensor, debug_percentile: float | None):
        self.batch_size = batch_size
        self.device = device
        self.p = p
        self.debug: float | None = None
        if debug_percentile is not None:
            self.debug = float(debug_percentile)
            if not 0 <= self.debug <= 1:
                raise ValueError(f"AugmentPipe: debug_percentile must be in [0, 1], got {debug_percentile!r}")

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand([self.batch_size, *shape], device=self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn([self.batch_size, *shape], device=self.device)

    def gated(
        self, values: torch.Tensor, probability: torch.Tensor, neutral: float, debug: Callable[[float], float]
    ) -> torch.Tensor:
        """``values`` where a per-sample coin with P(keep) = probability comes up, else ``neutral``."""
        coin = torch.rand([self.batch_size] + [1] * (values.ndim - 1), device=self.device)
        values = torch.where(coin < probability, values, torch.full_like(values, neutral))
        if self.debug is not None:
            values = torch.full_like(values, debug(self.debug))
        return values

    def choice(self, probability: torch.Tensor, count: int) -> torch.Tensor:
        """A uniform state in {0, ..., count - 1} (as float), 0 when not applied."""
        states = torch.floor(self.uniform() * count)
        return self.gated(states, probability, 0, lambda d: choice_quantile(d, count))

    def log2_normal(self, probability: torch.Tensor, std: float) -> torch.Tensor:
        """A factor 2^N(0, std^2), 1 when not applied."""
        factors = torch.exp2(self.normal() * std)
        return self.gated(factors, probability, 1, lambda d: 2 ** (normal_quantile(d) * std))

    def centred_normal(self, probability: torch.Tensor, std: float, *shape: int) -> torch.Tensor:
        """An offset N(0, std^2), 0 when not applied."""
        return self.gated(self.normal(*shape) * std, probability, 0, lambda d: normal_quantile(d) * std)

    def angle(self, probability: torch.Tensor, max_turns: float, debug_zero: bool = False) -> torch.Tensor:
        """An angle uniform in [-pi, pi) * max_turns, 0 when not applied."""
        theta = (self.uniform() * 2 - 1) * math.pi * max_turns
        return self.gated(theta, probability, 0, lambda d: 0.0 if debug_zero else (2 * d - 1) * math.pi * max_turns)


def choice_quantile(percentile: float, count: int) -> float:
    """Debug value of a uniform choice among ``count`` states: floor(percentile * count), kept in range."""
    return float(min(math.floor(percentile * count), count - 1))


def normal_quantile(percentile: float) -> float:
    """Debug value of a standard normal strength, NVIDIA's erfinv(2 * percentile - 1) (not scaled by sqrt 2)."""
    clamped = min(max(percentile, _DEBUG_EPSILON), 1 - _DEBUG_EPSILON)
    return float(torch.erfinv(torch.tensor(2 * clamped - 1, dtype=torch.float32)))


def half_normal_quantile(percentile: float) -> float:
    """Debug value of |N(0, 1)|, NVIDIA's erfinv(percentile)."""
    return float(torch.erfinv(torch.tensor(min(percentile, 1 - _DEBUG_EPSILON), dtype=torch.float32)))


def _batched(rows: list[list[torch.Tensor | float]]) -> torch.Tensor:
    """Stack per-sample entries ([batch] tensors or constants) into [batch, rows, cols] matrices."""
    like = next(e for row in rows for e in row if isinstance(e, torch.Tensor))
    entries = [e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape[0], len(rows), len(rows[0]))


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _batched([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def scale2d(sx: torch.Tensor | float, sy: torch.Tensor | float) -> torch.Tensor:
    return _batched([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def rotate2d_cos_sin(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _batched([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])


def affine_np(sx: float, sy: float, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """Constant 3x3 ``x -> diag(sx, sy) x + (tx, ty)`` in float64."""
    return np.array([[sx, 0, tx], [0, sy, ty], [0, 0, 1]], dtype=np.float64)


def _then(inverse: torch.Tensor | None, step: torch.Tensor) -> torch.Tensor:
    """Append ``step`` to an inverse transform (inverses compose in reverse: (A B)^-1 = B^-1 A^-1)."""
    return step if inverse is None else inverse @ step


def blit_matrix(draws: Draws, s: AugmentSettings, width: int, height: int) -> torch.Tensor | None:
    """Inverse [batch, 3, 3] of x-flip, rotation by k*90 degrees and integer translation (pixel units)."""
    inverse = None
    if s.xflip > 0:
        flip = draws.choice(s.xflip * draws.p, 2)
        inverse = _then(inverse, scale2d(1 - 2 * flip, 1))  # a mirror is its own inverse
    if s.rotate90 > 0:
        # Exact cos/sin of k * 90 degrees, so blits move whole pixels (no 1e-8 drift from cos(pi / 2)).
        quarters = draws.choice(s.rotate90 * draws.p, 4).long()
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=draws.device)[quarters]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=draws.device)[quarters]
        inverse = _then(inverse, rotate2d_cos_sin(cos, sin))
    if s.xint > 0:
        shift = (draws.uniform(2) * 2 - 1) * s.xint_max
        shift = draws.gated(shift, s.xint * draws.p, 0, lambda d: (2 * d - 1) * s.xint_max)
        inverse = _then(inverse, translate2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height)))
    return inverse


def general_geometric_matrix(
    draws: Draws, inverse: torch.Tensor | None, s: AugmentSettings, width: int, height: int
) -> torch.Tensor | None:
    """Append isotropic scaling, rotation, anisotropic scaling, rotation and fractional translation to ``inverse``."""
    if s.scale > 0:
        factor = draws.log2_normal(s.scale * draws.p, s.scale_std)
        inverse = _then(inverse, scale2d(1 / factor, 1 / factor))
    # Rotation is split into one before and one after the anisotropic scaling (so the stretch axis is random too),
    # each with p_rot chosen so that P(pre or post) = rotate * p.
    rotate_probability = 1 - torch.sqrt((1 - s.rotate * draws.p).clamp(0, 1))
    if s.rotate > 0:
        theta = draws.angle(rotate_probability, s.rotate_max)
        inverse = _then(inverse, rotate2d_cos_sin(torch.cos(theta), torch.sin(theta)))
    if s.aniso > 0:
        factor = draws.log2_normal(s.aniso * draws.p, s.aniso_std)
        inverse = _then(inverse, scale2d(1 / factor, factor))
    if s.rotate > 0:
        theta = draws.angle(rotate_probability, s.rotate_max, debug_zero=True)  # debug shows the pre-rotation only
        inverse = _then(inverse, rotate2d_cos_sin(torch.cos(theta), torch.sin(theta)))
    if s.xfrac > 0:
        shift = draws.centred_normal(s.xfrac * draws.p, s.xfrac_std, 2)
        inverse = _then(inverse, translate2d(-shift[:, 0] * width, -shift[:, 1] * height))
    return inverse


def colour_matrix(draws: Draws, s: AugmentSettings, num_channels: int) -> torch.Tensor | None:
    """Homogeneous [batch, 4, 4] RGB transform: brightness, contrast, luma flip, hue, saturation (in that order).

    Each step is written so that its neutral strength gives an exact identity matrix (pipe.py compares against it).
    """
    eye = torch.eye(4, device=draws.device)
    luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=draws.device) / math.sqrt(3)  # the grey axis
    luma_projection = torch.outer(luma, luma)
    matrix = eye.expand(draws.batch_size, 4, 4)
    if s.brightness > 0:
        b = draws.centred_normal(s.brightness * draws.p, s.brightness_std)
        matrix = _batched([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]]) @ matrix
    if s.contrast > 0:
        c = draws.log2_normal(s.contrast * draws.p, s.contrast_std)
        matrix = _batched([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]]) @ matrix
    if s.lumaflip > 0:
        flip = draws.choice(s.lumaflip * draws.p, 2)
        matrix = (eye - 2 * luma_projection * flip.reshape(-1, 1, 1)) @ matrix  # Householder reflection
    if s.hue > 0 and num_channels > 1:
        theta = draws.angle(s.hue * draws.p, s.hue_max)
        matrix = _rotate_about(luma, theta) @ matrix
    if s.saturation > 0 and num_channels > 1:
        factor = draws.log2_normal(s.saturation * draws.p, s.saturation_std).reshape(-1, 1, 1)
        # Scale the chroma (the part orthogonal to the grey axis); I + (f - 1)(I - P) is exactly I at f = 1.
        matrix = (eye + (factor - 1) * (eye - luma_projection)) @ matrix
    touched = s.brightness > 0 or s.contrast > 0 or s.lumaflip > 0 or (num_channels > 1 and s.hue + s.saturation > 0)
    return matrix if touched else None


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` [batch] about the unit ``axis`` (first 3 entries), Rodrigues' formula, homogeneous 4x4."""
    x, y, z = axis[0], axis[1], axis[2]
    cross = torch.zeros(4, 4, device=axis.device)
    cross[0, 1], cross[0, 2], cross[1, 2] = -z, y, -x
    cross = cross - cross.T  # [axis]_x, the cross-product matrix
    projection = torch.outer(axis, axis)
    eye3 = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], device=axis.device))
    cos, sin = torch.cos(theta).reshape(-1, 1, 1), torch.sin(theta).reshape(-1, 1, 1)
    homogeneous = torch.zeros(4, 4, device=axis.device)
    homogeneous[3, 3] = 1
    return cos * eye3 + sin * cross + (1 - cos) * projection + homogeneous


def band_gains(draws: Draws, s: AugmentSettings, expected_power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gains [batch, bands] of the filter bank and a [batch] mask of samples that are filtered at all.

    Each band is amplified by 2^N(0, std^2) with probability imgfilter * p * band multiplier; after each band the
    gains are rescaled so that an image with the expected 1/f power spectrum keeps its power.
    """
    num_bands = len(s.imgfilter_bands)
    gains = torch.ones([draws.batch_size, num_bands], device=draws.device)
    changed = torch.zeros([draws.batch_size], dtype=torch.bool, device=draws.device)
    for band, band_strength in enumerate(s.imgfilter_bands):
        amplification = draws.log2_normal(s.imgfilter * draws.p * band_strength, s.imgfilter_std)
        if draws.debug is not None and band_strength == 0:
            amplification = torch.ones_like(amplification)  # debug mode leaves disabled bands alone
        changed = changed | (amplification != 1)
        is_band = torch.arange(num_bands, device=draws.device) == band
        single = torch.where(is_band, amplification[:, None], torch.ones_like(gains))
        single = single / (expected_power * single.square()).sum(dim=1, keepdim=True).sqrt()
        gains = gains * single
    return gains, changed


def noise_sigma(draws: Draws, s: AugmentSettings) -> torch.Tensor:
    """Per-sample standard deviation [batch, 1, 1, 1] of additive noise: |N(0, noise_std^2)| with prob noise * p."""
    sigma = draws.normal(1, 1, 1).abs() * s.noise_std
    return draws.gated(sigma, s.noise * draws.p, 0, lambda d: half_normal_quantile(d) * s.noise_std)


def cutout_mask(draws: Draws, s: AugmentSettings, width: int, height: int) -> torch.Tensor:
    """[batch, 1, H, W] mask that is 0 inside a cutout_size square at a uniform centre (with prob cutout * p)."""
    size = torch.full([draws.batch_size, 2, 1, 1, 1], s.cutout_size, device=draws.device)
    size = draws.gated(size, s.cutout * draws.p, 0, lambda d: s.cutout_size)
    centre = draws.uniform(2, 1, 1, 1)
    if draws.debug is not None:
        centre = torch.full_like(centre, draws.debug)
    x = (torch.arange(width, device=draws.device).reshape(1, 1, 1, -1) + 0.5) / width
    y = (torch.arange(height, device=draws.device).reshape(1, 1, -1, 1) + 0.5) / height
    outside_x = (x - centre[:, 0]).abs() >= size[:, 0] / 2
    outside_y = (y - centre[:, 1]).abs() >= size[:, 1] / 2
    return (outside_x | outside_y).float()
