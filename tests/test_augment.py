"""ADA augmentation: the pipeline's transforms, presets, second-order gradients and the adaptive-p controller."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_to_scale

from stylegan_core.augment import AUGPIPE_PRESETS, AdaController, AugmentPipe, build_augment_pipe
from stylegan_core.augment.grid_sample import grid_sample_bilinear
from stylegan_core.augment.pipe import MULTIPLIERS, _reflect_pad
from stylegan_core.augment.wavelets import SYM2, SYM6, octave_filter_bank

SIZE = 32
# Debug renderings vs the closed-form result. Colour transforms are a 4x4 matrix applied by matmul; the geometric and
# filter paths pad, convolve and resample. Either rounds in float32 at the image's scale (~2 here), on any ISA.
COLOR_RTOL, GEOMETRY_RTOL = 2e-6, 1e-5


def noise_images(n: int = 4, channels: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn([n, channels, size, size], generator=generator) * 0.5


def pixel_centres(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of pixel centres (pixel i covers [i, i + 1)), float64, [H, W]."""
    coords = torch.arange(size, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return x, y


def blob(centre: tuple[float, float], sigma: tuple[float, float], size: int = SIZE) -> torch.Tensor:
    """A smooth [1, 1, H, W] Gaussian on a zero background (band-limited, so resampling is near exact)."""
    x, y = pixel_centres(size)
    image = torch.exp(-((x - centre[0]) ** 2 / (2 * sigma[0] ** 2) + (y - centre[1]) ** 2 / (2 * sigma[1] ** 2)))
    return image.float()[None, None]


def moments(image: torch.Tensor) -> tuple[float, float, float, float, float]:
    """Centroid x, y and covariance xx, yy, xy of a non-negative [1, 1, H, W] image."""
    x, y = pixel_centres(image.shape[-1])
    w = image[0, 0].double()
    w = w / w.sum()
    cx, cy = float((w * x).sum()), float((w * y).sum())
    cxx, cyy = float((w * (x - cx) ** 2).sum()), float((w * (y - cy) ** 2).sum())
    return cx, cy, cxx, cyy, float((w * (x - cx) * (y - cy)).sum())


def normal_debug(percentile: float) -> float:
    """NVIDIA's debug-mode value of a standard-normal strength."""
    return float(torch.erfinv(torch.tensor(2 * percentile - 1)))


def render(percentile: float, images: torch.Tensor, **settings: float) -> torch.Tensor:
    return AugmentPipe(p=0.0, **settings)(images, debug_percentile=percentile)


# ---------------------------------------------------------------- wavelet data


@pytest.mark.parametrize("taps", [SYM2, SYM6], ids=["sym2", "sym6"])
def test_wavelet_lowpass_is_orthonormal(taps):
    h = np.asarray(taps)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-9)
    for shift in range(h.size // 2):  # orthonormal under even shifts: a mistyped digit breaks this
        assert np.dot(h[: h.size - 2 * shift], h[2 * shift :]) == pytest.approx(float(shift == 0), abs=1e-9)


def test_filter_bank_bands_are_zero_phase_and_sum_to_an_impulse():
    bank = octave_filter_bank(SYM2)
    assert bank.shape == (4, 43)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-9)
    dc_gain, nyquist_gain = bank.sum(axis=1), (bank * (-1.0) ** np.arange(43)).sum(axis=1)
    np.testing.assert_allclose(dc_gain, [1, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(np.abs(nyquist_gain), [0, 0, 0, 1], atol=1e-9)


# ---------------------------------------------------------------- identity and basic contract


@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_bit_exact_identity_for_every_preset(channels):
    images = noise_images(channels=channels)
    for name in AUGPIPE_PRESETS:
        assert torch.equal(build_augment_pipe(name, 0.0)(images), images), name


@pytest.mark.parametrize("channels", [1, 3])
def test_presets_keep_shape_and_dtype(channels):
    torch.manual_seed(0)
    for name in AUGPIPE_PRESETS:
        for dtype, size in ((torch.float32, 16), (torch.float64, 32)):
            images = noise_images(n=3, channels=channels, size=size).to(dtype)
            out = build_augment_pipe(name, 1.0)(images)  # p = 1: every transform fires
            assert out.shape == images.shape and out.dtype == dtype, name
            assert torch.isfinite(out).all(), name
            assert not torch.equal(out, images), name


def test_preset_table_matches_nvidia():
    assert set(AUGPIPE_PRESETS) == {"blit", "geom", "color", "filter", "noise", "cutout"} | {
        "bg", "bgc", "bgcf", "bgcfn", "bgcfnc",
    }  # fmt: skip
    assert set(AUGPIPE_PRESETS["bgc"]) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"} | {
        "brightness", "contrast", "lumaflip", "hue", "saturation",
    }  # fmt: skip
    assert set(AUGPIPE_PRESETS["bgcfnc"]) == set(MULTIPLIERS)
    assert all(value == 1 for preset in AUGPIPE_PRESETS.values() for value in preset.values())


@pytest.mark.parametrize("channels", [2, 4])
def test_unsupported_channel_counts_raise_clearly(channels):
    with pytest.raises(ValueError, match=rf"{channels} channels; supported are \(1, 3\)"):
        build_augment_pipe("blit", 0.5)(noise_images(channels=channels))


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="unknown augpipe preset 'bgx'.*bgc, bgcf"):
        build_augment_pipe("bgx", 0.5)
    with pytest.raises(ValueError, match="p must be in"):
        build_augment_pipe("bgc", 1.5)
    with pytest.raises(TypeError, match="valid arguments"):
        AugmentPipe(xflop=1)
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        AugmentPipe(scale=-1)
    with pytest.raises(ValueError, match="debug_percentile"):
        AugmentPipe(xflip=1)(noise_images(), debug_percentile=1.5)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        AugmentPipe(xflip=1)(torch.zeros(3, 8, 8))


