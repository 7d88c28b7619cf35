"""The Parquet manifest of a dataset: one row per image, wide one-hot columns, and a JSON report in the metadata.

Columns: path (archive name), source_path, width, height, channels, label (nullable integer), l0..l{K-1} (one-hot,
only for labelled datasets), sha256 (of the PNG bytes), source_width, source_height, source_mode. The report (under
the Parquet key `stylegan`) holds resolution, channels, label_dim, class names, content hash, skipped files and the
ingestion options.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import PIL.Image

from stylegan_core.data.dataset import LABELS_FILE, ArchiveFiles, parse_labels, sha256_hex
from stylegan_core.data.options import DatasetError

# pandas and pyarrow (about 0.3 s to import) are imported where used: ingestion needs the records above long
# before it writes the table, and loads them in the background meanwhile (`stylegan_core.data.ingest`).
if TYPE_CHECKING:
    import pandas as pd

    from stylegan_core.data.images import ProcessedImage
    from stylegan_core.data.sources import SourceItem, SourceListing

REPORT_KEY = b"stylegan"


@dataclass(frozen=True)
class SkippedFile:
    """A source file (or label entry) left out under `on_error: skip`, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ManifestRecord:
    path: str
    source_path: str
    width: int
    height: int
    channels: int
    label: int | None
    sha256: str
    source_width: int
    source_height: int
    source_mode: str

    @classmethod
    def from_processed(
        cls, name: str, item: SourceItem, image: ProcessedImage, listing: SourceListing
    ) -> ManifestRecord:
        return cls(
            path=name,
            source_path=item.path,
            width=image.width,
            height=image.height,
            channels=image.channels,
            label=item.label if listing.labelled else None,
            sha256=image.sha256,
            source_width=image.source_width,
            source_height=image.source_height,
            source_mode=image.source_mode,
        )


def onehot_columns(frame: pd.DataFrame) -> list[str]:
    """The l0..lK columns in numeric order."""
    columns = [c for c in frame.columns if isinstance(c, str) and c[:1] == "l" and c[1:].isdigit()]
    return sorted(columns, key=lambda c: int(c[1:]))


def build_manifest_frame(records: Sequence[ManifestRecord], label_dim: int | None) -> pd.DataFrame:
    """Records → the manifest table; `label_dim` None means unlabelled (no one-hot columns)."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "path": pd.Series([r.path for r in records], dtype="string"),
            "source_path": pd.Series([r.source_path for r in records], dtype="string"),
            "width": pd.Series([r.width for r in records], dtype="int64"),
            "height": pd.Series([r.height for r in records], dtype="int64"),
            "channels": pd.Series([r.channels for r in records], dtype="int64"),
            "label": pd.Series([r.label for r in records], dtype="Int64"),
        }
    )
    if label_dim is not None:
        onehot = {f"l{k}": (frame["label"] == k).astype("int64") for k in range(label_dim)}
        frame = pd.concat([frame, pd.DataFrame(onehot, index=frame.index)], axis=1)
    frame["sha256"] = pd.Series([r.sha256 for r in records], dtype="string")
    frame["source_width"] = pd.Series([r.source_width for r in records], dtype="int64")
    frame["source_height"] = pd.Series([r.source_height for r in records], dtype="int64")
    frame["source_mode"] = pd.Series([r.source_mode for r in records], dtype="string")
    return frame


def write_manifest(frame: pd.DataFrame, path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[REPORT_KEY] = json.dumps(report, sort_keys=True).encode()
    pq.write_table(table.replace_schema_metadata(metadata), path)


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(f"{path}: cannot read the manifest ({error})") from None


def read_manifest_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON report stored with a manifest (skipped files, content hash, options...)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if REPORT_KEY not in metadata:
        raise DatasetError(f"{path}: no stylegan report in this Parquet file")
    return json.loads(metadata[REPORT_KEY])


def manifest_from_archive(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Build a manifest from any NVIDIA-layout zip or folder (ours or NVIDIA's), reading image headers only."""
    files = ArchiveFiles(path)
    try:
        names = files.image_names
        if not names:
            raise DatasetError(f"{files.path}: no image files found")
        labels_json = files.labels_json()
        labels = parse_labels(labels_json, names, f"{files.path}/{LABELS_FILE}") if labels_json else None
        if labels is not None and labels.ndim != 1:
            labels = None  # float label vectors have no class index to check
        records = []
        for index, name in enumerate(names):
            data = files.read(name)
            width, height, mode = _header(data, f"{files.path}/{name}")
            label = int(labels[index]) if labels is not None else None
            channels = PIL.Image.getmodebands(mode)
            records.append(
                ManifestRecord(name, name, width, height, channels, label, sha256_hex(data), width, height, mode)
            )
    finally:
        files.close()
    label_dim = int(labels.max()) + 1 if labels is not None else None
    return build_manifest_frame(records, label_dim)


def _header(data: bytes, name: str) -> tuple[int, int, str]:
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, image.mode
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{name}: cannot read the image header ({error})") from None
