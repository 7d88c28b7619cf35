"""Sensors: a changed source requests ingestion (content fingerprint as cursor), then retraining once that succeeds."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import numpy as np
import PIL.Image
import pytest
from dagster_support import cpu_resource

from dagster_project.automation import SOURCE_FINGERPRINT_TAG
from dagster_project.definitions import build_definitions

SPEC = """
name: photos
description: a folder source watched by the sensor
source:
  kind: folder
  path: {source}
  labels: subfolders
resolutions: [8, 16]
channels: rgb
configs:
  small:
    preset: auto
    cbase: 256
    cmax: 32
    cond: true
"""


def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, size=(20, 20, 3), dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(path)


@pytest.fixture()
def photos(tmp_path: Path) -> tuple[dg.Definitions, Path, Path]:
    source = tmp_path / "source"
    for index in range(6):
        _write_image(source / ("cats" if index % 2 else "dogs") / f"{index}.png", index)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "photos.yaml").write_text(SPEC.format(source=source))
    return build_definitions(specs, cpu_resource(tmp_path / "artifacts")), source, tmp_path / "artifacts"


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("photos_source_changed")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources)
    result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], result.skip_message, context.cursor
    return result.run_requests or [], result.skip_reason and result.skip_reason.skip_message, result.cursor


def test_the_source_sensor_fires_on_changed_content_only(photos) -> None:
    defs, source, _ = photos
    with dg.instance_for_test() as instance:
        requests, _, cursor = _evaluate(defs, instance, None)
        assert sorted(r.partition_key for r in requests) == ["16", "8"]  # never ingested: ingest every resolution
        assert len({r.tags[SOURCE_FINGERPRINT_TAG] for r in requests}) == 1
        first_keys = {r.run_key for r in requests}

        requests, skip, same_cursor = _evaluate(defs, instance, cursor)
        assert requests == [] and "unchanged" in skip

        touched = source / "cats" / "1.png"
        os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
        requests, skip, touched_cursor = _evaluate(defs, instance, cursor)
        assert requests == [] and "content unchanged" in skip and touched_cursor != cursor

        _write_image(source / "cats" / "7.png", 7)
        requests, _, new_cursor = _evaluate(defs, instance, touched_cursor)
        assert sorted(r.partition_key for r in requests) == ["16", "8"]
        assert {r.run_key for r in requests}.isdisjoint(first_keys) and new_cursor != touched_cursor

        # A fresh sensor (no cursor) compares with the last ingested content: nothing to do once it is ingested.
        raw_images = dg.AssetKey(["photos", "raw_images"])
        ingest = defs.resolve_job_def("photos_ingest")
        assert ingest.execute_in_process(instance=instance, partition_key="8", asset_selection=[raw_images]).success
        requests, skip, _ = _evaluate(defs, instance, None)
        assert requests == [] and "content unchanged" in skip


def test_a_source_triggered_ingest_requests_retraining_at_its_resolution(photos) -> None:
    defs, _, _ = photos
    job = defs.resolve_job_def("photos_ingest")
    sensor = defs.resolve_sensor_def("photos_retrain_on_new_data")
    data = [dg.AssetKey(["photos", "raw_images"]), dg.AssetKey(["photos", "dataset"])]
    with dg.instance_for_test() as instance:
        for tags, expected in (({SOURCE_FINGERPRINT_TAG: "f" * 64}, ["small|8"]), ({}, [])):
            result = job.execute_in_process(instance=instance, partition_key="8", tags=tags, asset_selection=data)
            assert result.success
            context = dg.build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_event=result.get_run_success_event(), dagster_instance=instance,
                dagster_run=result.dagster_run,
            )  # fmt: skip
            outcome = sensor(context)
            requests = [] if isinstance(outcome, dg.SkipReason) else list(outcome)
            assert [r.partition_key for r in requests] == expected
        assert requests == [] and "not started by a source change" in outcome.skip_message
