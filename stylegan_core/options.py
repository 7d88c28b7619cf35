"""The one option table: every training option a user can set, by name, with its parser, bounds and help.

`OVERRIDE_KEYS` maps a key (the YAML key of a spec's training config, `batch_gpu`) to the config field it sets. The
`stylegan train` flags (`--batch-gpu`), the spec loader and Dagster's training configs are all derived from it, and
`docs/datasets.md`'s table of training keys is generated from it (`python -m stylegan_core.spec.docs`); a test fails
when either drifts. Defaults are not repeated here: they are read from the dataclasses of `stylegan_core.config`
(and from the presets, for the options a preset decides).

Every value is checked once, where it enters, by the parser of its row: type, choices (read from the field's
`Literal`), finiteness and bounds. Errors are `OptionError`s that carry the key, so the CLI can name the flag and the
spec loader the YAML key.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stylegan_core.config import (
    SECTION_TYPES,
    TrainOptions,
)
from stylegan_core.parsers import choice, grid, integer, inverted_bool, names, optional, real, show, text, to_bool

# Upper bounds: far above any real run (NVIDIA's largest networks: 1024 px, 512 channels, batch 64, 25 000 kimg),
# low enough that a typo cannot ask for an allocation the machine cannot make.
MAX_DIM = 8192
MAX_COUNT = 10**9
MAX_KIMG = 10**7
MAX_BATCH = 65536


class OptionError(ValueError):
    """A bad option value. `template` may name other options as `{key}`; `render` spells keys as flags or YAML keys."""

    def __init__(self, key: str, template: str) -> None:
        self.key, self.template = key, template
        super().__init__(self.render(yaml_name))

    def render(self, name: Callable[[str], str]) -> str:
        return f"{name(self.key)}: {self.message(name)}"

    def message(self, name: Callable[[str], str]) -> str:
        return self.template.format_map(_Names(name))


class _Names(dict):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, key: str) -> str:
        return self.name(key)


def yaml_name(key: str) -> str:
    return key


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


# ---------------------------------------------------------------------------------------------------------------------
# The table.


@dataclass(frozen=True)
class OverrideKey:
    """One option: YAML key / CLI flag → `section.field`, with its parser and the help text shown to users."""

    key: str
    section: str
    field: str
    parse: Callable[[object], Any]
    help: str
    choices: tuple[str, ...] | None = None
    is_bool: bool = False
    metavar: str = "VALUE"

    @property
    def flag(self) -> str:
        return flag_name(self.key)

    def default(self) -> Any:
        """The field's default in `stylegan_core.config` (presets may set another, see `presets.preset_fields`)."""
        value = getattr(TrainOptions(), self.section)
        return getattr(value, self.field)

    def default_text(self) -> str:
        """The default as a user writes it (`nobench` is the inverse of its field)."""
        value = self.default()
        if self.parse is inverted_bool:
            value = not value
        if value is None:
            return "none"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return ",".join(map(str, value)) or "none"
        return str(value)


def _field_type(section: str, name: str) -> Any:
    return typing.get_type_hints(SECTION_TYPES[section])[name]


def _row(key: str, target: str, help: str, parse: Callable[[object], Any] | None = None) -> OverrideKey:
    """A table row; the parser of a Literal or bool field, and its choices, are read from the field's type."""
    section, name = target.split(".")
    kind = _field_type(section, name)
    args = typing.get_args(kind)
    is_optional = type(None) in args
    base = next((a for a in args if a is not type(None)), kind) if is_optional else kind
    choices = tuple(typing.get_args(base)) if typing.get_origin(base) is typing.Literal else None
    is_bool = base is bool
    if parse is None:
        parse = choice(choices) if choices else to_bool if is_bool else text
        parse = optional(parse) if is_optional else parse
    metavar = "BOOL" if is_bool else {int: "INT", float: "FLOAT"}.get(base, key.upper())
    return OverrideKey(key, section, name, parse, help, choices, is_bool, metavar)


