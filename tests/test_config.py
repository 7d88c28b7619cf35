"""Presets reproduce NVIDIA's configuration table; overrides are strict and round-trip."""

from __future__ import annotations

import json

import pytest

from stylegan_core.config import TrainOptions
from stylegan_core.options import OVERRIDE_KEYS, OptionError, apply_overrides
from stylegan_core.presets import PRESET_NAMES, batch_geometry, resolve_options


@pytest.mark.parametrize(
    ("resolution", "batch", "gamma"),
    [(32, 32, 0.0064), (64, 32, 0.0256), (128, 32, 0.1024), (256, 16, 0.8192), (512, 8, 6.5536), (1024, 4, 52.4288)],
)
def test_auto_worked_values_one_gpu(resolution: int, batch: int, gamma: float) -> None:
    options = resolve_options("auto", resolution, gpus=1)
    assert options.loop.batch == batch
    assert options.loss.r1_gamma == pytest.approx(gamma, rel=1e-12)
    assert options.loop.ema_kimg == pytest.approx(batch * 10 / 32)
    assert options.network.mbstd_group == min(batch, 4)
    assert options.network.channel_base == (32768 if resolution >= 512 else 16384)
    assert options.optimizer.g_lr == (0.002 if resolution >= 1024 else 0.0025)
    assert options.network.mapping_layers == 2
    assert options.loop.ema_rampup == 0.05


def test_auto_scales_with_gpus() -> None:
    options = resolve_options("auto", 256, gpus=8)
    assert options.loop.batch == 64  # min(8 * 16, 64)
    assert batch_geometry(options, 8) == (8, 1)


def test_fixed_presets_use_gradient_accumulation_on_fewer_gpus() -> None:
    options = resolve_options("paper256", 256, gpus=1)
    assert (options.loop.batch, options.loss.r1_gamma, options.network.channel_base) == (64, 1.0, 16384)
    assert batch_geometry(options, 1) == (8, 8)  # NVIDIA: batch_gpu = mb // ref_gpus


def test_cifar_preset_disables_pl_and_mixing() -> None:
    options = resolve_options("cifar", 32, gpus=2)
    assert options.loss.pl_weight == 0 and options.loss.style_mixing_prob == 0
    assert options.network.d_architecture == "orig"
    assert options.loop.total_kimg == 100000


def test_batch_override_sets_batch_gpu_like_nvidia() -> None:
    options = resolve_options("paper256", 256, gpus=2, overrides={"batch": 16})
    assert batch_geometry(options, 2) == (8, 1)


def test_fp32_and_cli_style_names() -> None:
    options = resolve_options("auto", 32, overrides={"fp32": "1", "--mbstd-group": 2, "cbase": 1024, "kimg": "0.5"})
    assert options.network.num_fp16_res == 0 and options.network.conv_clamp is None
    assert options.network.mbstd_group == 2 and options.network.channel_base == 1024
    assert options.loop.total_kimg == 0.5


def test_resume_makes_ada_react_faster() -> None:
    options = resolve_options("auto", 64, overrides={"resume": "x.pt"})
    assert options.ada.kimg == 100 and options.loop.ema_rampup is None


def test_unknown_or_bad_override_names_the_source_and_key() -> None:
    with pytest.raises(ValueError, match=r"shapes\.yaml: unknown option 'gama'"):
        resolve_options("auto", 32, overrides={"gama": 1}, source="shapes.yaml")
    with pytest.raises(OptionError, match="^batch: expected an integer, got 2.5"):
        apply_overrides(TrainOptions(), {"batch": 2.5})
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_options("paper9000", 32)  # type: ignore[arg-type]


def test_batch_geometry_errors_are_explained() -> None:
    with pytest.raises(ValueError, match="must equal batch_gpu"):
        resolve_options("auto", 32, overrides={"batch": 12, "batch_gpu": 8})
    with pytest.raises(ValueError, match="minibatch-stddev group"):
        resolve_options("auto", 32, overrides={"batch": 12, "batch_gpu": 6, "mbstd_group": 4})


def test_options_round_trip_through_json() -> None:
    for name in PRESET_NAMES:
        options = resolve_options(name, 64, gpus=2, overrides={"metrics": "fid2k_full,kid2k_full", "mirror": True})
        again = TrainOptions.from_dict(json.loads(options.to_json()))
        assert again == options
    with pytest.raises(ValueError, match="unknown option"):
        TrainOptions.from_dict({"loop": {"batchsize": 3}})


def test_every_override_key_targets_a_real_field() -> None:
    options = TrainOptions()
    for key, spec in OVERRIDE_KEYS.items():
        assert hasattr(getattr(options, spec.section), spec.field), key
