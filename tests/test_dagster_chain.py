"""The tiny shapes chain materialised in process: assets, blocking checks, the training gate and resume after SIGKILL.

Training runs for real (torchrun through Dagster Pipes, one CPU process); the dataset is the CI-scale shapes set
(64 images at 16 px) and FID/KID use 64 images, so the module takes a few minutes on 2 cores.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_support import (
    check_results,
    cpu_resource,
    materialization,
    materialize,
    processes_matching,
    write_test_specs,
)

from dagster_project.definitions import build_definitions
from dagster_project.training import CURRENT_RUN_FILE, current_snapshot
from stylegan_core.io.snapshot import find_latest_snapshot, load_snapshot

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills processes found through /proc")
DATA_KEYS = ["shapes/raw_images", "shapes/dataset"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dg.Definitions, Path, dg.DagsterInstance]]:
    """Definitions over the test specs, their artifacts folder and one instance, with the dataset ingested."""
    root = tmp_path_factory.mktemp("dagster_chain")
    artifacts = root / "artifacts"
    defs = build_definitions(write_test_specs(root / "specs"), cpu_resource(artifacts))
    with dg.instance_for_test() as instance:
        result = materialize(defs, DATA_KEYS, "16", instance)
        assert check_results(result) == {"dataset_valid": True}
        yield defs, artifacts, instance


def test_tiny_chain_materialises_with_passing_checks(chain) -> None:
    defs, artifacts, instance = chain
    features = materialize(defs, ["shapes/real_features"], "16", instance)
    assert materialization(features, "shapes/real_features").metadata["images"].value == 64
    result = materialize(defs, ["shapes/network", "shapes/metrics", "shapes/samples"], "ci-tiny|16", instance)
    assert check_results(result) == {
        "network_finite": True, "network_output_shape": True, "network_augment_p": True,
        "metrics_no_regression": True,
    }  # fmt: skip
    network = materialization(result, "shapes/network").metadata
    snapshot = Path(network["snapshot"].value)
    assert network["kimg"].value >= 0.016 and snapshot.is_file() and network["mode"].value == "new"
    assert network["machine"].value["torch"].startswith("ok: torch ")  # the doctor summary of the training machine
    assert 0 <= network["augment_p"].value <= 1 and network["sec_per_kimg"].value > 0
    assert math.isfinite(network["Loss/G/loss"].value) and math.isfinite(network["Loss/D/loss"].value)
    metrics = materialization(result, "shapes/metrics")
    assert {"fid64_full", "kid64_full"} <= set(metrics.metadata)
    assert metrics.metadata["fid64_full"].value > 0 and math.isfinite(metrics.metadata["kid64_full"].value)
    assert (snapshot.parents[1] / "metric-fid64_full.jsonl").is_file()
    # Issue 16: the run log shows each tick once, with % and ETA, and announces the metrics with an estimate.
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    ticks = [message for message in messages if message.startswith("tick ")]
    assert ticks and len(ticks) == len(set(ticks)) and "%" in ticks[0]
    assert any(message.startswith("Evaluating fid64_full: 64 generated images") for message in messages)
    # Re-materialising metrics of the unchanged snapshot reads the recorded values back.
    again = materialization(materialize(defs, ["shapes/metrics"], "ci-tiny|16", instance), "shapes/metrics")
    assert again.metadata["reused"].value == "fid64_full, kid64_full"
    assert again.metadata["fid64_full"].value == metrics.metadata["fid64_full"].value
    assert len((snapshot.parents[1] / "metric-fid64_full.jsonl").read_text().splitlines()) == 1
    samples = materialization(result, "shapes/samples").metadata
    assert "data:image/png;base64," in samples["grid_psi1.00"].value
    assert Path(samples["grid_psi1.00_path"].value).is_file()
    assert "data:image/png;base64," in samples["style_mixing"].value  # issue 17: mixing matrix and video
    assert "class circle" in samples["style_mixing"].value  # a conditional network mixes within one class
    assert Path(samples["style_mixing_path"].value).is_file() and Path(samples["video_path"].value).is_file()
    dataset = materialization(materialize(defs, ["shapes/dataset"], "16", instance), "shapes/dataset")
    assert dataset.tags["dagster/data_version"] == dataset.metadata["content_hash"].value
    assert dataset.metadata["images"].value == 64 and dataset.metadata["label_dim"].value == 5


def test_a_bad_dataset_fails_its_check_and_training_does_not_start(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stylegan_core.data.ingest as ingest
    from stylegan_core.data.manifest import read_manifest, read_manifest_report, write_manifest

    real_prepare = ingest.prepare_from_spec

    def prepare_then_corrupt(*args, **kwargs):
        # The zip is fine; its manifest claims a duplicate path and a 15 px image (what a broken tool might write).
        result = real_prepare(*args, **kwargs)
        frame = read_manifest(result.manifest_path)
        frame.loc[1, "path"] = frame.loc[0, "path"]
        frame.loc[2, "width"] = 15
        write_manifest(frame, result.manifest_path, read_manifest_report(result.manifest_path))
        return result

    monkeypatch.setattr(ingest, "prepare_from_spec", prepare_then_corrupt)
    defs, artifacts, _ = chain
    defs = build_definitions(artifacts.parent / "specs", cpu_resource(tmp_path / "artifacts"))
    with dg.instance_for_test() as instance:
        result = materialize(defs, [*DATA_KEYS, "shapes/real_features"], "16", instance, raise_on_error=False)
        assert not result.success
        evaluation = result.get_asset_check_evaluations()[0]
        assert evaluation.check_name == "dataset_valid" and not evaluation.passed
        failed = evaluation.metadata["failed_expectations"].value
        assert "paths_unique" in failed and "width_is_resolution" in failed
        materialized = {event.asset_key for event in result.get_asset_materialization_events()}
        assert dg.AssetKey(["shapes", "real_features"]) not in materialized  # blocked downstream in the run

        training = materialize(defs, ["shapes/network"], "ci-tiny|16", instance, raise_on_error=False)
        assert not training.success
        failure = next(e for e in training.all_events if e.event_type_value == "STEP_FAILURE")
        assert "failed validation" in failure.event_specific_data.error.to_string()
    assert not (tmp_path / "artifacts" / "shapes" / "ci-tiny-16").exists()  # no run directory, no subprocess


def _kill_worker_after_first_snapshot(run_root: Path, timeout_s: float = 600) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshots = sorted(run_root.glob("*/snapshots/network-snapshot-*.pt"))
        workers = processes_matching("stylegan_core.training.worker", str(run_root))
        if snapshots and workers:
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            return snapshots[0]
        time.sleep(0.2)
    raise TimeoutError(f"no snapshot appeared under {run_root}")


def test_sigkill_mid_run_then_rematerialise_resumes_from_the_last_snapshot(chain) -> None:
    defs, artifacts, instance = chain
    run_root = artifacts / "shapes" / "long-16"
    outcome: dict[str, dg.ExecuteInProcessResult] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(first=materialize(defs, ["shapes/network"], "long|16", instance, False))
    )
    thread.start()
    killed_after = _kill_worker_after_first_snapshot(run_root)
    thread.join(timeout=300)
    assert not thread.is_alive() and not outcome["first"].success
    assert not processes_matching("stylegan_core.training.worker", str(run_root))  # torchrun took the rest down
    run_dir = killed_after.parents[1]
    resume_from = find_latest_snapshot(run_dir)
    resumed_nimg = load_snapshot(resume_from).progress.cur_nimg
    assert 0 < resumed_nimg < 32

    second = materialize(defs, ["shapes/network"], "long|16", instance)
    metadata = materialization(second, "shapes/network").metadata
    assert metadata["mode"].value == "continue"
    assert Path(metadata["resumed_from"].value) == resume_from
    assert metadata["kimg"].value == pytest.approx(0.032)
    assert Path(metadata["run_dir"].value) == run_dir  # the same run, continued
    progress = [load_snapshot(path).progress.cur_nimg for path in sorted(run_dir.glob("snapshots/*.pt"))]
    assert progress == sorted(set(progress)) and progress[-1] == 32 and resumed_nimg in progress
    assert f"from kimg {resumed_nimg / 1000:g}" in (run_dir / "log.txt").read_text()
    current = (run_root / CURRENT_RUN_FILE).read_text()
    assert str(run_dir) in current


def test_checks_run_after_training_and_a_failed_one_blocks_metrics_and_samples(chain) -> None:
    """The jobs of `make demo` and the follow-up sensor: train, then check + evaluate (issue 16)."""
    import torch

    defs, artifacts, instance = chain
    materialize(defs, ["shapes/real_features"], "16", instance)  # cached after the first test
    train = defs.resolve_job_def("shapes_train").execute_in_process(instance=instance, partition_key="ci-tiny|16")
    assert train.success and train.get_asset_check_evaluations() == []  # no check planned beside its asset
    evaluate = defs.resolve_job_def("shapes_evaluate")
    passed = evaluate.execute_in_process(instance=instance, partition_key="ci-tiny|16")
    assert check_results(passed) == dict.fromkeys(["network_finite", "network_output_shape", "network_augment_p"], True)
    outputs = {event.asset_key.path[-1] for event in passed.get_asset_materialization_events()}
    assert outputs == {"metrics", "samples"}

    _, snapshot = current_snapshot(artifacts / "shapes" / "ci-tiny-16")
    state = torch.load(snapshot, weights_only=True)
    next(iter(state["G_ema"].values())).fill_(float("nan"))
    torch.save(state, snapshot)
    blocked = evaluate.execute_in_process(instance=instance, partition_key="ci-tiny|16", raise_on_error=False)
    assert not blocked.success and check_results(blocked)["network_finite"] is False
    assert blocked.get_asset_materialization_events() == []  # the blocking check stopped metrics and samples
