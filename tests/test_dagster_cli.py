"""The real command line: `python -m dagster_project.demo --tiny` runs `dagster asset materialize` and `dagster job
execute` over the whole shapes chain (CI-scale), with the tests' own artifacts folder and DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster_support import SHARED_CACHE

from dagster_project.training import CURRENT_RUN_FILE

REPO = Path(__file__).resolve().parents[1]
ASSETS = ("raw_images", "dataset", "real_features", "network", "metrics", "samples")


def test_demo_materialises_the_shapes_chain_through_the_cli(tmp_path: Path) -> None:
    home, artifacts = tmp_path / "dagster_home", tmp_path / "artifacts"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STYLEGAN_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home), "STYLEGAN_ARTIFACTS": str(artifacts), "STYLEGAN_CACHE_DIR": str(SHARED_CACHE),
        "STYLEGAN_IMAGE_WORKERS": "1", "STYLEGAN_NPROC_PER_NODE": "1", "STYLEGAN_DEVICE": "cpu",
        "STYLEGAN_DEMO_TINY": "1",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "dagster_project.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "sample grid" in result.stdout and "fid64_full" in result.stdout
    assert "SupersessionWarning" not in result.stderr  # the `dg launch` hint, four times otherwise
    assert (home / "dagster.yaml").is_file()

    current = json.loads((artifacts / "shapes" / "ci-tiny-16" / CURRENT_RUN_FILE).read_text())
    run_dir = Path(current["run_dir"])
    assert Path(current["snapshot"]).is_file()
    assert (run_dir / "metric-kid64_full.jsonl").is_file()
    # Training evaluated the metrics at its snapshots (tick 0 and the end); the metrics asset reused the last rows.
    rows = [json.loads(line) for line in (run_dir / "metric-fid64_full.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["snapshot_pkl"] == os.path.relpath(current["snapshot"], run_dir)
    assert "metrics at each snapshot" in result.stdout and "fid64_full" in result.stdout.split("metrics at each")[1]
    assert list(run_dir.glob("samples/*/samples-psi1.00.png"))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for name in ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey(["shapes", name]))
            assert event is not None, f"shapes/{name} was not materialised in {home}"
        metrics = instance.get_latest_materialization_event(dg.AssetKey(["shapes", "metrics"])).asset_materialization
        assert "fid64_full" in metrics.metadata["reused"].value
        assert "data:image/png" in metrics.metadata["fid_curve"].value
        runs = instance.get_runs()
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        # ingest, then the jobs `shapes_after_success` chains: checks run after (not beside) their asset's run
        assert [run.job_name for run in reversed(runs)] == [
            "__ASSET_JOB", "shapes_train", "shapes_evaluate", "shapes_compare"
        ]  # fmt: skip
        for asset, name in (("network", "network_finite"), ("metrics", "metrics_no_regression")):
            key = dg.AssetCheckKey(dg.AssetKey(["shapes", asset]), name)
            latest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
            assert latest and latest[0].status.value == "SUCCEEDED", name
