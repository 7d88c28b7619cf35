"""The `samples` asset's style-mixing matrix and video, and the `projections` asset, materialised in a real Dagster
instance on a saved snapshot of a tiny 16 px generator (no training: the chain tests cover that), with the tiny
stand-in VGG16 TorchScript in place of NVIDIA's weights."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import PIL.Image
import pytest
import yaml
from dagster_support import (
    add_projection_targets,
    cpu_resource,
    materialization,
    materialize,
    write_snapshot_run,
    write_test_specs,
)
from inception_standin import save_standin_inception
from vgg_standin import save_standin_vgg16

from dagster_project import plots, post_training, projections
from dagster_project.definitions import build_definitions

PARTITION = "ci-tiny|16"
NUM_STEPS = 4


def _png(markdown: str) -> PIL.Image.Image:
    match = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    assert match, markdown[:200]
    image = PIL.Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    image.load()
    return image


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(specs folder with projection_targets, artifacts with a current snapshot, stand-in vgg16.pt)."""
    root = tmp_path_factory.mktemp("dagster_projections")
    specs = write_test_specs(root / "specs")
    add_projection_targets(specs, NUM_STEPS)
    artifacts = root / "artifacts"
    write_snapshot_run(artifacts)
    yield specs, artifacts, Path(save_standin_vgg16(root / "vgg16-standin.pt", seed=0))


def test_projections_is_an_asset_of_a_spec_with_targets_and_in_its_evaluate_job(setup) -> None:
    specs, artifacts, _ = setup
    defs = build_definitions(specs, cpu_resource(artifacts))
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "shapes/projections" in keys
    job = defs.resolve_job_def("shapes_evaluate")  # after training succeeded, beside metrics and samples
    assert dg.AssetKey(["shapes", "projections"]) in job.asset_layer.selected_asset_keys
    plain = write_test_specs(artifacts.parent / "plain_specs")  # the same spec without the key
    plain_keys = build_definitions(plain, cpu_resource(artifacts)).resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey(["shapes", "projections"]) not in plain_keys


