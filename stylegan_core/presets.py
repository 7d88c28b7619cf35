"""NVIDIA's StyleGAN2-ADA configurations (`--cfg`) as typed presets, and the resolution of a run's options.

The table reproduces stylegan2-ada-pytorch's `train.py` configurations; `auto` derives batch, R1 gamma, capacity and
EMA from the dataset resolution and GPU count with NVIDIA's formulas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from stylegan_core.config import (
    LoopConfig,
    LossConfig,
    NetworkConfig,
    OptimizerConfig,
    PresetName,
    TrainOptions,
)
from stylegan_core.options import OVERRIDE_KEYS, OptionError, apply_overrides, normalize_override_key, parse_value

PRESET_NAMES: tuple[PresetName, ...] = ("auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar")


@dataclass(frozen=True, kw_only=True)
class Preset:
    """One row of NVIDIA's configuration table."""

    ref_gpus: int
    """GPU count the batch was designed for; fewer GPUs use gradient accumulation."""
    kimg: float
    batch: int
    """Global minibatch ("mb")."""
    mbstd: int
    """Minibatch-stddev group size."""
    fmaps: float
    """Capacity multiplier: channel_base = fmaps * 32768."""
    lrate: float
    gamma: float
    ema: float
    """EMA half-life in kimg."""
    ramp: float | None
    """EMA ramp-up, or None."""
    map: int
    """Mapping network depth."""


