"""Invariants of the ops that the NVIDIA vectors do not pin down (test_ops_parity.py covers those).

Second-order gradients (R1 and path length differentiate through these ops twice), the conv2d_resample fast paths
against the plain "upsample, convolve, downsample" composition for combinations the vectors skip, and input errors.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_to_scale

from stylegan_core import ops

# The property tests run in float64 so that a wrong formula (an O(1) error) stands far above rounding: two float64
# paths through other kernels agree to ~1e-14 of the scale here on every ISA; 1e-10 leaves room for any BLAS.
F64_RTOL = 1e-10
# Where the op itself is not exact in float64: an eps of 1e-8 (demodulation, 2nd-moment normalisation) or filter taps
# normalised in float32 (setup_filter) move results by ~1e-8 of the scale, the same on every CPU; 1e-6 bounds it.
EPS_RTOL = F32_FILTER_RTOL = 1e-6


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------- gradients of order 2


@pytest.mark.parametrize(
    ("f_taps", "separable", "kwargs"),
    [
        ([1, 3, 3, 1], False, dict(up=2, padding=[2, 1, 2, 1], gain=4)),
        ([1, 2, 1], False, dict(down=2, padding=[1, 0, 2, -1], flip_filter=True)),
        ([1, 3, 2, 5, 1], True, dict(up=[2, 1], down=[1, 2], padding=[3, 2, 1, 2])),
    ],
)
def test_upfirdn2d_second_order_gradients(f_taps: list[float], separable: bool, kwargs: dict) -> None:
    f = ops.setup_filter(f_taps, separable=separable).double()
    x = _rand(1, 1, 4, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.upfirdn2d(x, f, **kwargs), (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda x: ops.upfirdn2d(x, f, **kwargs), (x,), fast_mode=True)


@pytest.mark.parametrize(
    ("k", "kwargs"),
    [
        (3, dict(up=2, padding=1)),
        (3, dict(down=2, padding=1, flip_weight=False)),
        (1, dict(down=2)),
        (1, dict(up=2)),
        (3, dict(padding=[1, 0, 2, 1])),
    ],
)
def test_conv2d_resample_second_order_gradients(k: int, kwargs: dict) -> None:
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = _rand(1, 2, 3, 3, seed=1).requires_grad_()
    w = _rand(2, 2, k, k, seed=2).requires_grad_()
    fn = lambda x, w: ops.conv2d_resample(x, w, f=f, **kwargs)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


def test_bias_act_and_modconv_second_order_gradients() -> None:
    x = _rand(2, 2, 3, 3, seed=3).requires_grad_()
    b = _rand(2, seed=4).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, b: ops.bias_act(x, b, act="swish", clamp=5.0), (x, b), fast_mode=True)
    weight = _rand(2, 2, 3, 3, seed=5).requires_grad_()
    styles = (_rand(2, 2, seed=6) * 0.2 + 1).requires_grad_()
    for fused in (True, False):
        fn = lambda x, w, s: ops.modulated_conv2d(x, w, s, padding=1, fused_modconv=fused)  # noqa: B023, E731
        assert torch.autograd.gradgradcheck(fn, (x, weight, styles), fast_mode=True)


# ------------------------------------------------------------------- conv2d_resample against its plain definition


def _conv2d_resample_by_definition(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Upsample (zero insertion + filter, gain up^2) with the caller's padding, convolve, then filter + downsample.

    Written independently of the fast paths; the extra padding keeps the filter centred as in upsample2d/downsample2d.
    """
    fw = f.shape[-1]
    px0, px1, py0, py1 = ops.parse_padding(padding)
    if up > 1:
        px0, px1, py0, py1 = (
            px0 + (fw + up - 1) // 2,
            px1 + (fw - up) // 2,
            py0 + (fw + up - 1) // 2,
            py1 + (fw - up) // 2,
        )
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fw - down + 1) // 2, py1 + (fw - down) // 2
    x = ops.upfirdn2d(
        x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter
    )
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    return ops.upfirdn2d(x, f, down=down, flip_filter=flip_filter) if down > 1 else x