def test_without_vgg16_weights_projections_fails_with_one_sentence(setup, monkeypatch) -> None:
    specs, artifacts, _ = setup
    monkeypatch.delenv("STYLEGAN_VGG16", raising=False)
    defs = build_definitions(specs, cpu_resource(artifacts))
    with dg.instance_for_test() as instance:
        result = materialize(defs, ["shapes/projections"], PARTITION, instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data
    message = failure.user_failure_data.description
    assert message.startswith("projections need NVIDIA's VGG16 weights") and "STYLEGAN_VGG16" in message
    assert "\n" not in message and "Traceback" not in message
    assert not list(artifacts.glob("shapes/ci-tiny-16/*/projections"))  # nothing half-written


def test_projections_show_each_target_beside_its_projection_with_lpips(setup) -> None:
    specs, artifacts, vgg16 = setup
    defs = build_definitions(specs, cpu_resource(artifacts, vgg16=str(vgg16)))
    with dg.instance_for_test() as instance:
        result = materialize(defs, ["shapes/projections"], PARTITION, instance)
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    metadata = materialization(result, "shapes/projections").metadata
    rows = metadata["lpips"].value.records
    assert [row.data["target"] for row in rows] == ["a.png", "b.jpg"]
    for row in rows:
        assert row.data["steps"] == NUM_STEPS and 0 <= row.data["lpips"] < float("inf")
        w = np.load(row.data["projected_w"])["w"]
        assert w.shape == (1, 6, 8) and np.isfinite(w).all()  # 16 px: 6 ws of w_dim 8
    assert metadata["lpips_mean"].value == pytest.approx(np.mean([row.data["lpips"] for row in rows]))
    out = Path(metadata["outdir"].value)
    assert {p.name for p in (out / "a").iterdir()} == {"target.png", "proj.png", "projected_w.npz"}
    shown = _png(metadata["projections"].value).convert("RGB")
    cell = -(-projections.CELL_MIN // 16) * 16
    assert shown.size == (plots.LABEL_WIDTH + 2 * cell, 2 * cell)  # one row per target: target | projection
    with PIL.Image.open(out / "b" / "target.png") as target:  # the target cell is the prepared target, scaled up
        expected = np.asarray(target.convert("RGB").resize((cell, cell), PIL.Image.NEAREST))
    assert np.array_equal(np.asarray(shown)[cell:, plots.LABEL_WIDTH : plots.LABEL_WIDTH + cell], expected)
    assert f"step {NUM_STEPS}/{NUM_STEPS}" in " ".join(logs)


def test_samples_shows_the_style_mixing_matrix_and_links_a_short_video(setup) -> None:
    specs, artifacts, _ = setup
    defs = build_definitions(specs, cpu_resource(artifacts))
    with dg.instance_for_test() as instance:
        result = materialize(defs, ["shapes/samples"], PARTITION, instance)
    metadata = materialization(result, "shapes/samples").metadata
    grid = Path(metadata["style_mixing_path"].value)
    rows, cols = len(post_training.MIXING_ROW_SEEDS), len(post_training.MIXING_COL_SEEDS)
    with PIL.Image.open(grid) as image:
        assert image.size == ((cols + 1) * 16, (rows + 1) * 16)  # NVIDIA's layout: seeds' own images on top/left
        top_left = np.asarray(image.convert("RGB"))[:16, :16]
    assert not top_left.any()  # the empty corner cell
    assert {f"{r}-{c}.png" for r in post_training.MIXING_ROW_SEEDS for c in post_training.MIXING_COL_SEEDS} <= {
        path.name for path in grid.parent.iterdir()}  # fmt: skip
    assert metadata["style_mixing_styles"].value == "0-2"  # 16 px: 6 ws, the coarse half
    shown = _png(metadata["style_mixing"].value)
    assert shown.width >= 3 * post_training.MIXING_CELL_MIN and "ws 0-2 of 6" in metadata["style_mixing"].value
    video = Path(metadata["video_path"].value)
    assert video.is_file() and video.stat().st_size > 0 and video.stem == "interpolation"
    assert metadata["video"].value == video.resolve().as_uri()
    expected = "mp4" if post_training_has_mp4() else video.suffix.lstrip(".")
    assert metadata["video_format"].value == expected == video.suffix.lstrip(".")
    strip = _png(metadata["video_frames"].value)  # a few frames side by side, each of 2 cells, 1 px apart
    factor = strip.height // 16
    frames = post_training.VIDEO_PREVIEW_FRAMES
    assert factor * 16 >= plots.GRID_CELL_MIN
    assert strip.width == (frames * post_training.VIDEO_GRID[0] * 16 + frames - 1) * factor


def post_training_has_mp4() -> bool:
    from stylegan_core.export.video_writer import mp4_encoder

    return mp4_encoder() is not None


@pytest.mark.slow  # ingests the 64-image dataset (with its GX check) for PR's reals
def test_pr_is_and_ppl_are_selectable_metrics_and_charted_per_family(setup, tmp_path: Path, monkeypatch) -> None:
    """A spec listing the new metrics: the `metrics` asset measures them with the stand-in detectors, reports every
    result key (PR's precision and recall) as a float and draws one chart per family; without VGG16 it fails with
    one sentence."""
    specs, _, vgg16 = setup
    monkeypatch.delenv("STYLEGAN_VGG16", raising=False)
    monkeypatch.setenv("STYLEGAN_INCEPTION", save_standin_inception(tmp_path / "inception-standin.pt"))  # IS only
    document = yaml.safe_load((specs / "shapes.yaml").read_text())
    document["metrics"] = ["pr643_full", "ppl_32_wend", "is64"]
    del document["projection_targets"]
    own_specs = tmp_path / "specs"
    own_specs.mkdir()
    (own_specs / "shapes.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    artifacts = tmp_path / "artifacts"
    write_snapshot_run(artifacts)
    with dg.instance_for_test() as instance:
        bare = build_definitions(own_specs, cpu_resource(artifacts))
        materialize(bare, ["shapes/raw_images", "shapes/dataset"], "16", instance)
        failed = materialize(bare, ["shapes/metrics"], PARTITION, instance, raise_on_error=False)
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data
        assert "STYLEGAN_VGG16" in failure.user_failure_data.description
        defs = build_definitions(own_specs, cpu_resource(artifacts, vgg16=str(vgg16)))
        measured = materialize(defs, ["shapes/metrics"], PARTITION, instance)
    metadata = materialization(measured, "shapes/metrics").metadata
    assert {"pr643_full_precision", "pr643_full_recall", "ppl_32_wend", "is64_mean", "is64_std"} <= set(metadata)
    assert 0 <= metadata["pr643_full_precision"].value <= 1 and 0 <= metadata["pr643_full_recall"].value <= 1
    assert metadata["is64_mean"].value >= 1  # exp(KL) of a probability distribution
    assert {"pr_curve", "ppl_curve", "is_curve"} <= set(metadata) and "fid_curve" not in metadata
    assert "PR against training progress (higher is better)" not in metadata["pr_curve"].value  # drawn, not written
    assert _png(metadata["pr_curve"].value).size == plots.CHART_SIZE
