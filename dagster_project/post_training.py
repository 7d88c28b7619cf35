"""What the `samples` asset shows besides the sample grids: NVIDIA's style-mixing matrix and a short latent
interpolation video, both rendered by `stylegan_core.export` from the snapshot's G_ema.

Both are sized for the asset page, not for a paper: a 2 x 2 mixing matrix and a few seconds of video at a readable
size, so they add about a second of CPU time to the demo's `samples` step (benchmark in docs/dagster.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dagster_project import metadata as md
from dagster_project import plots

MIXING_ROW_SEEDS = (85, 100)
MIXING_COL_SEEDS = (55, 821)
"""The first rows and columns of NVIDIA's style_mixing.py example (rows 85,100,75,458,1500; cols 55,821,1789,293)."""
MIXING_MAX_STYLES = 7
"""NVIDIA's default --styles 0-6: at 1024 px (18 ws) the coarse and middle layers, 4-32 px."""
MIXING_CELL_MIN = 128
"""A 3 x 3 matrix has few cells: show each larger than a sample-grid cell."""
VIDEO_SEEDS = tuple(range(6))
VIDEO_GRID = (2, 1)
"""(columns, rows): two interpolations side by side, three keyframes each."""
VIDEO_FRAMES_PER_SEED = 12
VIDEO_FPS = 12
"""36 frames: a 3-second loop."""
VIDEO_MIN_CELL = 128
"""Frames are scaled up (nearest neighbour, whole factors) until a cell is this many pixels: 16 px would be a dot."""
VIDEO_BATCH = 12
"""Frames per synthesis call: on a CPU one call per frame costs ten times more (per-call overhead)."""
VIDEO_PREVIEW_FRAMES = 6
VIDEO_NAME = "interpolation.mp4"
"""MP4 with the optional imageio-ffmpeg; otherwise the writer falls back to animated WebP (or GIF) of this stem."""


def mixing_styles(num_ws: int) -> tuple[int, ...]:
    """NVIDIA's 0-6 where the network has the ws for it (>= 256 px); smaller networks take their coarse half, so
    the columns still give pose and shape and the rows colour and detail (16 px: 6 ws -> 0-2)."""
    return tuple(range(min(MIXING_MAX_STYLES, max(num_ws // 2, 1))))


def _span(values: Sequence[int]) -> str:
    """0-2 for a run of consecutive values, else 85,100."""
    consecutive = len(values) > 1 and list(values) == list(range(values[0], values[-1] + 1))
    return f"{values[0]}-{values[-1]}" if consecutive else ",".join(map(str, values))


def _class_text(class_idx: int | None, names: Sequence[str] | None) -> str:
    if class_idx is None:
        return ""
    return f", class {names[class_idx] if names and class_idx < len(names) else class_idx}"


def style_mixing_metadata(
    G: Any, out_dir: Path, class_idx: int | None, names: Sequence[str] | None
) -> tuple[dict[str, Any], Path]:
    """Write NVIDIA's mixing matrix (`style_mixing/grid.png` and one PNG per cell) and its metadata."""
    from PIL import Image

    from stylegan_core.export.style_mixing import write_style_mixing

    styles = mixing_styles(G.num_ws)
    grid = write_style_mixing(G, MIXING_ROW_SEEDS, MIXING_COL_SEEDS, out_dir / "style_mixing", styles,
                              truncation_psi=1.0, class_idx=class_idx)  # fmt: skip
    caption = (
        f"rows {_span(MIXING_ROW_SEEDS)} take ws {_span(styles)} of {G.num_ws} from columns "
        f"{_span(MIXING_COL_SEEDS)} (NVIDIA's style_mixing.py conventions, ψ = 1{_class_text(class_idx, names)})"
    )
    with Image.open(grid) as image:
        png = plots.labelled_grid(image, len(MIXING_ROW_SEEDS) + 1, cell_min=MIXING_CELL_MIN)
    metadata = {
        "style_mixing": md.png_markdown(png, "style mixing", caption),
        "style_mixing_path": md.path(grid),
        "style_mixing_styles": _span(styles),
    }
    return metadata, grid


def _scaled(frames: Iterator[np.ndarray], factor: int, every: int, kept: list[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames scaled up by `factor`; every `every`-th original frame is also appended to `kept` (the preview)."""
    for index, frame in enumerate(frames):
        if index % every == 0 and len(kept) < VIDEO_PREVIEW_FRAMES:
            kept.append(frame)
        yield frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def video_metadata(G: Any, out_dir: Path, class_idx: int | None, names: Sequence[str] | None) -> dict[str, Any]:
    """Write a short looping interpolation video and return its link, path and a strip of its frames."""
    from stylegan_core.export.interpolation import InterpolationConfig, frame_count, interpolation_frames
    from stylegan_core.export.video_writer import resolve_output, write_video

    config = InterpolationConfig(grid=VIDEO_GRID, frames_per_seed=VIDEO_FRAMES_PER_SEED, class_idx=class_idx)
    frames = frame_count(VIDEO_SEEDS, config)
    factor = max(1, -(-VIDEO_MIN_CELL // G.img_resolution))
    output, _ = resolve_output(out_dir / VIDEO_NAME)  # .webp/.gif when imageio-ffmpeg is absent
    every, kept = max(1, frames // VIDEO_PREVIEW_FRAMES), []
    rendered = interpolation_frames(G, VIDEO_SEEDS, config, batch=VIDEO_BATCH)
    path = write_video(_scaled(rendered, factor, every, kept), output, VIDEO_FPS)
    gap = np.full((kept[0].shape[0], 1, kept[0].shape[2]), 255, dtype=np.uint8)  # keeps the frames apart
    strip = np.concatenate([part for frame in kept for part in (gap, frame)][1:], axis=1)
    from PIL import Image

    image = Image.fromarray(strip[:, :, 0] if strip.shape[2] == 1 else strip)
    caption = (
        f"every {every}th frame of {path.name}: {frames} frames at {VIDEO_FPS} fps, seeds {_span(VIDEO_SEEDS)} "
        f"in {VIDEO_GRID[0]}x{VIDEO_GRID[1]} cells (gen_video.py's looping spline{_class_text(class_idx, names)})"
    )
    return {
        "video": md.url(path),
        "video_path": md.path(path),
        "video_format": path.suffix.lstrip("."),
        "video_frames": md.png_markdown(plots.labelled_grid(image, 1), "interpolation video, frame by frame", caption),
    }
