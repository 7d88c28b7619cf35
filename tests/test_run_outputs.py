"""Issue 16: run outputs never collide or change after being written, and honour the umask."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from metrics_support import tiny_generator
from training_support import replace_loop, tiny_options, write_tiny_dataset

from stylegan_core.export.generate import write_seed_images
from stylegan_core.export.grid import save_image_grid
from stylegan_core.io.snapshot import snapshot_label
from stylegan_core.metrics.cache import RealStatistics, save_statistics
from stylegan_core.training.report import SnapshotGrid
from stylegan_core.training.worker import run_training

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


def test_labels_are_unique_per_image_count():
    # The example: kimg 0.008 and 0.200 were both "000000" (NVIDIA's integer kimg, ticks of 4 kimg).
    assert snapshot_label(8) != snapshot_label(200)
    assert [snapshot_label(n) for n in (8, 200, 1000, 1008, 25_000_000)] == [
        "000000.008", "000000.200", "000001", "000001.008", "025000",
    ]  # fmt: skip
    labels = {snapshot_label(n) for n in range(0, 5000, 4)}
    assert len(labels) == len(range(0, 5000, 4))


def test_sub_kimg_run_and_its_resume_never_overwrite(dataset, tmp_path, monkeypatch):
    grids = []

    def write_fakes(self, G_ema, path, batch):  # the 1024-image grid takes seconds; record and touch instead
        grids.append(path.name)
        path.write_bytes(b"")

    monkeypatch.setattr(SnapshotGrid, "write_fakes", write_fakes)
    # Default 4-kimg ticks, a run under 1 kimg: tick 0 (4 images) and the end (8 images) both write a snapshot.
    options = tiny_options(dataset, aug="noaug", kimg=0.008, tick=4, snap=1)
    run_training(options, tmp_path)
    first = {path.name: path.read_bytes() for path in (tmp_path / "snapshots").iterdir()}
    assert sorted(first) == ["network-snapshot-000000.004.pt", "network-snapshot-000000.008.pt"]
    run_training(replace_loop(options, total_kimg=0.016), tmp_path)  # continues in the same run directory
    after = {path.name: path.read_bytes() for path in (tmp_path / "snapshots").iterdir()}
    assert sorted(after) == [*sorted(first), "network-snapshot-000000.016.pt"]
    assert all(after[name] == data for name, data in first.items())  # written once, never rewritten
    assert grids == ["fakes_init.png", "fakes000000.004.png", "fakes000000.008.png", "fakes000000.016.png"]


@pytest.fixture
def umask_027():
    """A group-readable umask that differs from both 0600 (mkstemp) and the usual 022, so the mode proves the rule."""
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_grids_generated_images_and_cached_statistics_honour_the_umask(tmp_path, umask_027):
    expected = umask_027
    save_image_grid(np.zeros([4, 3, 8, 8], np.float32), tmp_path / "grid.png", drange=(-1, 1), grid_size=(2, 2))
    (seed_image,) = write_seed_images(tiny_generator(), [3], tmp_path / "out")
    stats = RealStatistics(np.zeros(2), np.eye(2), None, 1, "content", "detector")
    save_statistics(tmp_path / "cache" / "real-x.npz", stats)
    for path in (tmp_path / "grid.png", seed_image, tmp_path / "cache" / "real-x.npz"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_and_pipeline_share_one_feature_cache(tmp_path, monkeypatch):
    from dagster_project.resources import StyleGANResource
    from stylegan_core.metrics.cache import default_cache_dir

    monkeypatch.delenv("STYLEGAN_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    resource = StyleGANResource(artifacts_dir=str(tmp_path / "artifacts"))
    home_cache = tmp_path / "home/.cache/stylegan_core/gan-metrics"
    assert resource.features_cache_dir() == default_cache_dir().resolve() == home_cache
    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path / "shared"))
    assert StyleGANResource.from_env().features_cache_dir() == default_cache_dir() == tmp_path / "shared/gan-metrics"
    assert resource.features_cache_dir() == default_cache_dir()  # the field left empty follows the variable too