# One row per configuration, as in NVIDIA's train.py; kept one row a line (ruff E501 is off for this file).
PRESETS: dict[str, Preset] = {
    "stylegan2": Preset(ref_gpus=8, kimg=25000, batch=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": Preset(ref_gpus=8, kimg=25000, batch=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8),
    "paper512": Preset(ref_gpus=8, kimg=25000, batch=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": Preset(ref_gpus=8, kimg=25000, batch=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
    "cifar": Preset(ref_gpus=2, kimg=100000, batch=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
}


def auto_preset(resolution: int, gpus: int) -> Preset:
    """NVIDIA's `auto` formulas ("keep gpu memory consumption at bay"; gamma is their heuristic 0.0002 * res^2 / mb)."""
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return Preset(
        ref_gpus=gpus,
        kimg=25000,
        batch=batch,
        mbstd=min(batch // gpus, 4),
        fmaps=1 if resolution >= 512 else 0.5,
        lrate=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * resolution**2 / batch,
        ema=batch * 10 / 32,
        ramp=0.05,
        map=2,
    )


def get_preset(name: str, resolution: int, gpus: int = 1) -> Preset:
    if name == "auto":
        return auto_preset(resolution, gpus)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return PRESETS[name]


def options_from_preset(name: PresetName, resolution: int, gpus: int = 1) -> TrainOptions:
    """The full options a preset implies for a dataset resolution and GPU count, before any override."""
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    preset = get_preset(name, resolution, gpus)
    is_cifar = name == "cifar"
    return TrainOptions(
        preset=name,
        network=NetworkConfig(
            mapping_layers=preset.map,
            channel_base=int(preset.fmaps * 32768),
            mbstd_group=preset.mbstd,
            d_architecture="orig" if is_cifar else "resnet",
        ),
        loss=LossConfig(
            r1_gamma=preset.gamma,
            pl_weight=0.0 if is_cifar else LossConfig().pl_weight,
            style_mixing_prob=0.0 if is_cifar else LossConfig().style_mixing_prob,
        ),
        optimizer=OptimizerConfig(g_lr=preset.lrate, d_lr=preset.lrate),
        loop=LoopConfig(
            total_kimg=preset.kimg,
            batch=preset.batch,
            batch_gpu=preset.batch // preset.ref_gpus,
            ema_kimg=preset.ema,
            ema_rampup=preset.ramp,
        ),
    )


def resolve_options(
    preset: PresetName,
    resolution: int,
    gpus: int = 1,
    overrides: Mapping[str, object] | None = None,
    source: str = "overrides",
    device: str | None = None,
) -> TrainOptions:
    """Preset → options → overrides, with NVIDIA's coupled rules, then validated.

    Rules carried over from NVIDIA's train.py: `--batch` without `--batch-gpu` sets batch_gpu = batch // gpus (no
    accumulation); resuming makes ADA react faster (ada kimg 100) and disables the EMA ramp-up; `p` goes with
    `aug: fixed` (and is required there; with `aug: ada` it is the initial p, our extension), `target` with
    `aug: ada`, and `augpipe` not with `aug: noaug`.
    Bad values raise `OptionError` naming the option (the caller spells it as a flag or a YAML key).
    With ``device`` (``"cuda"`` or ``"cpu"``, the device the run will train on) the precision policy
    ``resolve_precision`` applies too.
    """
    overrides = {normalize_override_key(k): v for k, v in (overrides or {}).items()}
    options = apply_overrides(options_from_preset(preset, resolution, gpus), overrides, source)
    check_augment_coupling(options.augment.mode, set(overrides))
    if "batch" in overrides and "batch_gpu" not in overrides:
        options = dataclasses.replace(options, loop=dataclasses.replace(options.loop, batch_gpu=None))
    if options.loop.resume and "ada_kimg" not in overrides:
        options = dataclasses.replace(options, ada=dataclasses.replace(options.ada, kimg=100.0))
    if options.loop.resume and "ema_rampup" not in overrides:
        options = dataclasses.replace(options, loop=dataclasses.replace(options.loop, ema_rampup=None))
    if device is not None:
        options = resolve_precision(options, device)
    validate_options(options, gpus)
    return options


def check_augment_coupling(mode: str, given: set[str]) -> None:
    """NVIDIA's rules for which augmentation options go together (`given`: the option keys the user set)."""
    if mode == "fixed" and "p" not in given:
        raise OptionError("aug", "{aug}=fixed requires {p} (the fixed augmentation probability)")
    if "p" in given and mode == "noaug":
        raise OptionError("p", "cannot be given with {aug}=noaug (it is the fixed, or initial ADA, probability)")
    if "target" in given and mode != "ada":
        raise OptionError("target", "can only be given with {aug}=ada")
    if "augpipe" in given and mode == "noaug":
        raise OptionError("augpipe", "cannot be given with {aug}=noaug")


def preset_fields() -> frozenset[tuple[str, str]]:
    """(section, field) pairs some preset sets to another value than the config default: their default is the preset's."""
    base = TrainOptions().to_dict()
    found = set()
    for name in PRESET_NAMES:
        for resolution, gpus in ((32, 1), (1024, 8)):
            plain = options_from_preset(name, resolution, gpus).to_dict()
            found |= {(s, f) for s, values in plain.items() if isinstance(values, dict) for f in values
                      if values[f] != base[s][f]}  # fmt: skip
    return frozenset(found)


def resolve_precision(options: TrainOptions, device: str) -> TrainOptions:
    """Our one deviation from NVIDIA's option handling: a CPU run trains in float32 unless `fp16_on_cpu` is set.

    The networks themselves follow NVIDIA and run their float16 blocks on any device; on the CPU that is about ten
    times slower than float32 (benchmarks/RESULTS.md) and no closer to a GPU run, so training there drops to
    ``num_fp16_res = 0``. ``conv_clamp`` stays, so the numbers equal those of the float16 network with
    ``force_fp32=True``. Idempotent; the result is what training_options.json records.
    """
    device_type = device.split(":")[0]
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    network = options.network
    if device_type == "cuda" or network.fp16_on_cpu or network.num_fp16_res == 0:
        return options
    return dataclasses.replace(options, network=dataclasses.replace(network, num_fp16_res=0))


def batch_geometry(options: TrainOptions, world_size: int) -> tuple[int, int]:
    """Return (batch_gpu, accumulation rounds) for a world size, or raise OptionError naming what to change."""
    batch = options.loop.batch
    batch_gpu = options.loop.batch_gpu or batch // world_size
    if batch_gpu < 1 or batch % (batch_gpu * world_size) != 0:
        raise OptionError(
            "batch",
            f"batch ({batch}) must equal batch_gpu ({batch_gpu}) x GPUs ({world_size}) x accumulation rounds; "
            f"choose {{batch}} as a multiple of {max(batch_gpu, 1) * world_size} or change {{batch_gpu}}",
        )
    group = min(options.network.mbstd_group, batch_gpu)
    if batch_gpu % group != 0:
        raise OptionError(
            "mbstd_group",
            f"the minibatch-stddev group ({options.network.mbstd_group}) must divide batch_gpu ({batch_gpu}); "
            f"set {{mbstd_group}} to a divisor of {batch_gpu} or change {{batch_gpu}}",
        )
    return batch_gpu, batch // (batch_gpu * world_size)


def validate_options(options: TrainOptions, world_size: int = 1, source: str | None = None) -> None:
    """Check every option of the table (types, choices, bounds) and the batch geometry; raise OptionError.

    Options built by `resolve_options` pass the per-value checks by construction; this also guards options read back
    from a file (training_options.json, a snapshot). `source` is accepted for old callers and ignored.
    """
    for key, row in OVERRIDE_KEYS.items():
        value = getattr(getattr(options, row.section), row.field)
        if value == row.default():
            continue
        given = (not value) if key == "nobench" else value
        if parse_value(key, given) != value:
            raise OptionError(key, f"invalid value {value!r}")
    batch_geometry(options, world_size)


__all__ = [
    "PRESETS",
    "PRESET_NAMES",
    "Preset",
    "auto_preset",
    "batch_geometry",
    "check_augment_coupling",
    "get_preset",
    "options_from_preset",
    "preset_fields",
    "resolve_options",
    "resolve_precision",
    "validate_options",
]
