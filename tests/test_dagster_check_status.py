"""Checks that did not run do not show as failed (issue 16).

Dagster plans every check selected in a run when the run is created, and resolves a check still planned after its run
FAILED as EXECUTION_FAILED (`AssetCheckExecutionRecord.resolve_status`), which the UI counts as failed ("0 / 3
passed"). So `<spec>_train` materialises `network` without its checks, and `<spec>_evaluate` runs them after a
successful training run. These tests read the status as the UI does: the latest execution record of each check,
resolved by Dagster, on a real instance, and over GraphQL from a code server loading the project's definitions.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.loader import LoadingContextForTest
from dagster_support import cpu_resource, materialize, write_test_specs

from dagster_project.checks import NETWORK_CHECKS
from dagster_project.definitions import build_definitions

PARTITION = "ci-tiny|16"
NETWORK_KEY = dg.AssetKey(["shapes", "network"])

CHECKS_QUERY = """
query Checks($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
      }
    }
  }
}
"""


def resolved_statuses(instance: dg.DagsterInstance) -> dict[str, str | None]:
    """Each network check's latest execution, resolved by Dagster (None: never planned or run)."""
    context = LoadingContextForTest(instance)
    statuses: dict[str, str | None] = {}
    for name in NETWORK_CHECKS:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(NETWORK_KEY, name), limit=1
        )
        statuses[name] = asyncio.run(history[0].resolve_status(context)).value if history else None
    return statuses


@pytest.fixture
def defs(tmp_path: Path) -> dg.Definitions:
    return build_definitions(write_test_specs(tmp_path / "specs"), cpu_resource(tmp_path / "artifacts"))


def test_a_failed_training_run_leaves_the_network_checks_unrun_not_failed(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        # No dataset was ingested, so `network` fails before training starts.
        result = defs.resolve_job_def("shapes_train").execute_in_process(
            instance=instance, partition_key=PARTITION, raise_on_error=False
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "shapes__network"
        assert resolved_statuses(instance) == dict.fromkeys(NETWORK_CHECKS)

        # What the UI showed before: the same failure with the checks selected beside their asset.
        combined = materialize(defs, ["shapes/network"], PARTITION, instance, raise_on_error=False)
        assert not combined.success and combined.get_asset_check_evaluations() == []
        assert resolved_statuses(instance) == dict.fromkeys(NETWORK_CHECKS, "EXECUTION_FAILED")


def test_a_successful_run_requests_the_next_job_for_its_partition(defs: dg.Definitions) -> None:
    sensor = defs.resolve_sensor_def("shapes_after_success")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # the second half of training, not automation
    with dg.instance_for_test() as instance:
        # A real successful run for the event (the comparison warns, without metrics, and succeeds).
        tags = {"dagster/partition": PARTITION}
        compare = defs.resolve_job_def("shapes_compare").execute_in_process(instance=instance, tags=tags)
        assert compare.success and compare.get_asset_check_evaluations()[0].partition == PARTITION
        for job, expected in (("shapes_train", "shapes_evaluate"), ("shapes_evaluate", "shapes_compare")):
            run = dg.DagsterRun(job_name=job, run_id=f"{job}-run", tags={"dagster/partition": PARTITION})
            context = dg.build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_event=compare.get_run_success_event(), dagster_instance=instance,
                dagster_run=run,
            )  # fmt: skip
            request = sensor(context)
            assert isinstance(request, dg.RunRequest)
            assert (request.job_name, request.tags["dagster/partition"]) == (expected, PARTITION)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="starts a code server process")
def test_graphql_shows_no_failed_check_after_a_failed_training_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    specs = write_test_specs(tmp_path / "specs")
    monkeypatch.setenv("STYLEGAN_SPECS", str(specs))
    monkeypatch.setenv("STYLEGAN_ARTIFACTS", str(tmp_path / "artifacts"))
    defs = build_definitions(specs, cpu_resource(tmp_path / "artifacts"))
    location = tmp_path / "location.py"
    location.write_text("from dagster_project.definitions import build_definitions\n\ndefs = build_definitions()\n")
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("shapes_train").execute_in_process(
            instance=instance, partition_key=PARTITION, raise_on_error=False
        )
        with define_out_of_process_context(str(location), "defs", instance) as context:
            result = execute_dagster_graphql(context, CHECKS_QUERY, {"assetKey": {"path": ["shapes", "network"]}})
            checks = result.data["assetNodeOrError"]["assetChecksOrError"]["checks"]
            assert {check["name"] for check in checks} == set(NETWORK_CHECKS)
            assert [check["executionForLatestMaterialization"] for check in checks] == [None] * 3

            materialize(defs, ["shapes/network"], PARTITION, instance, raise_on_error=False)
            result = execute_dagster_graphql(context, CHECKS_QUERY, {"assetKey": {"path": ["shapes", "network"]}})
            checks = result.data["assetNodeOrError"]["assetChecksOrError"]["checks"]
            assert [check["executionForLatestMaterialization"]["status"] for check in checks] == [
                "EXECUTION_FAILED"
            ] * 3