def test_state_dict_holds_only_p():
    pipe = build_augment_pipe("bgcfnc", 0.25)
    assert list(pipe.state_dict()) == ["p"]
    other = build_augment_pipe("bgcfnc", 0.0)
    other.load_state_dict(pipe.state_dict())
    assert float(other.p) == 0.25


# ---------------------------------------------------------------- each transform at a debug percentile


@pytest.mark.parametrize("name", [m for m in MULTIPLIERS if m != "noise"])
def test_debug_rendering_is_deterministic(name):
    images = noise_images()
    torch.manual_seed(1)
    first = render(0.7, images, **{name: 1})
    torch.manual_seed(2)
    second = render(0.7, images, **{name: 1})
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


def test_xflip_mirrors_horizontally():
    image = blob((11.0, 14.0), (3.0, 3.0))
    assert torch.equal(render(0.2, image, xflip=1), image)
    flipped = render(1.0, image, xflip=1)
    # Like NVIDIA's pipeline the flip goes through the sym6 resampler, which is exact only for band-limited content.
    assert (flipped - image.flip(3)).abs().max() < 0.03
    cx, cy, *_ = moments(flipped)
    assert cx == pytest.approx(SIZE - 11.0, abs=0.15) and cy == pytest.approx(14.0, abs=0.01)


@pytest.mark.parametrize("percentile", [0.3, 0.6, 0.9])
def test_rotate90_turns_by_quarter_turns(percentile):
    image = blob((11.0, 14.0), (3.0, 2.0)) + blob((22.0, 20.0), (2.5, 3.0))
    rotated = render(percentile, image, rotate90=1)
    quarters = math.floor(4 * percentile)
    errors = [float((rotated - torch.rot90(image, k, dims=(2, 3))).abs().max()) for k in range(4)]
    assert errors[quarters] < 0.03 and min(e for k, e in enumerate(errors) if k != quarters) > 0.3


def test_xint_translates_by_whole_pixels():
    images = noise_images()
    shifted = render(0.9, images, xint=1)
    pixels = round((2 * 0.9 - 1) * 0.125 * SIZE)  # 3
    # The shift goes through the general geometric path (padding, filters, resampling): rounding at the image scale.
    assert_close_to_scale(shifted[..., pixels:, pixels:], images[..., :-pixels, :-pixels], GEOMETRY_RTOL)


def test_scale_magnifies_about_the_centre():
    image = blob((14.0, 17.0), (2.5, 2.5))
    factor = 2 ** (normal_debug(0.8) * 0.2)
    cx, cy, cxx, cyy, _ = moments(render(0.8, image, scale=1))
    centre = SIZE / 2
    assert cx == pytest.approx(centre + (14.0 - centre) * factor, abs=0.1)
    assert cy == pytest.approx(centre + (17.0 - centre) * factor, abs=0.1)
    assert math.sqrt(cxx) == pytest.approx(2.5 * factor, rel=0.02)
    assert math.sqrt(cyy) == pytest.approx(2.5 * factor, rel=0.02)


