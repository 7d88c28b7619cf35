"""Issue 16: TensorBoard events with NVIDIA's scalar names in every run directory, read back by TensorBoard's own
event reader; MLflow logging of options, metrics and artifacts against a real local MLflow store."""

from __future__ import annotations

import sys

import pytest
from training_support import tiny_options, write_tiny_dataset

from stylegan_core.training import checkpoint, train
from stylegan_core.training.report import SnapshotGrid

pytestmark = pytest.mark.usefixtures("one_thread")
FAKE_FID = {"fid20_full": {"fid20_full": 7.5}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


@pytest.fixture
def quick(monkeypatch):
    """Tiny grids instead of 1024-image ones, and a fixed metric result (metrics themselves are tested elsewhere)."""

    def write_fakes(self, G_ema, path, batch):
        path.write_bytes(b"png")

    monkeypatch.setattr(SnapshotGrid, "write_fakes", write_fakes)
    monkeypatch.setattr(checkpoint, "evaluate_metrics", lambda run, path: FAKE_FID)
    monkeypatch.delenv("STYLEGAN_MLFLOW_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _options(dataset):
    return tiny_options(dataset, aug="noaug", kimg=0.016, tick=0.008, snap=2)


def test_run_directory_has_tensorboard_events_with_nvidias_names(dataset, tmp_path, quick):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_options(dataset), tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"Loss/G/loss", "Loss/D/loss", "Loss/scores/fake", "Progress/kimg", "Progress/augment",
            "Timing/sec_per_kimg", "Resources/cpu_mem_gb", "Metrics/fid20_full"} <= tags  # fmt: skip
    # Ticks end at 4, 12 and 16 images; sub-kimg ticks step by images (NVIDIA's whole kimg would all be step 0).
    assert [event.step for event in events.Scalars("Progress/kimg")] == [4, 12, 16]
    assert [event.value for event in events.Scalars("Progress/kimg")] == pytest.approx([0.004, 0.012, 0.016])
    assert [(e.step, e.value) for e in events.Scalars("Metrics/fid20_full")] == [(4, 7.5), (16, 7.5)]  # snap=2


def test_mlflow_logs_options_metrics_and_artifacts_to_a_local_store(dataset, tmp_path, quick, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) stays in the test folder
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("STYLEGAN_MLFLOW_URI", uri)
    monkeypatch.setenv("STYLEGAN_MLFLOW_EXPERIMENT", "issue16")
    run_dir = tmp_path / "00000-tiny"
    train(_options(dataset), run_dir)
    assert f"Logging to MLflow at {uri}" in capsys.readouterr().out

    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("issue16").experiment_id])
    assert run.info.run_name == "00000-tiny" and run.info.status == "FINISHED"
    assert run.data.params["loop.batch"] == "4" and run.data.params["network.channel_max"] == "32"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "Progress/kimg")] == [4, 12, 16]
    assert run.data.metrics["Metrics/fid20_full"] == 7.5
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"training_options.json", "log.txt", "fakes000000.004.png", "fakes000000.016.png"} <= artifacts


def test_mlflow_uri_without_the_package_says_so_and_trains(dataset, tmp_path, quick, monkeypatch, capsys):
    monkeypatch.setenv("STYLEGAN_MLFLOW_URI", "sqlite:///nowhere.db")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    result = train(tiny_options(dataset, aug="noaug", kimg=0.004), tmp_path)
    assert result.cur_nimg == 4
    assert "the mlflow package is not installed; not logging to MLflow" in capsys.readouterr().out
