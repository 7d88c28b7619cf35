"""`datasets_spec/<name>.yaml`: the declarative description of a dataset, loaded strictly into frozen dataclasses.

Unknown keys, duplicate keys and bad values are errors that name the file and the key. The schema is documented for
users in docs/datasets.md; the ingestion defaults live in `IngestOptions`, the training defaults in
`stylegan_core.config`, so a spec holds choices and overrides only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from stylegan_core.data.options import (
    CHANNEL_POLICIES,
    LABEL_SOURCES,
    ON_ERROR,
    RESIZE_FILTERS,
    SHAPES_BOUNDS,
    TRANSFORMS,
    IngestOptions,
    LabelSource,
)
from stylegan_core.data.shapes import ShapesSettings
from stylegan_core.io.limits import MAX_C_DIM
from stylegan_core.spec.fields import (
    Section,
    SpecError,
    aspect_ratio,
    colour,
    cron_expression,
    integer,
    load_yaml,
    names_from,
    one_of,
    optional,
    path_in,
    resolution_list,
    scalar_or_list,
    string,
    subset_of,
    timezone_name,
)
from stylegan_core.spec.projection import ProjectionTargetsSpec, parse_projection_targets

SourceKind = Literal["folder", "zip", "generated", "cifar10"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("folder", "zip", "generated", "cifar10")
GENERATORS = ("shapes",)
_SPEC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Keys a spec's training config may not override: the spec itself decides them.
_RESERVED_OVERRIDES = {"data": "the dataset is the spec's own", "metrics": "use the spec's top-level `metrics` list"}
# NVIDIA's and other tools' words for our keys, offered as "did you mean".
_CONFIG_ALIASES = {"cfg": "preset", "r1_gamma": "gamma"}


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """Where the images come from."""

    kind: SourceKind
    path: Path | None
    """Absolute (resolved against the spec's folder). For `generated`: where to write the set (None: caller picks)."""
    labels: LabelSource = "auto"
    num_classes: int | None = None
    generator: ShapesSettings | None = None
    """Settings of the procedural generator (kind `generated` only)."""


@dataclass(frozen=True, kw_only=True)
class TrainingConfigSpec:
    """A named training configuration: a preset plus CLI-style overrides (see `stylegan_core.options.OVERRIDE_KEYS`)."""

    name: str
    preset: str
    overrides: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """When to retrain, as a cron expression (evaluated in `timezone`)."""

    cron: str
    timezone: str = "UTC"
    configs: tuple[str, ...] | None = None
    """Which configs to retrain; None: all."""
    resolutions: tuple[int, ...] | None = None
    """Which resolutions to retrain; None: all."""


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One `datasets_spec/<name>.yaml`: what data, at which resolutions, trained how, measured how, and when."""

    name: str
    """Equals the file name; prefixes the Dagster asset keys of this dataset."""
    description: str
    source: SourceSpec
    resolutions: tuple[int, ...]
    """Ascending powers of two; one dataset partition each."""
    ingest: IngestOptions
    """The top-level transform, resize_filter, channels, background, on_error... keys (plus the source's labels)."""
    configs: dict[str, TrainingConfigSpec]
    metrics: tuple[str, ...]
    schedule: ScheduleSpec | None
    spec_path: Path
    projection_targets: ProjectionTargetsSpec | None = None
    """Images the `projections` asset projects into every trained network (optional)."""


_TOP_KEYS = (
    "name", "description", "source", "resolutions", "transform", "wide_aspect", "resize_filter", "channels",
    "background", "on_error", "max_images", "max_pixels", "configs", "metrics", "schedule", "projection_targets",
)  # fmt: skip
_SOURCE_KEYS = ("kind", "path", "labels", "num_classes", "generator")
_GENERATOR_KEYS = ("name", *(f.name for f in fields(ShapesSettings)))
_SCHEDULE_KEYS = ("cron", "timezone", "configs", "resolutions")


def load_spec(path: str | os.PathLike[str]) -> DatasetSpec:
    """Parse and validate one spec file."""
    file = Path(path)
    try:
        document = load_yaml(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{file}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{file}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{file}: invalid YAML: {' '.join(str(error).split())}") from None
    top = Section(file, "", document, _TOP_KEYS)
    name = top.take("name", string)
    if not _SPEC_NAME.match(name):
        raise top.error("name", f"must match {_SPEC_NAME.pattern} (it prefixes Dagster asset keys); got {name!r}")
    if name != file.stem:
        raise top.error("name", f"must equal the file name {file.stem!r}, got {name!r}")
    source = _parse_source(Section(file, "source", top.take("source", lambda v: v), _SOURCE_KEYS), file.parent)
    ingest = _parse_ingest(top, source)
    resolutions = top.take("resolutions", resolution_list)
    configs = _parse_configs(top, resolutions, source)
    metrics = top.take("metrics", _metric_names, ())
    schedule = top.take("schedule", lambda v: v, None)
    description = top.take("description", string, "")
    targets = top.take("projection_targets", lambda v: v, None)
    top.finish()
    schedule = None if schedule is None else _parse_schedule(file, schedule, configs, resolutions)
    return DatasetSpec(
        name=name,
        description=description.strip(),
        source=source,
        resolutions=resolutions,
        ingest=ingest,
        configs=configs,
        metrics=metrics,
        schedule=schedule,
        spec_path=file.resolve(),
        projection_targets=None if targets is None else parse_projection_targets(file, targets),
    )


def spec_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The `*.yaml` / `*.yml` files of a spec folder, sorted."""
    directory = Path(folder)
    if not directory.is_dir():
        raise SpecError(f"{directory}: spec folder does not exist")
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def check_specs(files: list[Path]) -> tuple[list[DatasetSpec], list[SpecError]]:
    """Load every file; return the good specs (sorted by name) and one error per bad file, never stopping early."""
    specs: dict[str, DatasetSpec] = {}
    errors: list[SpecError] = []
    for file in files:
        try:
            spec = load_spec(file)
        except SpecError as error:
            errors.append(error)
            continue
        if spec.name in specs:
            errors.append(SpecError(f"{file}: name: {spec.name!r} is already defined by {specs[spec.name].spec_path}"))
            continue
        specs[spec.name] = spec
    return [specs[name] for name in sorted(specs)], errors


def load_specs(folder: str | os.PathLike[str]) -> list[DatasetSpec]:
    """Every spec of a folder, sorted by name; the first bad file raises SpecError."""
    specs, errors = check_specs(spec_files(folder))
    if errors:
        raise errors[0]
    return specs


def _parse_source(section: Section, spec_dir: Path) -> SourceSpec:
    kind = section.take("kind", one_of(SOURCE_KINDS))
    path = section.take("path", optional(path_in(spec_dir)), None)
    default_labels = "subfolders" if kind == "generated" else ("dataset.json" if kind == "cifar10" else "auto")
    labels = section.take("labels", one_of(LABEL_SOURCES), default_labels)
    num_classes = section.take("num_classes", optional(integer(1, MAX_C_DIM)), None)
    generator_value = section.take("generator", lambda v: v, None)
    section.finish()
    if kind != "generated" and path is None:
        raise section.error("path", f"required for a {kind} source")
    if kind == "generated":
        generator = _parse_generator(Section(section.file, "source.generator", generator_value or {}, _GENERATOR_KEYS))
        if labels != "subfolders" and labels != "none":
            raise section.error("labels", "a generated source is labelled by its class sub-folders (or none)")
    elif generator_value is not None:
        raise section.error("generator", f"only a generated source has generator settings, this one is {kind}")
    else:
        generator = None
    if kind == "cifar10" and num_classes is None:
        num_classes = 10
    return SourceSpec(kind=kind, path=path, labels=labels, num_classes=num_classes, generator=generator)


def _parse_generator(section: Section) -> ShapesSettings:
    section.take("name", one_of(GENERATORS), "shapes")
    defaults = ShapesSettings()
    settings = {
        f.name: section.take(f.name, integer(*SHAPES_BOUNDS[f.name]), getattr(defaults, f.name))
        for f in fields(ShapesSettings)
    }
    section.finish()
    try:
        return ShapesSettings(**settings)
    except ValueError as error:
        raise SpecError(f"{section.file}: source.generator: {error}") from None


def _parse_ingest(top: Section, source: SourceSpec) -> IngestOptions:
    defaults = IngestOptions()
    values = {
        "transform": top.take("transform", one_of(TRANSFORMS, {None: "none"}), defaults.transform),
        "wide_aspect": top.take("wide_aspect", aspect_ratio, defaults.wide_aspect),
        "resize_filter": top.take("resize_filter", one_of(RESIZE_FILTERS), defaults.resize_filter),
        "channels": top.take("channels", one_of(CHANNEL_POLICIES, {"gray": "grey"}), defaults.channels),
        "background": top.take("background", colour, defaults.background),
        "on_error": top.take("on_error", one_of(ON_ERROR), defaults.on_error),
        "max_images": top.take("max_images", optional(integer(1, 10**9)), defaults.max_images),
        "max_pixels": top.take("max_pixels", integer(1, 2**34), defaults.max_pixels),
    }
    return IngestOptions(labels=source.labels, num_classes=source.num_classes, **values)


def _metric_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of metric names, got {value!r}")
    from stylegan_core.metric_names import parse_metric_name

    for metric in value:
        parse_metric_name(metric)
    if len(set(value)) != len(value):
        raise ValueError(f"lists a metric twice: {value!r}")
    return tuple(value)


def _parse_configs(top: Section, resolutions: tuple[int, ...], source: SourceSpec) -> dict[str, TrainingConfigSpec]:
    raw = top.take("configs", lambda v: v, {})
    configs_section = Section(top.file, "configs", raw, ())
    configs = {}
    for name, body in configs_section.data.items():
        where = f"configs.{name}"
        if not isinstance(name, str) or not _CONFIG_NAME.match(name):
            raise SpecError(f"{top.file}: {where}: config names must match {_CONFIG_NAME.pattern}")
        configs[name] = _parse_config(top.file, where, name, body, resolutions, source)
    return configs


def _parse_config(
    file: Path, where: str, name: str, body: Any, resolutions: tuple[int, ...], source: SourceSpec
) -> TrainingConfigSpec:
    """One training config: every value is parsed now, and the whole config resolved at every resolution, so a
    mistake is reported here, naming the YAML key, and not by the training run."""
    from stylegan_core.config import TrainOptions
    from stylegan_core.options import OVERRIDE_KEYS, SPECIAL_OVERRIDE_KEYS, OptionError, normalize_override_key
    from stylegan_core.presets import PRESET_NAMES, resolve_options

    allowed = tuple(key for key in (*OVERRIDE_KEYS, *SPECIAL_OVERRIDE_KEYS) if key not in _RESERVED_OVERRIDES)
    keys = ("preset", *allowed)
    section = Section(file, where, {} if body is None else body, keys, _CONFIG_ALIASES)
    overrides: dict[str, object] = {}
    for raw_key in list(section.data):
        key = normalize_override_key(str(raw_key))
        if key in _RESERVED_OVERRIDES:
            raise section.error(str(raw_key), f"cannot be set here: {_RESERVED_OVERRIDES[key]}")
        if key != "preset" and key in keys:
            section.data[key] = section.data.pop(raw_key)
            overrides[key] = section.take(key, scalar_or_list)
    preset = section.take("preset", one_of(PRESET_NAMES), TrainOptions().preset)
    section.finish()
    for resolution in resolutions:
        try:
            options = resolve_options(preset, resolution, 1, overrides, source=f"{file}: {where}")
        except OptionError as error:
            raise section.error(error.key, error.message(lambda key: key)) from None
        except ValueError as error:
            message = str(error)
            raise SpecError(message if message.startswith(str(file)) else f"{file}: {where}: {message}") from None
        if options.data.cond and source.labels == "none":
            raise SpecError(f"{file}: {where}.cond: conditional training needs labels, but source.labels is none")
    return TrainingConfigSpec(name=name, preset=preset, overrides=overrides)


def _parse_schedule(
    file: Path, value: Any, configs: Mapping[str, TrainingConfigSpec], resolutions: tuple[int, ...]
) -> ScheduleSpec:
    section = Section(file, "schedule", {"cron": value} if isinstance(value, str) else value, _SCHEDULE_KEYS)
    cron = section.take("cron", cron_expression)
    timezone = section.take("timezone", timezone_name, "UTC")
    chosen = section.take("configs", optional(names_from(tuple(configs))), None)
    chosen_resolutions = section.take("resolutions", optional(subset_of(resolutions)), None)
    section.finish()
    return ScheduleSpec(cron=cron, timezone=timezone, configs=chosen, resolutions=chosen_resolutions)
