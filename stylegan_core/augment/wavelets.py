"""Wavelet low-pass filters used by the augmentation pipeline, and the image-space filter bank built from them.

The coefficients are the standard low-pass *decomposition* filters of Daubechies' least-asymmetric ("symlet")
orthogonal wavelets, as tabulated in I. Daubechies, "Ten Lectures on Wavelets" (SIAM 1992) and distributed by
PyWavelets (``pywt.Wavelet("sym2").dec_lo``, ``pywt.Wavelet("sym6").dec_lo``); NVIDIA's ADA pipeline uses the same
ones. Orthogonality (taps sum to sqrt(2), shifts by two are orthonormal) is what makes a 2x upsample followed by the
flipped 2x downsample an identity, and tests check it so a mistyped digit cannot pass unnoticed.
"""

from __future__ import annotations

import numpy as np

# sym2 (4 taps; identical to db2): drives the 4-band filter bank of the `imgfilter` augmentation.
SYM2 = (
    -0.12940952255092145,
    0.22414386804185735,
    0.836516303737469,
    0.48296291314469025,
)

# sym6 (12 taps): the low-pass used around the bilinear resampling of the geometric augmentations.
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)

# Expected power of natural images in each band of the filter bank (a 1/f spectrum: low band 10x the others).
# `imgfilter` rescales its band gains so that an image with this spectrum keeps its overall power.
IMGFILTER_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


def _zero_stuff(taps: np.ndarray) -> np.ndarray:
    """Insert one zero between consecutive taps (upsampling a filter by two: H(z) -> H(z^2))."""
    out = np.zeros(2 * taps.shape[-1] - 1, dtype=np.float64)
    out[::2] = taps
    return out


def _centre(taps: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad an odd-length filter symmetrically to ``length`` taps."""
    before = (length - taps.size) // 2
    return np.pad(taps, (before, length - taps.size - before))


def octave_filter_bank(lowpass: tuple[float, ...], num_bands: int = 4) -> np.ndarray:
    """Split the spectrum into ``num_bands`` octave bands with the orthogonal wavelet ``lowpass`` H(z).

    The half-band pair ``L = H(z)H(1/z)/2`` and ``B = H(-z)H(-1/z)/2`` is power complementary (``L + B = 1``), so
    repeatedly splitting the low band (``L -> L(z^2)L(z)``, ``B(z^2)L(z)``, plus a new high band ``B``) gives
    zero-phase bands that add up to a unit impulse. Returns ``[num_bands, taps]`` float64, lowest band first.
    """
    h = np.asarray(lowpass, dtype=np.float64)
    h_mirror = h * (-1.0) ** np.arange(h.size)
    low_half = np.convolve(h, h[::-1]) / 2
    high_half = np.convolve(h_mirror, h_mirror[::-1]) / 2
    bands = [np.ones(1)]
    for _ in range(num_bands - 1):
        bands = [np.convolve(_zero_stuff(band), low_half) for band in bands]
        length = bands[0].size
        bands.append(_centre(high_half, length))
    return np.stack(bands)
