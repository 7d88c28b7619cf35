"""The `projections` asset: project the spec's `projection_targets` into the latest snapshot's W space (NVIDIA's
projector, `stylegan_core.export.projector`) and show each target beside its projection with the final LPIPS distance.

The projector needs NVIDIA's VGG16 TorchScript (`vgg16.pt`), which cannot be downloaded here. Without it the asset
fails with one sentence saying where to get it (`ProjectionUnavailable`), rather than materialising an empty
result: an empty materialisation would look fresh in the asset graph and would not become stale once the weights
are configured, so the missing projections would go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dagster_project import metadata as md
from dagster_project import plots
from dagster_project.partitions import TrainingPartition
from dagster_project.resources import StyleGANResource
from dagster_project.training import current_snapshot, write_json_atomic
from stylegan_core.io.atomic import sha256_file

if TYPE_CHECKING:
    from stylegan_core.spec import DatasetSpec, ProjectionTargetsSpec

CELL_MIN = 128
"""Target and projection are shown at least this large (a 16 px network's images scaled up 8x)."""
PROGRESS_LINES = 4
"""Log lines per target (every num_steps / PROGRESS_LINES steps): enough to see it move, not one per step."""


class ProjectionUnavailable(RuntimeError):
    """The projector cannot run here (no VGG16 weights); the message is one sentence for the UI."""


def load_vgg(stylegan: StyleGANResource, device: Any) -> Any:
    from stylegan_core.metrics.vgg import DetectorNotFoundError, load_vgg16

    try:
        return load_vgg16(stylegan.vgg16 or None, device)
    except DetectorNotFoundError as error:
        raise ProjectionUnavailable(f"projections need NVIDIA's VGG16 weights: {error}") from None


def project_targets(
    spec: DatasetSpec, partition: TrainingPartition, stylegan: StyleGANResource, log: Callable[[str], None]
) -> tuple[dict[str, Any], str]:
    """Project every target; return (metadata, data version)."""
    from stylegan_core.io.snapshot import load_generator

    targets: ProjectionTargetsSpec = spec.projection_targets  # type: ignore[assignment]
    run_dir, snapshot = current_snapshot(stylegan.run_root(spec.name, partition.config, partition.resolution))
    device = stylegan.torch_device()
    vgg = load_vgg(stylegan, device)
    from stylegan_core.export.projector import project, write_projection
    from stylegan_core.export.projector_target import load_target_image

    G = load_generator(snapshot, "G_ema", device)
    class_idx = 0 if G.c_dim else None  # a target has no label; class 0 gives the start w and the w-noise scale
    options = {
        key: value for key, value in (("num_steps", targets.num_steps), ("seed", targets.seed)) if value is not None
    }
    out_root = run_dir / "projections" / snapshot.stem
    rows, pictures = [], []
    for image_path in targets.images:
        target = load_target_image(image_path, G.img_resolution, G.img_channels)  # NVIDIA's crop + LANCZOS
        log(f"projecting {image_path.name} into {snapshot.name}")
        projection = project(G, target, vgg=vgg, class_idx=class_idx, device=device,
                             progress=_progress(image_path.name, log), **options)  # fmt: skip
        written = write_projection(out_root / image_path.stem, G, target, projection, save_video=False)
        pictures.append((written["target"], written["proj"]))
        rows.append({
            "target": image_path.name, "lpips": projection.final_distance, "start_lpips": projection.start_distance,
            "steps": len(projection.w_steps), "projected_w": str(written["projected_w"]),
        })  # fmt: skip
    write_json_atomic(out_root / "projections.json", {"snapshot": str(snapshot), "targets": rows})
    return _metadata(rows, pictures, snapshot, out_root), _version(snapshot, rows)


def _progress(name: str, log: Callable[[str], None]) -> Callable[[int, int, float, float], None]:
    def report(step: int, num_steps: int, distance: float, loss: float) -> None:
        if step == num_steps or step % max(1, num_steps // PROGRESS_LINES) == 0:
            log(f"{name}: step {step}/{num_steps}, LPIPS {distance:.4f}, loss {loss:.4f}")

    return report


def side_by_side(pictures: list[tuple[Path, Path]]) -> Any:
    """One row per target: the target, then its projection (equal-sized PNGs)."""
    from PIL import Image

    def rgb(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    return Image.fromarray(np.concatenate([np.concatenate([rgb(t), rgb(p)], axis=1) for t, p in pictures], axis=0))


def _metadata(rows: list[dict], pictures: list[tuple[Path, Path]], snapshot: Path, out_root: Path) -> dict[str, Any]:
    labels = [f"{Path(row['target']).stem} {row['lpips']:.3f}" for row in rows]
    caption = ("left: target (centre square, resized), right: its projection; each row is labelled with the target "
               "and the final LPIPS distance (lower is closer)")  # fmt: skip
    png = plots.labelled_grid(side_by_side(pictures), len(rows), labels, cell_min=CELL_MIN)
    return {
        "projections": md.png_markdown(png, f"targets and projections, {snapshot.stem}", caption),
        "lpips_mean": float(np.mean([row["lpips"] for row in rows])),
        "lpips": md.table(
            rows,
            {"target": "string", "lpips": "float", "start_lpips": "float", "steps": "int", "projected_w": "string"},
        ),  # fmt: skip
        "snapshot": md.path(snapshot),
        "outdir": md.path(out_root),
    }


def _version(snapshot: Path, rows: list[dict]) -> str:
    return md.sha256_text("projections", sha256_file(snapshot), *(sha256_file(row["projected_w"]) for row in rows))