@pytest.mark.parametrize(
    ("k", "up", "down", "groups"),
    [
        (k, up, down, groups)
        for k, (up, down), groups in itertools.product([1, 3], [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)], [1, 2])
    ],
)
def test_conv2d_resample_fast_paths_match_definition(k: int, up: int, down: int, groups: int) -> None:
    f = ops.setup_filter([[1, 2, 0, 1], [3, 1, 1, 2], [0, 1, 2, 1], [1, 1, 3, 1]]).double()  # asymmetric 4x4
    x = _rand(2, 4, 8, 8, seed=7)
    w = _rand(6, 4 // groups, k, k, seed=8)
    for padding, flip_weight, flip_filter in itertools.product([0, 1, [1, 0, 2, 1]], [True, False], [True, False]):
        args = (f, up, down, padding, groups, flip_weight, flip_filter)
        expected = _conv2d_resample_by_definition(x, w, *args)
        got = ops.conv2d_resample(
            x,
            w,
            f=f,
            up=up,
            down=down,
            padding=padding,
            groups=groups,
            flip_weight=flip_weight,
            flip_filter=flip_filter,
        )
        assert got.shape == expected.shape, args
        assert_close_to_scale(got, expected, F64_RTOL, what=str(args))  # fast path vs definition: other kernels


# ------------------------------------------------------------------------------------------ upfirdn2d properties


def test_separable_filter_equals_its_outer_product() -> None:
    taps = [1.0, 4.0, 6.0, 2.0, 1.0]
    x = _rand(2, 3, 9, 7, seed=9)
    kwargs = dict(up=[2, 3], down=[3, 2], padding=[2, 1, 0, 3], flip_filter=True, gain=1.5)
    separable = ops.upfirdn2d(x, ops.setup_filter(taps, separable=True).double(), **kwargs)
    full = ops.upfirdn2d(x, ops.setup_filter(taps, separable=False).double(), **kwargs)
    # Two 1-D passes vs one 2-D pass; setup_filter normalises the taps in float32, hence ~1e-8 of the scale.
    assert_close_to_scale(separable, full, F32_FILTER_RTOL)


def test_identity_filter_only_pads_and_crops() -> None:
    x = _rand(1, 2, 5, 6, seed=10)
    torch.testing.assert_close(ops.upfirdn2d(x, None), x)
    cropped = ops.upfirdn2d(x, None, padding=[-1, -2, -2, 0], gain=3)  # x0, x1, y0, y1
    torch.testing.assert_close(cropped, 3 * x[:, :, 2:, 1:-2])


def test_upsample2d_preserves_a_constant_image() -> None:
    x = torch.full([1, 1, 6, 6], 2.0)
    y = ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1]))
    assert y.shape == (1, 1, 12, 12)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full([1, 1, 8, 8], 2.0))


def test_setup_filter_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="separable"):
        ops.setup_filter([[1, 2], [3, 4]], separable=True)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        ops.setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="scaling"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), None, up=0)


@pytest.mark.parametrize("op", ["bias_act", "upfirdn2d"])
def test_unknown_impl_is_rejected(op: str) -> None:
    x = torch.zeros(1, 2, 4, 4)
    call = (lambda: ops.bias_act(x, impl="fast")) if op == "bias_act" else (lambda: ops.upfirdn2d(x, None, impl="fast"))
    with pytest.raises(ValueError, match="impl"):
        call()


# ------------------------------------------------------------------------------------------------------ bias_act


def test_bias_act_defaults_and_errors() -> None:
    x = torch.tensor([-2.0, -0.5, 0.5, 3.0])
    # float32 formula written out vs the op (gain applied in another order): a few ulp of the scale.
    assert_close_to_scale(ops.bias_act(x, dim=0, act="lrelu"), torch.where(x > 0, x, 0.2 * x) * 2**0.5, 1e-6)
    assert_close_to_scale(ops.bias_act(x, dim=0, act="swish", gain=1), x * torch.sigmoid(x), 1e-6)
    clamped = ops.bias_act(x, dim=0, act="relu", clamp=0.9)
    torch.testing.assert_close(clamped, torch.tensor([0.0, 0.0, 0.5 * 2**0.5, 0.9]))
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, dim=0, act="gelu")
    with pytest.raises(ValueError, match="clamp"):
        ops.bias_act(x, dim=0, clamp=-1)
    with pytest.raises(ValueError, match="bias"):
        ops.bias_act(torch.zeros(2, 3), torch.zeros(4))


