"""The optional `projection_targets` key of a spec: a small folder of images the `projections` asset projects into
each trained network's W space (NVIDIA's projector.py), checked when the spec loads.

    projection_targets: targets/          # a folder, relative to the spec file
    projection_targets:                   # or with projector settings (omitted: the projector's own defaults)
      path: targets/
      num_steps: 200
      seed: 303

The folder is read like any untrusted input: at most MAX_PROJECTION_TARGETS image files (by suffix; other files
are an error rather than silently ignored), each at most MAX_TARGET_BYTES and MAX_TARGET_PIXELS, each decoded once
here so an unreadable file is reported with the spec, not hours later by the asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylegan_core.data.options import DEFAULT_MAX_PIXELS
from stylegan_core.spec.fields import Section, integer, path_in

MAX_PROJECTION_TARGETS = 8
"""Each target costs a full projection (NVIDIA: 1000 optimisation steps) per trained network."""
MAX_TARGET_BYTES = 32 << 20
"""Stricter than the projector's own bound (export/projector_target.py), which then never refuses a listed target."""
MAX_TARGET_PIXELS = DEFAULT_MAX_PIXELS
"""The projector's and ingestion's pixel bound."""
MAX_PROJECTION_STEPS = 100_000
TARGET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_KEYS = ("path", "num_steps", "seed")


@dataclass(frozen=True, kw_only=True)
class ProjectionTargetsSpec:
    """Images to project after training, and the projector settings the spec overrides."""

    path: Path
    """The folder (absolute, resolved against the spec's folder)."""
    images: tuple[Path, ...]
    """Its image files, sorted by name; 1..MAX_PROJECTION_TARGETS of them, each decoded once at load."""
    num_steps: int | None = None
    """Optimisation steps; None: the projector's default (NVIDIA's 1000)."""
    seed: int | None = None
    """None: the projector's default (NVIDIA's 303)."""


def parse_projection_targets(file: Path, value: Any) -> ProjectionTargetsSpec:
    """The `projection_targets` value of spec `file` (a path, or a mapping with `path`), checked on disk."""
    section = Section(file, "projection_targets", {"path": value} if isinstance(value, str) else value, _KEYS)
    folder = section.take("path", path_in(file.parent))
    num_steps = section.take("num_steps", integer(1, MAX_PROJECTION_STEPS), None)
    seed = section.take("seed", integer(0, 2**32 - 1), None)
    section.finish()
    images = target_images(folder, lambda message: section.error("path", message))
    return ProjectionTargetsSpec(path=folder, images=images, num_steps=num_steps, seed=seed)


def target_images(folder: Path, error: Any) -> tuple[Path, ...]:
    """The folder's image files, each bounded and decoded; `error(message)` makes the exception to raise."""
    from stylegan_core.data.images import decode
    from stylegan_core.data.options import BadFileError

    if not folder.is_dir():
        raise error(f"{folder} is not a folder")
    files = sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
    others = [entry.name for entry in files if not entry.is_file() or entry.suffix.lower() not in TARGET_SUFFIXES]
    if others:
        raise error(f"{folder} holds {others[0]!r}, which is not an image ({', '.join(TARGET_SUFFIXES)})")
    if not files or len(files) > MAX_PROJECTION_TARGETS:
        raise error(f"{folder} holds {len(files)} images; give 1 to {MAX_PROJECTION_TARGETS}")
    for image in files:
        size = image.stat().st_size
        if size > MAX_TARGET_BYTES:
            raise error(f"{image} is {size / 2**20:.0f} MiB; a target image is at most {MAX_TARGET_BYTES >> 20} MiB")
        try:
            decode(image.read_bytes(), str(image), MAX_TARGET_PIXELS).close()
        except BadFileError as problem:
            raise error(str(problem)) from None
    return tuple(files)
