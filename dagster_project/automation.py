"""Jobs, schedules and sensors of one spec's group.

* `<spec>_ingest` (raw_images → dataset → real_features, per resolution).
* `<spec>_train` (network), `<spec>_evaluate` (the blocking network checks, then metrics and samples) and
  `<spec>_compare` (the metrics regression check), per `config|resolution`, chained by `<spec>_after_success`.
  A check is never planned in the run that materialises its asset: Dagster plans every selected check when a run is
  created, and resolves a check still planned when its run FAILS as "execution failed" (AssetCheckExecutionRecord.
  resolve_status), so a failed training run showed its three network checks as failed although none ran (issue 16).
  In a follow-up run the checks run against the asset's newest materialisation, and a failed blocking check still
  stops metrics and samples, which share its run.
* `<spec>_retrain` (only for specs with a `schedule`): requests `<spec>_train` for the scheduled partitions. Training
  continues from each partition's latest snapshot on the currently materialised dataset (see `training.py`).
* `<spec>_source_changed` (folder and zip sources): when the source's content fingerprint differs from the last one
  seen (or, the first time, from the last `raw_images` materialisation), requests `<spec>_ingest` for every
  resolution. A cheap stat fingerprint (names, sizes, times) gates the content hashing.
* `<spec>_retrain_on_new_data`: when an ingest run started by that sensor succeeds, requests `<spec>_train` for every
  config at that resolution. Generated and converted sources change only with the spec, which code versions track.

Schedules and sensors start STOPPED (turn them on in the UI, or with `dagster schedule start` / `dagster sensor
start`), unless STYLEGAN_AUTOMATION=running; `<spec>_after_success` (the second half of a training request, not
automation of its own) starts RUNNING. Schedules and sensors need the daemon (`dagster dev` runs one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import dagster as dg

from dagster_project import specs as spec_utils
from dagster_project.factory import SpecAssets
from dagster_project.partitions import TrainingPartition
from dagster_project.resources import StyleGANResource

AUTOMATION_ENV = "STYLEGAN_AUTOMATION"
SOURCE_FINGERPRINT_TAG = "stylegan/source_fingerprint"
SENSOR_INTERVAL_S = 300
WATCHED_SOURCE_KINDS = ("folder", "zip")


@dataclass(frozen=True)
class SpecAutomation:
    jobs: list[dg.UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def _running_by_default() -> bool:
    return os.environ.get(AUTOMATION_ENV, "stopped").strip().lower() == "running"


def build_spec_automation(assets: SpecAssets) -> SpecAutomation:
    group = assets.group
    ingest_job = dg.define_asset_job(
        f"{group}_ingest",
        selection=dg.AssetSelection.assets(assets.raw_images, assets.dataset, assets.real_features),
        description=f"Inventory, ingest, validate and featurise '{assets.spec.name}' at one resolution.",
    )
    # The follow-up jobs run their steps in one process: sequential anyway, and each step process would import torch.
    train_job = dg.define_asset_job(
        f"{group}_train",
        selection=dg.AssetSelection.assets(assets.network).without_checks(),
        executor_def=dg.in_process_executor,
        description=f"Train (or continue) '{assets.spec.name}' for one config|resolution; when it succeeds, "
        f"{group}_after_success runs {group}_evaluate.",
    )
    evaluate_job = dg.define_asset_job(
        f"{group}_evaluate",
        selection=dg.AssetSelection.checks_for_assets(assets.network)
        | dg.AssetSelection.assets(*[a for a in assets.trained if a is not assets.network]).without_checks(),
        executor_def=dg.in_process_executor,
        description="Check the newest network snapshot (blocking), then evaluate its metrics and render samples "
        "(and projections, where the spec has targets).",
    )
    compare_job = dg.define_asset_job(
        f"{group}_compare",
        selection=dg.AssetSelection.checks_for_assets(assets.metrics),
        executor_def=dg.in_process_executor,
        description="Compare the newest metrics with the previous materialisation of the same partition.",
    )
    schedules = [retrain_schedule(assets, train_job)] if assets.spec.schedule else []
    sensors = [
        retrain_sensor(assets, ingest_job, train_job),
        follow_up_sensor(assets, train_job, evaluate_job, compare_job),
    ]
    if assets.spec.source.kind in WATCHED_SOURCE_KINDS:
        sensors.insert(0, source_sensor(assets, ingest_job))
    return SpecAutomation([ingest_job, train_job, evaluate_job, compare_job], schedules, sensors)


def scheduled_partitions(assets: SpecAssets) -> list[str]:
    schedule = assets.spec.schedule
    configs = schedule.configs or tuple(assets.spec.configs)
    resolutions = schedule.resolutions or assets.spec.resolutions
    return [TrainingPartition(config, resolution).key for config in configs for resolution in resolutions]


def retrain_schedule(assets: SpecAssets, train_job) -> dg.ScheduleDefinition:
    schedule = assets.spec.schedule
    keys = scheduled_partitions(assets)
    status = dg.DefaultScheduleStatus.RUNNING if _running_by_default() else dg.DefaultScheduleStatus.STOPPED

    @dg.schedule(
        name=f"{assets.group}_retrain", cron_schedule=schedule.cron, execution_timezone=schedule.timezone,
        job=train_job, default_status=status, description=f"Retrain {', '.join(keys)} ({schedule.cron}).",
    )  # fmt: skip
    def retrain(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        return [
            dg.RunRequest(run_key=f"{stamp}|{key}", partition_key=key, tags={"stylegan/trigger": "schedule"})
            for key in keys
        ]

    return retrain


def last_ingested_fingerprint(instance: dg.DagsterInstance | None, raw_images_key: dg.AssetKey) -> str | None:
    """The data version (= source content fingerprint) of the latest raw_images materialisation, if any."""
    if instance is None:
        return None
    event = instance.get_latest_materialization_event(raw_images_key)
    if event is None or event.asset_materialization is None:
        return None
    return event.asset_materialization.tags.get("dagster/data_version")


def source_sensor(assets: SpecAssets, ingest_job) -> dg.SensorDefinition:
    spec = assets.spec
    status = dg.DefaultSensorStatus.RUNNING if _running_by_default() else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name=f"{assets.group}_source_changed", job=ingest_job, minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=status, description=f"Re-ingests '{spec.name}' when the images in {spec.source.path} change.",
    )  # fmt: skip
    def source_changed(context: dg.SensorEvaluationContext, stylegan: StyleGANResource):
        from stylegan_core.data.inventory import inventory_source, quick_fingerprint

        cursor = json.loads(context.cursor) if context.cursor else {}
        source = spec_utils.source_path(spec, stylegan.root)
        stat = quick_fingerprint(source)
        if cursor.get("stat") == stat:
            return dg.SkipReason(f"{source}: unchanged (names, sizes and modification times)")
        content = inventory_source(source, **spec_utils.inventory_options(spec)).fingerprint
        seen = cursor.get("content") or last_ingested_fingerprint(context.instance, assets.raw_images.key)
        new_cursor = json.dumps({"stat": stat, "content": content})
        if content == seen:
            return dg.SensorResult(skip_reason=f"{source}: content unchanged since last seen", cursor=new_cursor)
        requests = [
            dg.RunRequest(
                run_key=f"{content[:16]}|{resolution}",
                partition_key=str(resolution),
                tags={SOURCE_FINGERPRINT_TAG: content, "stylegan/trigger": "source_changed"},
            )  # fmt: skip
            for resolution in spec.resolutions
        ]
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return source_changed


def retrain_sensor(assets: SpecAssets, ingest_job, train_job) -> dg.SensorDefinition:
    spec = assets.spec
    status = dg.DefaultSensorStatus.RUNNING if _running_by_default() else dg.DefaultSensorStatus.STOPPED

    @dg.run_status_sensor(
        name=f"{assets.group}_retrain_on_new_data", run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_job], request_job=train_job, default_status=status,
        description=f"After a source-triggered ingest of '{spec.name}' succeeds, retrain every config at that "
        "resolution.",
    )  # fmt: skip
    def retrain_on_new_data(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        fingerprint = run.tags.get(SOURCE_FINGERPRINT_TAG)
        resolution = run.tags.get("dagster/partition")
        if not fingerprint or not resolution:
            return dg.SkipReason(f"run {run.run_id} was not started by a source change")
        return [
            dg.RunRequest(
                run_key=f"{fingerprint[:16]}|{config}|{resolution}",
                partition_key=TrainingPartition(config, int(resolution)).key,
                tags={SOURCE_FINGERPRINT_TAG: fingerprint, "stylegan/trigger": "new_data"},
            )  # fmt: skip
            for config in spec.configs
        ]

    return retrain_on_new_data


def follow_up_sensor(assets: SpecAssets, train_job, evaluate_job, compare_job) -> dg.SensorDefinition:
    """train → evaluate → compare, each requested when the previous run of the same partition succeeds."""
    follows = {train_job.name: evaluate_job.name, evaluate_job.name: compare_job.name}

    @dg.run_status_sensor(
        name=f"{assets.group}_after_success", run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[train_job, evaluate_job], request_jobs=[evaluate_job, compare_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Runs the checks of '{assets.spec.name}' after their asset's run succeeded: "
        f"{train_job.name} → {evaluate_job.name} → {compare_job.name}.",
    )  # fmt: skip
    def after_success(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        partition = run.tags.get("dagster/partition")
        if not partition:
            return dg.SkipReason(f"run {run.run_id} has no partition")
        # The partition as a tag, not partition_key: `compare` selects a check only, and Dagster derives a job's
        # partitions from its assets, so it would refuse the key; the check reads it from the tag.
        return dg.RunRequest(
            run_key=f"{run.run_id}|{follows[run.job_name]}", job_name=follows[run.job_name],
            tags={"dagster/partition": partition, "stylegan/follows": run.run_id},
        )  # fmt: skip

    return after_success