def test_aniso_stretches_x_and_squeezes_y():
    factor = 2 ** (normal_debug(0.8) * 0.2)
    _, _, cxx, cyy, _ = moments(render(0.8, blob((16.0, 16.0), (3.0, 3.0)), aniso=1))
    assert math.sqrt(cxx) == pytest.approx(3.0 * factor, rel=0.02)
    assert math.sqrt(cyy) == pytest.approx(3.0 / factor, rel=0.02)


@pytest.mark.parametrize("percentile", [0.625, 0.75])
def test_rotate_turns_by_the_debug_angle(percentile):
    theta = (2 * percentile - 1) * math.pi  # 45 and 90 degrees
    cx, cy, cxx, cyy, cxy = moments(render(percentile, blob((16.0, 16.0), (4.0, 1.5)), rotate=1))
    axis = math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))  # long axis; content turns by -theta in (x, y-down)
    assert (axis + math.degrees(theta) + 90) % 180 - 90 == pytest.approx(0, abs=0.5)
    assert (cx, cy) == pytest.approx((16.0, 16.0), abs=0.1)


def test_xfrac_translates_by_a_fraction_of_the_size():
    shift = normal_debug(0.7) * 0.125 * SIZE
    cx, cy, *_ = moments(render(0.7, blob((15.0, 16.0), (3.0, 3.0)), xfrac=1))
    assert cx == pytest.approx(15.0 + shift, abs=0.05) and cy == pytest.approx(16.0 + shift, abs=0.05)


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_adds_a_constant(channels):
    images = noise_images(channels=channels)
    offset = normal_debug(0.8) * 0.2
    assert_close_to_scale(render(0.8, images, brightness=1), images + offset, COLOR_RTOL)


@pytest.mark.parametrize("channels", [1, 3])
def test_contrast_scales_about_zero(channels):
    images = noise_images(channels=channels)  # the value range [-1, 1] is centred on 0, as in NVIDIA
    factor = 2 ** (normal_debug(0.8) * 0.5)
    assert_close_to_scale(render(0.8, images, contrast=1), images * factor, COLOR_RTOL)


def test_lumaflip_reflects_luma():
    images = noise_images()
    luma = images.mean(dim=1, keepdim=True)
    assert_close_to_scale(render(1.0, images, lumaflip=1), images - 2 * luma, COLOR_RTOL)
    grey = noise_images(channels=1)
    assert_close_to_scale(render(1.0, grey, lumaflip=1), -grey, COLOR_RTOL)


def test_hue_rotation_of_a_third_turn_cycles_the_channels():
    images = noise_images()
    assert_close_to_scale(render(5 / 6, images, hue=1), images[:, [2, 0, 1]], COLOR_RTOL)
    grey = noise_images(channels=1)
    assert torch.equal(render(5 / 6, grey, hue=1, saturation=1), grey)  # RGB-only transforms skip greyscale


def test_saturation_scales_chroma_and_zero_gives_grey():
    images = noise_images()
    luma = images.mean(dim=1, keepdim=True)
    factor = 2 ** normal_debug(0.8)
    out = render(0.8, images, saturation=1)
    assert_close_to_scale(out.mean(dim=1, keepdim=True), luma, COLOR_RTOL)
    assert_close_to_scale(out - luma, (images - luma) * factor, COLOR_RTOL, scale=float(out.abs().max()))
    greyed = render(0.02, images, saturation=1, saturation_std=50)  # factor 2^-73: chroma vanishes
    assert_close_to_scale(greyed, luma.expand_as(images), COLOR_RTOL)


