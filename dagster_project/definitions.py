"""The code location: every spec in $STYLEGAN_SPECS (default datasets_spec/) becomes an asset group.

`dagster dev -w workspace.yaml` and `dagster asset materialize -m dagster_project.definitions ...` load `defs`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from dagster_project import specs as spec_utils
from dagster_project.automation import build_spec_automation
from dagster_project.checks import build_spec_checks
from dagster_project.factory import build_spec_assets
from dagster_project.launch import ProcessGroupPipesClient
from dagster_project.resources import StyleGANResource

# Two Dagster features used on purpose: MultiToSingleDimensionPartitionMapping (beta) and partitioned asset checks
# (preview). docs/dagster.md names them; their warnings would otherwise repeat on every load. The third is Dagster
# warning about itself: every Pipes session reads the preview `PipesMessageReader.expected_writer_count` internally,
# so each training run printed a PreviewWarning that no user code can avoid (issue 16).
warnings.filterwarnings(
    "ignore",
    message=r".*(MultiToSingleDimensionPartitionMapping|partitions_def on an AssetCheckSpec"
    r"|PipesMessageReader\.expected_writer_count)",
)


def build_resources(stylegan: StyleGANResource | None = None) -> dict[str, object]:
    stylegan = stylegan or StyleGANResource.from_env()
    client = ProcessGroupPipesClient(termination_timeout_seconds=stylegan.termination_timeout_s)
    return {"stylegan": stylegan, "training_client": client}


def spec_error_asset(index: int, message: str) -> dg.AssetsDefinition:
    """A bad spec, visible in the UI: its group is missing, this asset says why (and fails if materialised)."""
    name = spec_utils.group_name(Path(message.split(": ", 1)[0]).stem) or "spec"

    @dg.asset(key=["spec_errors", f"{name}_{index}"], group_name="spec_errors", description=message)
    def _bad_spec() -> None:
        raise dg.Failure(description=message)

    return _bad_spec


def build_definitions(spec_folder: Path | None = None, stylegan: StyleGANResource | None = None) -> dg.Definitions:
    assets, checks, jobs, schedules, sensors = [], [], [], [], []
    specs, errors = spec_utils.load_checked(spec_folder)
    spec_utils.log_errors(errors)
    assets += [spec_error_asset(index, message) for index, message in enumerate(errors)]
    for spec in specs:
        group = build_spec_assets(spec)
        automation = build_spec_automation(group)
        assets += group.all
        checks += build_spec_checks(group)
        jobs += automation.jobs
        schedules += automation.schedules
        sensors += automation.sensors
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=build_resources(stylegan),
    )


defs = build_definitions()