_KIMG = real(0, MAX_KIMG, low_open=True)
_LR = real(0, 1, low_open=True)
_WEIGHT = real(0, 1e6)
_PROBABILITY = real(0, 1)
_INTERVAL = optional(integer(1, 10**6))
# One row a line, like NVIDIA's table in presets.py (ruff E501 is off for this file).
# fmt: off
_ROWS = [
    _row("data", "data.path", "training data: a dataset zip or folder in NVIDIA's layout"),
    _row("cond", "data.cond", "train a class-conditional model from dataset.json labels"),
    _row("subset", "data.subset", "train on this many images (a random subset chosen by seed)", optional(integer(1, MAX_COUNT))),
    _row("mirror", "data.mirror", "add x-flipped copies of the dataset"),
    _row("workers", "data.workers", "data loader worker processes (0: load in the training process)", integer(0, 256)),
    _row("gamma", "loss.r1_gamma", "R1 regularisation weight", _WEIGHT),
    _row("style_mixing", "loss.style_mixing_prob", "style-mixing probability", _PROBABILITY),
    _row("pl_weight", "loss.pl_weight", "path-length regularisation weight (0 disables it)", _WEIGHT),
    _row("g_reg_interval", "loss.g_reg_interval", "lazy G regularisation interval in minibatches (none: every step)", _INTERVAL),
    _row("d_reg_interval", "loss.d_reg_interval", "lazy D regularisation interval in minibatches (none: every step)", _INTERVAL),
    _row("aug", "augment.mode", "augmentation mode: adaptive p, fixed p, or none"),
    _row("p", "augment.p", "augmentation probability, with aug=fixed", _PROBABILITY),
    _row("augpipe", "augment.pipe", "augmentation pipeline (which transforms are enabled)"),
    _row("target", "ada.target", "ADA target value of r_t, with aug=ada", _PROBABILITY),
    _row("ada_interval", "ada.interval", "minibatches between ADA adjustments of p", integer(1, 10**6)),
    _row("ada_kimg", "ada.kimg", "ADA speed: p can move by 1 over this many kimg", _KIMG),
    _row("glr", "optimizer.g_lr", "G learning rate", _LR),
    _row("dlr", "optimizer.d_lr", "D learning rate", _LR),
    _row("z_dim", "network.z_dim", "dimension of the input latent z", integer(1, MAX_DIM)),
    _row("w_dim", "network.w_dim", "dimension of the intermediate latent w", integer(1, MAX_DIM)),
    _row("map", "network.mapping_layers", "mapping network depth", integer(1, 64)),
    _row("cbase", "network.channel_base", "capacity: channels at resolution r are min(cbase / r, cmax)", integer(1, 2**20)),
    _row("cmax", "network.channel_max", "maximum number of channels per layer", integer(1, MAX_DIM)),
    _row("num_fp16_res", "network.num_fp16_res", "run the N highest-resolution blocks in float16 (0 on a CPU unless fp16_on_cpu)", integer(0, 16)),
    _row("conv_clamp", "network.conv_clamp", "clamp pre-activations to +-N (none: no clamp)", optional(integer(1, 2**16))),
    _row("g_arch", "network.g_architecture", "generator architecture"),
    _row("d_arch", "network.d_architecture", "discriminator architecture"),
    _row("mbstd_group", "network.mbstd_group", "minibatch-stddev group size (divides batch_gpu)", integer(1, MAX_BATCH)),
    _row("freezed", "network.freezed", "Freeze-D: number of discriminator layers kept frozen", integer(0, 64)),
    _row("nhwc", "network.fp16_channels_last", "channels_last memory format in float16 layers"),
    _row("fp16_on_cpu", "network.fp16_on_cpu", "keep the float16 blocks when training on a CPU (slow; for tests)"),
    _row("kimg", "loop.total_kimg", "training length in thousands of real images (fractions allowed)", _KIMG),
    _row("batch", "loop.batch", "total batch size over all GPUs and accumulation rounds", integer(1, MAX_BATCH)),
    _row("batch_gpu", "loop.batch_gpu", "images per GPU per accumulation round (none: batch / GPUs)", optional(integer(1, MAX_BATCH))),
    _row("tick", "loop.kimg_per_tick", "progress report interval in kimg (fractions allowed)", _KIMG),
    _row("snap", "loop.snap", "snapshot interval in ticks (none: only at the end)", optional(integer(1, MAX_COUNT))),
    _row("ema", "loop.ema_kimg", "half-life of G_ema in kimg", real(0, MAX_KIMG)),
    _row("ema_rampup", "loop.ema_rampup", "EMA ramp-up factor (none: no ramp-up)", optional(real(0, 1e3, low_open=True))),
    _row("seed", "loop.seed", "random seed", integer(0, 2**31 - 1)),
    _row("grid", "loop.grid", "reals.png / fakes*.png layout COLUMNSxROWS (auto: NVIDIA's ~8K canvas)", grid),
    _row("dist_timeout", "loop.dist_timeout_s", "seconds before a dead data-parallel peer fails the run", real(1, 10**6)),
    _row("ops_impl", "loop.ops_impl", "custom ops: ref (PyTorch), cuda (compiled kernels) or auto (kernels on CUDA when they build)"),
    _row("resume", "loop.resume", "continue from a snapshot (a file, a run directory, or latest in --outdir), or fine-tune from an NVIDIA .pkl", optional(text)),
    _row("nobench", "loop.cudnn_benchmark", "disable cuDNN benchmarking", inverted_bool),
    _row("allow_tf32", "loop.allow_tf32", "allow TF32 for matmuls and convolutions"),
    _row("metrics", "metrics.names", "comma-separated metrics evaluated at each snapshot, or none", names),
    _row("metrics_cache", "metrics.cache_dir", "real-statistics cache folder", optional(text)),
    _row("detector", "metrics.detector", "Inception weights file", optional(text)),
    _row("vgg16", "metrics.vgg16", "NVIDIA's vgg16.pt (PR and PPL metrics)", optional(text)),
]
# fmt: on
OVERRIDE_KEYS: dict[str, OverrideKey] = {row.key: row for row in _ROWS}
# `fp32` is not a single field: it switches off float16 and the conv clamp together, as NVIDIA's --fp32 does.
FP32_HELP = "disable mixed precision (num_fp16_res 0 and no conv_clamp)"
SPECIAL_OVERRIDE_KEYS = ("fp32",)


