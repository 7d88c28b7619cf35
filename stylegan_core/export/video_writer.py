"""Write uint8 frames as a video file: MP4 (H.264) through the ffmpeg binary of the optional `imageio-ffmpeg`
package (``pip install stylegan-dagster[video]``), else an animated WebP or GIF through Pillow.

Asking for ``.mp4`` without the encoder writes the same name with ``.webp`` (``.gif`` where Pillow lacks WebP) and
says so, rather than failing after the frames were rendered. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import PIL.features
import PIL.Image

from stylegan_core.errors import UsageError
from stylegan_core.io.atomic import atomic_file, atomic_outputs

VIDEO_SUFFIXES = (".mp4", ".webp", ".gif")
MP4_BITRATE = "12M"  # gen_video.py's bitrate
MAX_ANIMATION_BYTES = 2 << 30
"""Pillow builds a WebP/GIF from frames held in memory; past this many raw bytes, ask for MP4 (streamed) instead."""


def mp4_encoder() -> str | None:
    """Path of imageio-ffmpeg's bundled ffmpeg, or None when that package (or its binary) is absent."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


def resolve_output(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """(the path that will be written, a note when it differs from `path`); rejects unknown suffixes up front."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UsageError(f"{path}: video output must end in one of {', '.join(VIDEO_SUFFIXES)}")
    if suffix == ".webp" and not PIL.features.check("webp"):
        return path.with_suffix(".gif"), f"this Pillow cannot write WebP; writing {path.with_suffix('.gif')}"
    if suffix != ".mp4" or mp4_encoder() is not None:
        return path, None
    fallback = path.with_suffix(".webp" if PIL.features.check("webp") else ".gif")
    return fallback, f"no MP4 encoder (pip install imageio-ffmpeg); writing {fallback} instead"


def check_animation_size(path: str | os.PathLike[str], frames: int, height: int, width: int) -> None:
    """Refuse, before rendering, an animated WebP/GIF whose frames would not fit comfortably in memory."""
    size = frames * height * width * 3
    if Path(path).suffix.lower() != ".mp4" and size > MAX_ANIMATION_BYTES:
        raise UsageError(
            f"{path}: {frames} frames of {width}x{height} need {size / 2**30:.1f} GiB in memory as an animation; "
            "write .mp4 (pip install imageio-ffmpeg) or use fewer seeds / --frames-per-seed"
        )


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: int) -> Path:
    """Write frames (uint8 [H, W, 1 or 3]) to `path` (already resolved by `resolve_output`)."""
    path = Path(path)
    if fps < 1:
        raise UsageError(f"fps must be at least 1, got {fps}")
    if path.suffix.lower() == ".mp4":
        return _write_mp4(frames, path, fps)
    return _write_animation(frames, path, fps)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: int) -> Path:
    import imageio_ffmpeg

    iterator = iter(frames)
    first = _rgb(next(iterator))
    height, width = first.shape[:2]
    # yuv420p needs even sides: pad by one black row/column rather than let ffmpeg rescale (macro_block_size=1).
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    with atomic_outputs(path) as (temp,):
        writer = imageio_ffmpeg.write_frames(
            str(temp), (width + width % 2, height + height % 2), fps=fps, codec="libx264", bitrate=MP4_BITRATE,
            macro_block_size=1, output_params=["-f", "mp4"],
        )  # fmt: skip
        writer.send(None)  # start ffmpeg
        try:
            for frame in _chain(first, iterator):
                writer.send(np.ascontiguousarray(np.pad(frame, pad)))
        finally:
            writer.close()
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    for frame in rest:
        yield _rgb(frame)


def _write_animation(frames: Iterable[np.ndarray], path: Path, fps: int) -> Path:
    images = [PIL.Image.fromarray(frame[:, :, 0], "L") if frame.shape[2] == 1 else PIL.Image.fromarray(frame, "RGB")
              for frame in frames]  # fmt: skip
    if not images:
        raise ValueError("write_video: no frames")
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "GIF"
    options = dict(lossless=True) if fmt == "WEBP" else {}
    with atomic_file(path) as file:
        images[0].save(file, format=fmt, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       **options)  # fmt: skip
    return path
