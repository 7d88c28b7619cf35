"""Where the dataset specs come from, and the few facts of a spec the Dagster layer needs (one place to adapt)."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_project.metadata import sha256_text
from dagster_project.resources import REPO_ROOT

if TYPE_CHECKING:
    from stylegan_core.spec import DatasetSpec

_log = logging.getLogger(__name__)
SPECS_ENV = "STYLEGAN_SPECS"
DEFAULT_SPECS_DIR = REPO_ROOT / "datasets_spec"


def specs_dir() -> Path:
    """$STYLEGAN_SPECS, else the repository's datasets_spec/."""
    return Path(os.environ.get(SPECS_ENV) or DEFAULT_SPECS_DIR).expanduser().resolve()


def load_all(folder: Path | None = None) -> list[DatasetSpec]:
    """The good specs of the folder; each bad one is logged (file, key, problem) and left out, so one mistake does
    not take every group of the code location down."""
    specs, errors = load_checked(folder)
    log_errors(errors)
    return specs


def log_errors(errors: list[str]) -> None:
    for error in errors:
        _log.error("spec left out of the code location: %s", error)


def load_checked(folder: Path | None = None) -> tuple[list[DatasetSpec], list[str]]:
    """(good specs, one message per bad file). A schedule Dagster itself would refuse makes its spec bad, too."""
    from stylegan_core.spec import SpecError, check_specs
    from stylegan_core.spec.loader import spec_files

    try:
        files = spec_files(folder or specs_dir())
    except SpecError as error:
        return [], [str(error)]
    specs, errors = check_specs(files)
    messages = [str(error) for error in errors]
    good = []
    for spec in specs:
        problem = schedule_problem(spec)
        if problem:
            messages.append(problem)
        else:
            good.append(spec)
    return good, messages


def schedule_problem(spec: DatasetSpec) -> str | None:
    """The spec loader checks cron fields itself; this asks Dagster's own parser too, so a schedule that loads
    also builds."""
    from dagster._utils.schedules import is_valid_cron_string

    if spec.schedule is None or is_valid_cron_string(spec.schedule.cron):
        return None
    return f"{spec.spec_path}: schedule.cron: Dagster cannot parse {spec.schedule.cron!r}"


def work_dir(spec: DatasetSpec, artifacts_root: Path) -> Path:
    """Where generated (or converted) sources of a spec are written when the spec names no path."""
    return artifacts_root / spec.name


def source_path(spec: DatasetSpec, artifacts_root: Path) -> Path:
    """The folder or zip ingestion reads (generated and converted sources are written on first use)."""
    from stylegan_core.data.ingest import materialize_source

    return materialize_source(spec.source, work_dir(spec, artifacts_root), spec.name)


def inventory_options(spec: DatasetSpec) -> dict[str, Any]:
    return {"labels": spec.source.labels, "num_classes": spec.source.num_classes, "max_pixels": spec.ingest.max_pixels}


def config_of(spec: DatasetSpec, config: str) -> tuple[str, dict[str, object]]:
    """(preset, overrides) of a training config, or a clear error naming the spec file."""
    if config not in spec.configs:
        raise KeyError(f"{spec.spec_path}: no training config {config!r}; configs: {', '.join(spec.configs)}")
    chosen = spec.configs[config]
    return chosen.preset, dict(chosen.overrides)


def group_name(spec_name: str) -> str:
    """Dagster group and job names allow only letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", spec_name)


def fingerprint(value: Any) -> str:
    """sha256 of a spec section (dataclasses, mappings, lists), for code versions that change when the spec does."""
    plain = asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
    return sha256_text(json.dumps(plain, sort_keys=True, default=str))
