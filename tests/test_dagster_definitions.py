"""The code location loads, every spec becomes its group with the right partitions, and the pure helpers behave."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.checks import augment_p_result, metric_values, regression_result
from dagster_project.definitions import build_definitions
from dagster_project.factory import CODE_VERSIONS
from dagster_project.partitions import TrainingPartition, parse_training_key
from dagster_project.resources import StyleGANResource
from dagster_project.specs import DEFAULT_SPECS_DIR, load_all
from dagster_project.training import DatasetFacts, plan_training

REPO = Path(__file__).resolve().parents[1]
ASSETS = ("raw_images", "dataset", "real_features", "network", "metrics", "samples")
SPECS = load_all(DEFAULT_SPECS_DIR)
# Every example, including those whose data a fresh clone lacks (the default leaves those out; tested below).
defs = build_definitions(include_absent=True)


def test_definitions_load_and_the_cli_validates_them() -> None:
    dg.Definitions.validate_loadable(defs)
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "dagster_project.definitions"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_every_spec_is_a_group_with_its_partitions(spec) -> None:
    graph = defs.resolve_asset_graph()
    for name in ASSETS:
        node = graph.get(dg.AssetKey([spec.name, name]))
        assert node.group_name == spec.name
        assert node.code_version and node.code_version.startswith(CODE_VERSIONS[name])
    resolutions = [str(r) for r in spec.resolutions]
    dataset = graph.get(dg.AssetKey([spec.name, "dataset"]))
    assert dataset.partitions_def.get_partition_keys() == resolutions
    expected = sorted(f"{config}|{resolution}" for config in spec.configs for resolution in resolutions)
    for name in ("network", "metrics", "samples"):
        node = graph.get(dg.AssetKey([spec.name, name]))
        assert sorted(node.partitions_def.get_partition_keys()) == expected
    network = graph.get(dg.AssetKey([spec.name, "network"]))
    assert network.pools == {"gpu"}
    mapping = network.partition_mappings[dg.AssetKey([spec.name, "dataset"])]
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    assert mapping.partition_dimension_name == "resolution"


def test_examples_without_their_data_are_left_out_unless_asked_for(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "shapes.yaml").write_text((DEFAULT_SPECS_DIR / "shapes.yaml").read_text())
    absent = "name: faces\nsource: {kind: folder, path: ../no-such-folder, labels: none}\nresolutions: [32]\n"
    (folder / "faces.yaml").write_text(absent + "configs: {small: {preset: auto}}\n")
    monkeypatch.delenv("STYLEGAN_ALL_SPECS", raising=False)
    groups = {node.group_name for node in build_definitions(folder).resolve_asset_graph().asset_nodes}
    assert groups == {"shapes"}
    monkeypatch.setenv("STYLEGAN_ALL_SPECS", "1")
    groups = {node.group_name for node in build_definitions(folder).resolve_asset_graph().asset_nodes}
    assert groups == {"shapes", "faces"}
    (tmp_path / "no-such-folder").mkdir()  # the data arrives: the group appears without the variable
    monkeypatch.delenv("STYLEGAN_ALL_SPECS")
    groups = {node.group_name for node in build_definitions(folder).resolve_asset_graph().asset_nodes}
    assert groups == {"shapes", "faces"}


def test_augment_p_check_accepts_a_run_without_augmentation() -> None:
    assert augment_p_result(None).passed  # --aug noaug: no pipeline, no p
    assert augment_p_result(0.3).passed
    assert not augment_p_result(1.5).passed


def test_checks_gate_where_they_should() -> None:
    blocking = {key.name: spec.blocking for key, spec in _check_specs("shapes").items()}
    assert blocking == {
        "dataset_valid": True, "network_finite": True, "network_output_shape": True, "network_augment_p": True,
        "metrics_no_regression": False,
    }  # fmt: skip


def _check_specs(spec_name: str) -> dict:
    found = {}
    for checks in defs.asset_checks:
        for spec in checks.check_specs_by_output_name.values():
            if spec.asset_key.path[0] == spec_name:
                found[spec.key] = spec
    return found


def test_jobs_per_spec_and_a_schedule_only_where_a_spec_has_one() -> None:
    job_names = {job.name for job in defs.jobs}
    for spec in SPECS:
        assert {f"{spec.name}_{job}" for job in ("ingest", "train", "evaluate", "compare")} <= job_names
    scheduled = {spec.name for spec in SPECS if spec.schedule}
    assert scheduled, "the example specs should include one with a schedule (ffhq)"
    assert {schedule.name for schedule in defs.schedules} == {f"{name}_retrain" for name in scheduled}


def test_the_schedule_requests_the_scheduled_training_partitions() -> None:
    spec = next(spec for spec in SPECS if spec.schedule)
    schedule = defs.resolve_schedule_def(f"{spec.name}_retrain")
    assert schedule.cron_schedule == spec.schedule.cron
    context = dg.build_schedule_context(scheduled_execution_time=datetime.datetime(2026, 11, 29, 3))
    requests = list(schedule(context))
    configs = spec.schedule.configs or tuple(spec.configs)
    resolutions = spec.schedule.resolutions or spec.resolutions
    assert sorted(r.partition_key for r in requests) == sorted(f"{c}|{r}" for c in configs for r in resolutions)
    assert len({r.run_key for r in requests}) == len(requests)


def test_training_keys_parse_from_both_forms() -> None:
    assert parse_training_key("cpu-tiny|16") == TrainingPartition("cpu-tiny", 16)
    key = dg.MultiPartitionKey({"config": "paper256", "resolution": "256"})
    assert str(key) == "paper256|256"  # dimensions in alphabetical order, whatever the declaration order
    assert parse_training_key(key) == TrainingPartition("paper256", 256)
    with pytest.raises(ValueError, match="config\\|resolution"):
        parse_training_key("256")


def test_torchrun_arguments() -> None:
    assert StyleGANResource(nproc_per_node="2").torchrun_args() == ["--nproc-per-node=2", "--standalone"]
    multi = StyleGANResource(nproc_per_node="8", nnodes=2, rdzv_endpoint="node0:29500")
    expected = ["--nproc-per-node=8", "--nnodes=2", "--node-rank=1", "--rdzv-endpoint=node0:29500"]
    assert multi.torchrun_args(1) == expected
    assert multi.world_size() == 16
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        StyleGANResource(nnodes=2).torchrun_args()
    with pytest.raises(ValueError, match="positive integer"):
        StyleGANResource(nproc_per_node="two").processes_per_node()
    import torch

    assert StyleGANResource().processes_per_node() == max(torch.cuda.device_count(), 1)


def _snapshot(run_dir: Path, label: str) -> Path:
    path = run_dir / "snapshots" / f"network-snapshot-{label}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_run_directories_continue_fine_tune_or_start_afresh(tmp_path: Path) -> None:
    from dagster_project.training import prepare_run_dir

    def plan(content_hash: str, overrides: dict):
        facts = DatasetFacts(tmp_path / "d.zip", tmp_path / "d.parquet", content_hash, 3, 5)
        result = plan_training(tmp_path / "runs", "auto", overrides, 16, 1, facts, "test")
        prepare_run_dir(result, facts, "cfg|16")
        return result

    base = {"cbase": 256, "cmax": 32, "kimg": 1}
    first = plan("a" * 64, base)
    assert first.mode == "new" and first.resume is None
    snapshot = _snapshot(first.run_dir, "000000.016")
    again = plan("a" * 64, {**base, "kimg": 2})  # a longer schedule is the same run
    assert (again.mode, again.run_dir, again.resume) == ("continue", first.run_dir, snapshot)
    assert again.options.loop.resume == str(snapshot)
    new_data = plan("b" * 64, base)
    assert new_data.mode == "fine-tune" and new_data.resume == snapshot and new_data.run_dir != first.run_dir
    new_options = plan("b" * 64, {**base, "gamma": 3})
    assert new_options.mode == "new" and new_options.run_dir not in (first.run_dir, new_data.run_dir)
    assert sorted(p.name[:5] for p in (tmp_path / "runs").iterdir()) == ["00000", "00001", "00002"]


def test_metric_regression_warns_only_when_worse() -> None:
    better = regression_result({"fid64_full": 90.0}, {"fid64_full": 100.0})
    worse = regression_result({"fid64_full": 120.0, "kid64_full": 0.01}, {"fid64_full": 100.0, "kid64_full": 0.01})
    first = regression_result({"fid64_full": 120.0}, {})
    assert better.passed and first.passed
    assert not worse.passed and worse.severity == dg.AssetCheckSeverity.WARN
    assert "fid64_full" in worse.description and "kid64_full" not in worse.description
    # Precision, recall and IS improve upwards; IS's std is no direction; PPL is lower-better like FID.
    pr = {"pr643_full_precision": 0.5, "pr643_full_recall": 0.5, "is64_mean": 3.0, "is64_std": 0.2, "ppl_32_wend": 50.0}
    up = regression_result({**pr, "pr643_full_precision": 0.7, "is64_mean": 4.0, "is64_std": 0.05}, pr)
    down = regression_result({**pr, "pr643_full_recall": 0.3, "is64_mean": 2.0, "ppl_32_wend": 80.0}, pr)
    assert up.passed and not down.passed
    assert "pr643_full_recall" in down.description and "is64_mean" in down.description and "ppl_32" in down.description
    metadata = {"pr643_full_precision": 0.5, "pr643_full_recall": 0.4, "fid64_full": 10.0, "kimg": 4.0}
    event = dg.AssetMaterialization("metrics", metadata=metadata)
    assert metric_values(event, ["pr643_full"]) == {"pr643_full_precision": 0.5, "pr643_full_recall": 0.4}


def _live_members(group: int) -> list[int]:
    """PIDs in process group `group` that are not zombies (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancellation_stops_the_whole_process_group() -> None:
    from dagster_project.launch import prepare_child_process, stop_process_group

    # The leader exits on SIGINT; its two children ignore SIGINT, as a stuck worker would, and need the SIGKILL.
    script = "trap '' INT; sleep 300 & sleep 300 & trap 'exit 0' INT; wait"
    process = subprocess.Popen(["bash", "-c", script], preexec_fn=prepare_child_process, start_new_session=True)
    deadline = time.monotonic() + 10
    while len(_live_members(process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_live_members(process.pid)) == 3
    stop_process_group(process, timeout_s=1.0)
    deadline = time.monotonic() + 5
    while _live_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_members(process.pid) == [] and process.returncode == 0
