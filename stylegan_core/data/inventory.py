"""Inventory of a source (the `raw_images` asset) and fingerprints that tell when a source changed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stylegan_core.data.options import DEFAULT_MAX_PIXELS, LabelSource, is_hidden
from stylegan_core.data.parallel import ordered_map
from stylegan_core.data.sources import SourceReader, list_source, source_kind
from stylegan_core.data.tasks import INVENTORY_COLUMNS, inventory_task

if TYPE_CHECKING:  # imported where used, so importing ingestion does not load pandas
    import pandas as pd


@dataclass(frozen=True)
class SourceInventory:
    """One row per image file of the source (problem files included, with `problem` set)."""

    frame: pd.DataFrame
    fingerprint: str
    """sha256 over the sorted rows: changes when any file's bytes, name or label change."""
    root: Path
    ignored: tuple[str, ...]
    labelled: bool
    class_names: tuple[str, ...] | None

    @property
    def count(self) -> int:
        return int(self.frame["problem"].isna().sum())


def inventory_source(
    source: str | os.PathLike[str],
    labels: LabelSource = "auto",
    num_classes: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = False,
) -> SourceInventory:
    """Files, sizes, modes, labels and per-file sha256 of a source folder or zip, plus its fingerprint."""
    import pandas as pd

    listing = list_source(source, labels, num_classes)
    reader = SourceReader(listing.root, listing.kind)
    rows = list(ordered_map(inventory_task, (reader, max_pixels), listing.items, workers, progress, "inventory"))
    prefix = str(listing.root) + "/"
    for problem in listing.problems:
        path = problem.path[len(prefix) :] if problem.path.startswith(prefix) else problem.path
        rows.append(dict.fromkeys(INVENTORY_COLUMNS) | {"path": path, "problem": problem.reason})
    frame = pd.DataFrame(rows, columns=list(INVENTORY_COLUMNS))
    frame = frame.astype(
        {
            "path": "string",
            "size_bytes": "Int64",
            "sha256": "string",
            "width": "Int64",
            "height": "Int64",
            "mode": "string",
            "format": "string",
            "label": "Int64",
            "problem": "string",
        }
    )
    frame = frame.sort_values("path", kind="stable", ignore_index=True)
    return SourceInventory(
        frame, _fingerprint(frame), listing.root, listing.ignored, listing.labelled, listing.class_names
    )


def _fingerprint(frame: pd.DataFrame) -> str:
    import pandas as pd

    digest = hashlib.sha256(b"stylegan-source-v1\n")
    for row in frame[["path", "size_bytes", "sha256", "label", "problem"]].itertuples(index=False):
        digest.update(("\0".join("" if pd.isna(v) else str(v) for v in row) + "\n").encode())
    return digest.hexdigest()


def quick_fingerprint(source: str | os.PathLike[str]) -> str:
    """Cheap change detector for sensors: names, sizes and modification times, without reading file contents."""
    root = Path(source).expanduser()
    digest = hashlib.sha256(b"stylegan-source-stat-v1\n")
    if source_kind(root) == "zip":
        status = root.stat()
        digest.update(f"{status.st_size}\0{status.st_mtime_ns}".encode())
        return digest.hexdigest()
    entries = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            if is_hidden(relative):
                continue
            status = os.stat(full) if os.path.exists(full) else os.lstat(full)
            entries.append(f"{relative}\0{status.st_size}\0{status.st_mtime_ns}\n")
    for entry in sorted(entries):
        digest.update(entry.encode())
    return digest.hexdigest()