# Environment switches are fallbacks only: they fill in an option left at its default, and `resolve_environment`
# writes the value into the options, so training_options.json (and the snapshots) record what ran.
ENV_FALLBACKS: dict[str, str] = {
    "ops_impl": "STYLEGAN_OPS_IMPL",
    "dist_timeout": "STYLEGAN_DIST_TIMEOUT_S",
    "metrics_cache": "STYLEGAN_CACHE_DIR",
    "detector": "STYLEGAN_INCEPTION",
    "vgg16": "STYLEGAN_VGG16",
}
# STYLEGAN_CACHE_DIR names the cache root; real statistics live in its gan-metrics/ folder (default_cache_dir), where
# the pipeline's `real_features` asset and `stylegan metrics` read them, so training-time metrics must look there too.
ENV_SUBFOLDERS: dict[str, str] = {"metrics_cache": "gan-metrics"}


def resolve_environment(options: TrainOptions, environ: Mapping[str, str]) -> TrainOptions:
    """`options` with every environment fallback applied where the option is still at its default."""
    sections: dict[str, dict[str, Any]] = {}
    for key, variable in ENV_FALLBACKS.items():
        raw = environ.get(variable, "").strip()
        row = OVERRIDE_KEYS[key]
        if not raw or getattr(getattr(options, row.section), row.field) != row.default():
            continue
        try:
            value = row.parse(raw.lower() if row.choices else raw)
        except (TypeError, ValueError) as error:
            raise ValueError(f"environment variable {variable}: {error}") from None
        if key in ENV_SUBFOLDERS:
            value = os.path.join(value, ENV_SUBFOLDERS[key])
        sections.setdefault(row.section, {})[row.field] = value
    replaced = {name: dataclasses.replace(getattr(options, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(options, **replaced)


def normalize_override_key(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def parse_value(key: str, value: object) -> Any:
    """The parsed value of one option, or OptionError naming it."""
    if key == "fp32":
        parse: Callable[[object], Any] = to_bool
    else:
        parse = OVERRIDE_KEYS[key].parse
    try:
        return parse(value)
    except (TypeError, ValueError) as error:
        raise OptionError(key, str(error)) from None


def apply_overrides(options: TrainOptions, overrides: Mapping[str, object], source: str = "overrides") -> TrainOptions:
    """Return `options` with overrides applied (keys as in the table, `--flag` spellings accepted).

    Unknown keys raise ValueError naming `source`; bad values raise OptionError naming the key.
    """
    sections: dict[str, dict[str, Any]] = {}
    for raw_key, value in overrides.items():
        key = normalize_override_key(raw_key)
        if key not in OVERRIDE_KEYS and key not in SPECIAL_OVERRIDE_KEYS:
            known = sorted([*OVERRIDE_KEYS, *SPECIAL_OVERRIDE_KEYS])
            raise ValueError(f"{source}: unknown option {show(raw_key)}; known options: {', '.join(known)}")
        parsed = parse_value(key, value)
        if key == "fp32":
            if parsed:
                sections.setdefault("network", {}).update(num_fp16_res=0, conv_clamp=None)
            continue
        row = OVERRIDE_KEYS[key]
        sections.setdefault(row.section, {})[row.field] = parsed
    replaced = {name: dataclasses.replace(getattr(options, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(options, **replaced)
