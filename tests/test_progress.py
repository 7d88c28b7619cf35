"""Issue 16: nothing long is silent (tick % and ETA, metric announcements and progress lines, the CPU warning), and
each line reaches an orchestrator once."""

from __future__ import annotations

import pytest
from metrics_support import CountingDetector, random_images, tiny_generator, write_zip
from training_support import tiny_options, write_tiny_dataset

from stylegan_core.metrics import compute_metrics, progress
from stylegan_core.metrics.progress import LineProgress, format_duration, slow_metric_note
from stylegan_core.training import TrainCallbacks, checkpoint, train
from stylegan_core.training.report import SnapshotGrid, tick_line

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


def _fields(**changes):
    fields = dict(tick=3, kimg=0.5, time=60, sec_per_tick=20, sec_per_kimg=120, maintenance=0, cpu_mem_gb=1,
                  gpu_mem_gb=0, augment_p=0, percent=25.0, eta=185)  # fmt: skip
    return {**fields, **changes}


def test_tick_line_ends_with_percent_and_eta():
    assert tick_line(_fields(), kimg_digits=3).endswith("augment 0.000 25.0% ETA 3m 05s")
    assert tick_line(_fields(percent=100.0, eta=0), kimg_digits=3).endswith("augment 0.000 100.0%")


def test_training_prints_progress_once_through_the_log_callback(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    lines = []
    options = tiny_options(dataset, aug="noaug", kimg=0.016, tick=0.008, snap=None)
    train(options, tmp_path, TrainCallbacks(on_log=lines.append))
    ticks = [line for line in lines if line.startswith("tick ")]
    # Ticks end at 4, 12 and 16 of 16 images; the ETA follows the percentage until the last tick.
    assert [tick.split("augment 0.000 ")[1].split(" ETA ")[0] for tick in ticks] == ["25.0%", "75.0%", "100.0%"]
    assert all(" ETA " in tick for tick in ticks[:2])
    assert ticks[-1].endswith("100.0%") and "kimg 0.016" in ticks[-1]  # 3 decimals for a run under 1 kimg
    assert "tick " not in capsys.readouterr().out  # the caller forwards the lines: printing them too doubles them
    assert (tmp_path / "log.txt").read_text().splitlines() == lines


def test_cpu_training_with_a_50k_metric_says_how_long_and_what_to_choose(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    monkeypatch.setattr(checkpoint, "evaluate_metrics", lambda run, path: {})  # not 50k images in a test
    monkeypatch.setattr(progress.MEASURED, "images_per_second", None)  # the CPU default, not an earlier test's rate
    train(tiny_options(dataset, aug="noaug", kimg=0.004, metrics="fid50k_full"), tmp_path)
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("Note: --metrics fid50k_full"))
    assert "50000 generated images" in note and "2h 46m" in note and "--metrics fid1k_full" in note
    assert out.index("Note:") < out.index("tick 0")  # up front, before training starts
    assert slow_metric_note(["fid1k_full"], {"fid1k_full": 1000}, "cpu") is None  # 3m 20s: no warning
    assert slow_metric_note(["fid50k_full"], {"fid50k_full": 50_000}, "cuda") is None


def test_metric_evaluation_announces_itself_and_reports_progress(tmp_path):
    G = tiny_generator(c_dim=3)
    path = write_zip(tmp_path / "data.zip", random_images(12, resolution=16), labels=[i % 3 for i in range(12)])
    lines = []
    compute_metrics(G, path, ["fid20_full"], cache_dir=tmp_path / "cache", batch_size=8, detector=CountingDetector(),
                    progress=LineProgress(lines.append, interval_s=0))  # fmt: skip
    assert lines[0].startswith("Evaluating fid20_full: 20 generated images (12 real images to embed first), about ")
    assert lines[0].endswith(" on cpu...")
    assert [line.split(" images")[0] for line in lines[1:]] == [
        "reals 8/12", "reals 12/12", "fakes 8/20", "fakes 16/20", "fakes 20/20",
    ]  # fmt: skip
    assert "left" in lines[1] and lines[2].endswith("done")


def test_progress_lines_are_rate_limited():
    now = [0.0]
    lines = []
    progress = LineProgress(lines.append, interval_s=30, clock=lambda: now[0])
    progress.start("fakes", 100)
    for _ in range(10):
        now[0] += 10
        progress.update(10)
    assert [line.split(",")[0] for line in lines] == [
        "fakes 30/100 images (30%)", "fakes 60/100 images (60%)", "fakes 90/100 images (90%)",
        "fakes 100/100 images (100%)",
    ]  # fmt: skip
    assert lines[0].endswith("30s so far, about 1m 10s left")
    assert format_duration(10_000) == "2h 46m" and format_duration(90_000) == "1d 01h"


def test_standalone_evaluation_announces_itself_on_stderr(tmp_path, capsys):
    # `stylegan metrics` runs with progress=True: the announcement goes to stderr (stdout holds the JSON results).
    G = tiny_generator()
    path = write_zip(tmp_path / "data.zip", random_images(6, resolution=16))
    compute_metrics(G, path, ["fid8_full"], cache_dir=tmp_path / "cache", detector=CountingDetector())
    captured = capsys.readouterr()
    assert "Evaluating fid8_full: 8 generated images (6 real images to embed first), about" in captured.err
    assert "Evaluating" not in captured.out