# ------------------------------------------------------------------------------------------- modconv and helpers


def test_modconv_fused_equals_non_fused_and_ignores_scale_when_demodulating() -> None:
    x, weight, noise = _rand(3, 4, 8, 8, seed=11), _rand(5, 4, 3, 3, seed=12), _rand(3, 1, 16, 16, seed=13)
    styles = _rand(3, 4, seed=14) + 1
    f = ops.setup_filter([1, 3, 3, 1]).double()
    common = dict(noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False)
    fused = ops.modulated_conv2d(x, weight, styles, fused_modconv=True, **common)
    # Grouped conv vs scaled activations: other kernels; the demodulation eps (1e-8) enters differently (~1e-9).
    assert_close_to_scale(ops.modulated_conv2d(x, weight, styles, fused_modconv=False, **common), fused, EPS_RTOL)
    # Demodulation divides out any per-output-channel weight scale and any per-sample style scale.
    scaled = ops.modulated_conv2d(x, weight * _rand(5, 1, 1, 1, seed=15).abs(), styles * 7.0, **common)
    assert_close_to_scale(scaled, fused, EPS_RTOL)  # the scales cancel up to the demodulation eps (1e-8)


def _cpu_supports_half_conv() -> bool:
    try:
        F.conv2d(torch.ones(1, 1, 2, 2, dtype=torch.float16), torch.ones(1, 1, 1, 1, dtype=torch.float16))
    except RuntimeError:
        return False
    return True


@pytest.mark.skipif(not _cpu_supports_half_conv(), reason="this torch build has no float16 conv2d on the CPU")
def test_modconv_fp16_prenormalisation_avoids_overflow() -> None:
    # Per-sample weights of about 500 * 500 overflow float16 (max 65504) unless they are rescaled first.
    x = _rand(2, 4, 6, 6, seed=16, dtype=torch.float32)
    weight, styles = 500 * _rand(3, 4, 3, 3, seed=17, dtype=torch.float32), 500 * (_rand(2, 4, seed=18).float() + 2)
    expected = ops.modulated_conv2d(x, weight, styles, padding=1)
    for fused in (True, False):
        got = ops.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused)
        assert got.dtype == torch.float16 and torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), expected, rtol=0, atol=0.02 * float(expected.abs().max()))


def test_minibatch_std_groups_and_errors() -> None:
    x = _rand(6, 4, 2, 2, seed=19)
    y = ops.minibatch_std(x, group_size=3)
    assert y.shape == (6, 5, 2, 2)
    # Sample i is in group i mod 2: samples 0, 2, 4 form one group.
    group = x[0::2]
    expected = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert_close_to_scale(y[0::2, 4], expected.expand(3, 2, 2), F64_RTOL)  # the op's reshapes vs a direct var
    # group_size capped at the batch is the same computation as group_size=None: same kernels, bit-exact.
    assert torch.equal(ops.minibatch_std(x, group_size=64), ops.minibatch_std(x, group_size=None))
    with pytest.raises(ValueError, match=r"batch of 6 .* groups of 4.*batch_gpu.*mbstd group"):
        ops.minibatch_std(x, group_size=4)
    with pytest.raises(ValueError, match="num_channels"):
        ops.minibatch_std(x, group_size=2, num_channels=3)


def test_normalize_2nd_moment_and_fma() -> None:
    x = _rand(4, 8, seed=20)
    # The op adds eps=1e-8 to the mean square, so the result is 1 only to ~1e-8.
    assert_close_to_scale(ops.normalize_2nd_moment(x).square().mean(dim=1), torch.ones(4), EPS_RTOL)
    a, b, c = _rand(2, 3, 4, 4, seed=21), _rand(2, 3, 1, 1, seed=22), _rand(4, 4, seed=23)
    assert_close_to_scale(ops.fma(a, b, c), a * b + c, F64_RTOL)  # addcmul may fuse the multiply-add
    tensors = [t.clone().requires_grad_() for t in (a, b, c)]
    assert torch.autograd.gradgradcheck(ops.fma, tensors)
