"""What the asset pages show: charts and labelled grids (Pillow only), the metric history read from a run directory,
the loss curves of stats.jsonl, and the per-class dataset preview."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from dagster_project import metadata as md
from dagster_project import plots, views
from tests.metrics_support import write_zip


def _image(png: bytes) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def _has_colour(image: PIL.Image.Image, hex_colour: str, box: tuple[int, int, int, int] | None = None) -> bool:
    wanted = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    pixels = np.asarray(image.crop(box) if box else image).reshape(-1, 3)
    return bool((pixels == wanted).all(axis=1).any())


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert plots.nice_ticks(0, 8) == [0, 2, 4, 6, 8]
    ticks = plots.nice_ticks(13.7, 311.2)
    assert ticks[0] <= 13.7 and ticks[-1] >= 311.2 and len(ticks) <= 8
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (50, 100)
    assert plots.nice_ticks(5, 5)[0] <= 5 <= plots.nice_ticks(5, 5)[-1]  # a single value still gets an axis


def test_line_chart_draws_each_series_in_its_colour() -> None:
    png = plots.line_chart({"fid": [(0, 300), (2, 200), (4, 120)], "other": [(0, 1), (4, 2)]}, "FID", "kimg")
    image = _image(png)
    assert image.size == plots.CHART_SIZE
    plot_area = (plots.MARGIN_LEFT + 1, plots.MARGIN_TOP + 1, image.width - plots.MARGIN_RIGHT, image.height - 41)
    assert _has_colour(image, plots.COLOURS[0], plot_area) and _has_colour(image, plots.COLOURS[1], plot_area)
    empty = _image(plots.line_chart({"fid": []}, "FID", "kimg"))
    assert not _has_colour(empty, plots.COLOURS[0])


def test_labelled_grid_scales_cells_up_and_labels_each_row() -> None:
    grid = PIL.Image.new("RGB", (16 * 4, 16 * 3), "red")
    labelled = _image(plots.labelled_grid(grid, rows=3, row_labels=["circle", "ring", "square"]))
    factor = -(-plots.GRID_CELL_MIN // 16)
    assert labelled.size == (plots.LABEL_WIDTH + 64 * factor, 48 * factor)
    for row in range(3):  # dark label text in the left column of every row
        band = np.asarray(labelled.crop((0, row * 16 * factor, plots.LABEL_WIDTH, (row + 1) * 16 * factor)))
        assert band.min() < 100
    plain = _image(plots.labelled_grid(grid, rows=3))
    assert plain.size == (64 * factor, 48 * factor)


def test_png_markdown_embeds_a_bounded_image() -> None:
    png = plots.line_chart({"a": [(0, 1), (1, 2)]}, "t", "x")
    text = md.png_markdown(png, "chart", "caption").value
    assert text.startswith("**chart**") and "data:image/png;base64," in text and text.endswith("caption")
    noise = np.random.RandomState(0).randint(0, 256, size=(900, 900, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > md.THUMBNAIL_MAX_BYTES
    assert len(md.png_markdown(buffer.getvalue(), "noise").value) < 2 * md.THUMBNAIL_MAX_BYTES


@pytest.mark.parametrize(
    ("name", "kimg"),
    [("network-snapshot-000004.pt", 4.0), ("snapshots/network-snapshot-000000.200.pt", 0.2),
     ("network-snapshot-000012.pkl", 12.0), ("fakes000004.png", None), (None, None)],
)  # fmt: skip
def test_snapshot_kimg(name, kimg) -> None:
    assert views.snapshot_kimg(name) == kimg


def _metric_row(snapshot: str, values: dict[str, float]) -> str:
    return json.dumps({"results": values, "metric": "x", "snapshot_pkl": snapshot, "total_time": 1.0})


def test_metric_history_is_one_point_per_snapshot_in_kimg_order(tmp_path: Path) -> None:
    lines = [
        _metric_row("snapshots/network-snapshot-000004.pt", {"fid100_full": 150.0}),
        _metric_row("snapshots/network-snapshot-000000.pt", {"fid100_full": 300.0}),
        _metric_row("snapshots/network-snapshot-000002.500.pt", {"fid100_full": 210.0}),
        _metric_row("snapshots/network-snapshot-000004.pt", {"fid100_full": 140.0}),  # measured again: last wins
        '{"results": {"fid100_full": 1',  # a line cut short by a crash
    ]
    (tmp_path / "metric-fid100_full.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "metric-kid100_full.jsonl").write_text(
        _metric_row("snapshots/network-snapshot-000004.pt", {"kid100_full": 0.05}) + "\n"
    )
    history = views.metric_history(tmp_path, ["fid100_full", "kid100_full", "fid50k_full"])
    assert history == {"fid100_full": [(0.0, 300.0), (2.5, 210.0), (4.0, 140.0)], "kid100_full": [(4.0, 0.05)]}
    assert views.metric_rows(tmp_path, "fid100_full")["snapshots/network-snapshot-000004.pt"] == {"fid100_full": 140.0}
    assert set(views.metric_charts(history)) == {"fid", "kid"}


def test_new_metric_families_are_charted_like_fid(tmp_path: Path) -> None:
    """PR, IS and PPL rows (NVIDIA's jsonl format, result keys as NVIDIA names them) get one chart per family;
    the two results of a PR metric share a chart, each in its own colour."""
    snapshots = [f"snapshots/network-snapshot-{kimg:06d}.pt" for kimg in (0, 4, 8)]
    results = {
        "pr50k3_full": [{"pr50k3_full_precision": p, "pr50k3_full_recall": r}
                        for p, r in ((0.1, 0.0), (0.4, 0.2), (0.6, 0.3))],
        "is50k": [{"is50k_mean": m, "is50k_std": 0.1} for m in (1.5, 2.5, 3.0)],
        "ppl2_wend": [{"ppl2_wend": v} for v in (80.0, 60.0, 55.0)],
        "fid50k_full": [{"fid50k_full": v} for v in (300.0, 200.0, 150.0)],
    }  # fmt: skip
    for name, rows in results.items():
        lines = [_metric_row(snapshot, values) for snapshot, values in zip(snapshots, rows, strict=True)]
        (tmp_path / f"metric-{name}.jsonl").write_text("\n".join(lines) + "\n")
    history = views.metric_history(tmp_path, list(results))
    assert history["pr50k3_full_recall"] == [(0.0, 0.0), (4.0, 0.2), (8.0, 0.3)]
    assert set(history) == {"pr50k3_full_precision", "pr50k3_full_recall", "is50k_mean", "is50k_std", "ppl2_wend",
                            "fid50k_full"}  # fmt: skip
    charts = views.metric_charts(history)
    assert set(charts) == {"fid", "pr", "is", "ppl"}
    pr = _image(charts["pr"])
    plot_area = (plots.MARGIN_LEFT + 1, plots.MARGIN_TOP + 1, pr.width - plots.MARGIN_RIGHT, pr.height - 41)
    assert _has_colour(pr, plots.COLOURS[0], plot_area) and _has_colour(pr, plots.COLOURS[1], plot_area)
    assert not _has_colour(_image(charts["ppl"]), plots.COLOURS[1], plot_area)  # one series only
    assert [views.metric_family(k) for k in ("kid2k_full", "ppl_zfull", "is1k_mean")] == ["kid", "ppl", "is"]
    # The demo's summary says per result which way is better (it once said "lower is better" for all of them).
    from dagster_project.demo import metric_series

    lines = {line.split()[0]: line for line in metric_series(tmp_path, list(results))}
    assert lines["pr50k3_full_recall"].endswith("(higher is better)")
    assert lines["fid50k_full"].endswith("(lower is better)") and "(last/first 0.50)" in lines["fid50k_full"]
    assert "is better" not in lines["is50k_std"]


def test_loss_history_reads_the_tick_lines(tmp_path: Path) -> None:
    def line(kimg: float, g: float, d: float) -> str:
        return json.dumps({"Progress/kimg": {"num": 1, "mean": kimg}, "Loss/G/loss": {"num": 4, "mean": g},
                           "Loss/D/loss": {"num": 4, "mean": d}})  # fmt: skip

    stats = tmp_path / "stats.jsonl"
    stats.write_text("\n".join([line(0.0, 0.7, 1.4), line(1.0, 1.1, 1.2), line(2.0, 1.3, 1.0)]) + "\n")
    history = views.loss_history(stats)
    assert history == {"G/loss": [(0.0, 0.7), (1.0, 1.1), (2.0, 1.3)], "D/loss": [(0.0, 1.4), (1.0, 1.2), (2.0, 1.0)]}
    assert views.loss_chart(stats) is not None
    assert views.loss_chart(tmp_path / "missing.jsonl") is None


def test_dataset_preview_has_one_labelled_row_per_class(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    labels = [0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    images = np.stack([np.full((8, 8, 3), colours[label], dtype=np.uint8) for label in labels])
    zip_path = write_zip(tmp_path / "d.zip", images, labels)
    png, caption = views.dataset_preview(zip_path, ("red", "green", "blue"))
    image = np.asarray(_image(png))
    factor = -(-plots.GRID_CELL_MIN // 8)
    assert image.shape[:2] == (3 * 8 * factor, plots.LABEL_WIDTH + views.PREVIEW_PER_CLASS * 8 * factor)
    for row, colour in enumerate(colours):  # every row starts with an image of its class
        assert tuple(image[row * 8 * factor + 2, plots.LABEL_WIDTH + 2]) == colour
    # class 1 has 3 images: the rest of its row is blank
    assert tuple(image[8 * factor + 2, plots.LABEL_WIDTH + 3 * 8 * factor + 2]) == (0, 0, 0)
    assert "3 classes" in caption
    unlabelled = write_zip(tmp_path / "u.zip", images[:5])
    png, caption = views.dataset_preview(unlabelled, None)
    assert _image(png).size == (views.PREVIEW_UNLABELLED[0] * 8 * factor, 8 * factor) and "5 images" in caption