def test_imgfilter_amplifies_the_chosen_band():
    amplification = 2 ** normal_debug(0.9)
    norm = math.sqrt((10 + 1 + 1 + amplification**2) / 13)  # power normalisation against the 1/f spectrum
    constant = torch.full([2, 3, SIZE, SIZE], 0.4)
    checker = (-1.0) ** (torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None, :]).float().expand(2, 3, -1, -1)
    high_band = {"imgfilter": 1, "imgfilter_bands": (0, 0, 0, 1)}
    # The 1-D filter runs along x and then y, so a band's 2-D gain is the square of its 1-D gain (as NVIDIA).
    # Filtered by convolution (padding, upfirdn2d) vs the closed-form gain: rounding at the image scale.
    assert_close_to_scale(render(0.9, constant, **high_band), constant / norm**2, GEOMETRY_RTOL)
    expected_checker = checker * (amplification / norm) ** 2
    assert_close_to_scale(render(0.9, checker, **high_band), expected_checker, GEOMETRY_RTOL)
    assert torch.equal(render(0.5, checker, **high_band), checker)  # gain 1: untouched


def test_noise_has_the_debug_standard_deviation():
    images = noise_images(n=8)
    sigma = float(torch.erfinv(torch.tensor(0.7))) * 0.1
    added = render(0.7, images, noise=1) - images
    assert float(added.std()) == pytest.approx(sigma, rel=0.03)
    assert abs(float(added.mean())) < 0.05 * sigma


@pytest.mark.parametrize(("percentile", "square"), [(0.5, slice(8, 24)), (0.25, slice(0, 16))])
def test_cutout_zeros_a_square(percentile, square):
    images = noise_images() + 3  # no zeros of its own
    out = render(percentile, images, cutout=1)
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[square, square] = True
    assert (out[..., inside] == 0).all()
    assert torch.equal(out[..., ~inside], images[..., ~inside])


def test_random_mode_applies_each_transform_with_probability_p():
    images = noise_images(n=400, channels=1, size=4)
    pipe = AugmentPipe(p=0.3, cutout=1, cutout_size=2.0)  # wide enough to zero the image wherever its centre is
    torch.manual_seed(0)
    zeroed = (pipe(images + 3) == 0).flatten(1).all(dim=1).float().mean()
    assert float(zeroed) == pytest.approx(0.3, abs=0.07)


# ---------------------------------------------------------------- gradients


def test_grid_sample_matches_torch_and_is_twice_differentiable():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn([2, 2, 5, 4], dtype=torch.float64, generator=generator, requires_grad=True)
    theta = torch.tensor([[[0.9, 0.3, 0.1], [-0.2, 1.1, 0.05]], [[1.2, 0.0, -0.2], [0.1, 0.8, 0.3]]])
    grid = F.affine_grid(theta.double(), [2, 2, 6, 3], align_corners=False)
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert_close_to_scale(grid_sample_bilinear(images, grid), expected, 1e-12)  # float64, ours vs torch's kernel
    assert torch.autograd.gradcheck(lambda x: grid_sample_bilinear(x, grid), (images,))
    assert torch.autograd.gradgradcheck(lambda x: grid_sample_bilinear(x, grid), (images,))


def test_r1_double_backward_through_the_bgc_pipe():
    """d/dw of ||d D_w(aug(x)) / dx||^2, as R1 computes it, against a central finite difference (float64)."""
    pipe = build_augment_pipe("bgc", 0.25)
    generator = torch.Generator().manual_seed(0)
    reals = torch.randn([4, 3, 16, 16], dtype=torch.float64, generator=generator) * 0.5
    weight = torch.randn([2, 3, 3, 3], dtype=torch.float64, generator=generator)
    direction = torch.randn(weight.shape, dtype=torch.float64, generator=generator)

    def r1_penalty(w: torch.Tensor) -> torch.Tensor:
        # The same augmentation for every evaluation; seed 4 at p = 0.25 resamples only samples 0-1 and recolours
        # only 0 and 3, so the partial-batch paths are differentiated too.
        torch.manual_seed(4)
        x = reals.detach().requires_grad_(True)
        logits = F.softplus(F.conv2d(pipe(x), w)).mean(dim=(1, 2, 3))  # smooth, so finite differences hold
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return grad.square().sum()

    weight.requires_grad_(True)
    r1_penalty(weight).backward()  # second-order: through the pipe's backward into D's weight
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    analytic = float((weight.grad * direction).sum())
    step = 1e-4
    with torch.no_grad():
        w_plus, w_minus = weight + step * direction, weight - step * direction
    numeric = float((r1_penalty(w_plus) - r1_penalty(w_minus)).detach()) / (2 * step)
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_reflect_pad_beyond_the_image_size():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    expected = np.pad(x.numpy(), [(0, 0), (0, 0), (21, 21), (21, 21)], mode="reflect")
    np.testing.assert_array_equal(_reflect_pad(x, 21).numpy(), expected)
    torch.testing.assert_close(_reflect_pad(x, 3), F.pad(x, [3] * 4, mode="reflect"))


# ---------------------------------------------------------------- ADA controller


def test_ada_step_size_and_direction():
    pipe = AugmentPipe(p=0.5)
    ada = AdaController(target=0.6, interval=4, kimg=500, batch_size=32)
    assert ada.step_size == 32 * 4 / (500 * 1000)
    ada.accumulate(torch.ones(32))  # D always right on reals: overfitting, so augment more
    assert ada.update(pipe) == 1.0
    assert float(pipe.p) == pytest.approx(0.5 + 0.000256, abs=1e-7)
    ada.accumulate(torch.tensor([1.0, 1.0, -1.0, -1.0]))  # r_t = 0 < target: augment less
    assert ada.update(pipe) == 0.0
    assert float(pipe.p) == pytest.approx(0.5, abs=1e-7)


def test_ada_mean_spans_the_interval_and_resets():
    pipe = AugmentPipe(p=0.5)
    ada = AdaController(target=0.5, interval=4, kimg=1, batch_size=10)
    for signs in ([1.0, 1.0, -1.0], [1.0], [-3.2, 0.7, 0.1, 2.0]):  # logits are reduced to their signs
        ada.accumulate(torch.tensor(signs))
    assert ada.update(pipe) == pytest.approx(0.5)  # (1 + 1 - 1 + 1 - 1 + 1 + 1 + 1) / 8 equals the target
    assert float(pipe.p) == 0.5
    assert math.isnan(ada.update(pipe)) and float(pipe.p) == 0.5  # nothing gathered since: no move
    assert [ada.is_due(i) for i in range(1, 9)] == [False, False, False, True] * 2


def test_ada_p_never_leaves_the_unit_interval():
    pipe = AugmentPipe(p=0.999)
    ada = AdaController(target=0.6, interval=4, kimg=0.001, batch_size=8)  # huge steps
    ada.accumulate(torch.ones(8))
    ada.update(pipe)
    assert float(pipe.p) == 1.0  # NVIDIA would reach 32.999 (no upper clamp, ADA#175)
    for _ in range(3):
        ada.accumulate(-torch.ones(8))
        ada.update(pipe)
        assert float(pipe.p) == 0.0


def test_ada_state_dict_resumes_exactly():
    ada = AdaController(target=0.6, interval=4, kimg=500, batch_size=16)
    ada.accumulate(torch.tensor([1.0, -1.0, 1.0]))
    state = ada.state_dict()
    assert state == {"sign_sum": 1.0, "sign_count": 3.0}
    resumed = AdaController(target=0.6, interval=4, kimg=500, batch_size=16)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    pipes = AugmentPipe(p=0.3), AugmentPipe(p=0.3)
    for controller, pipe in zip((ada, resumed), pipes, strict=True):
        controller.accumulate(torch.tensor([1.0]))
        assert controller.update(pipe) == 0.5
    assert float(pipes[0].p) == float(pipes[1].p) < 0.3
    with pytest.raises(KeyError, match="sign_count"):
        resumed.load_state_dict({"sign_sum": 1.0})


def _ada_rank(rank: int, world_size: int, store_path: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size)
    try:
        pipe = AugmentPipe(p=0.5)
        ada = AdaController(target=0.6, interval=4, kimg=500, batch_size=16)
        ada.accumulate(torch.ones(4) if rank == 0 else -torch.ones(12))  # rank 0 alone would raise p
        r_t = ada.update(pipe)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"r_t": r_t, "p": float(pipe.p)}))
    finally:
        torch.distributed.destroy_process_group()


def test_ada_all_reduces_sum_and_count_over_ranks(tmp_path):
    # fork: the children need no fresh interpreter (spawn re-imports torch, ~10 s on a busy 2-core machine).
    torch.multiprocessing.start_processes(
        _ada_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for result in results:
        assert result["r_t"] == pytest.approx((4 - 12) / 16)  # pooled signs, not the mean of rank means (0)
        assert result["p"] == pytest.approx(0.5 - 16 * 4 / 500_000, abs=1e-7)
