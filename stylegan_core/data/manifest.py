"""The Parquet manifest of a dataset: one row per image, wide one-hot columns, and a JSON report in the metadata.

Columns: path (archive name), source_path, width, height, channels, label (nullable integer), l0..l{K-1} (one-hot,
only for labelled datasets), sha256 (of the PNG bytes), source_width, source_height, source_mode. The report (under
the Parquet key `stylegan`) holds resolution, channels, label_dim, class names, content hash, skipped files and the
ingestion options.
"""

from __future__ import annotations

import array
import importlib.util
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylegan_core.data.options import DatasetError

# pandas and pyarrow (about 0.3 s to import), Pillow and the reader are imported where used: ingestion writes the
# manifest with pyarrow alone (`write_manifest_records`) and loads it in the background meanwhile, while its
# workers use both cores (`stylegan_core.data.ingest`).
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


def write_manifest_records(
    records: Sequence[ManifestRecord], label_dim: int | None, path: str | os.PathLike[str], report: dict[str, Any]
) -> None:
    """The file `write_manifest(build_manifest_frame(records, label_dim), path, report)` writes, byte for byte, but
    without importing pandas (about 0.2 s of CPU that competes with the ingestion workers on a small machine).

    What pandas adds is the 'pandas' schema metadata that lets `pd.read_parquet` restore the string and nullable
    Int64 dtypes; it is written here as pyarrow's `Table.from_pandas` writes it for pandas 3 (a test compares the
    files). With another pandas major version the table goes through pandas itself.
    """
    if _installed_major("pandas") != 3:
        write_manifest(build_manifest_frame(records, label_dim), path, report)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _manifest_columns(records, label_dim)
    types = {"string": pa.large_string(), "int64": pa.int64(), "Int64": pa.int64()}
    arrays = [_string_array(values) if kind == "string" else _int64_array(values) for _, kind, values in columns]
    described = [
        {"name": name, "field_name": name, "pandas_type": "object" if kind == "string" else "int64",
         "numpy_type": kind, "metadata": None}
        for name, kind, _ in columns
    ]  # fmt: skip
    pandas_metadata = {
        "index_columns": [],
        "column_indexes": [],
        "columns": described,
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": _installed_version("pandas"),
    }
    metadata = {b"pandas": json.dumps(pandas_metadata).encode("utf8"), REPORT_KEY: _report_bytes(report)}
    schema = pa.schema([pa.field(name, types[kind]) for name, kind, _ in columns], metadata=metadata)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def _manifest_columns(records: Sequence[ManifestRecord], label_dim: int | None) -> list[tuple[str, str, list[Any]]]:
    """(name, pandas dtype, values) in `build_manifest_frame`'s column order."""
    columns: list[tuple[str, str, list[Any]]] = [
        ("path", "string", [r.path for r in records]),
        ("source_path", "string", [r.source_path for r in records]),
        ("width", "int64", [r.width for r in records]),
        ("height", "int64", [r.height for r in records]),
        ("channels", "int64", [r.channels for r in records]),
        ("label", "Int64", [r.label for r in records]),
    ]
    for k in range(label_dim or 0):
        columns.append((f"l{k}", "int64", [int(r.label == k) for r in records]))
    columns += [
        ("sha256", "string", [r.sha256 for r in records]),
        ("source_width", "int64", [r.source_width for r in records]),
        ("source_height", "int64", [r.source_height for r in records]),
        ("source_mode", "string", [r.source_mode for r in records]),
    ]
    return columns


# Arrays are built from raw buffers: `pa.array(...)` imports pandas (to check whether its input is a pandas object).
def _int64_array(values: Sequence[int | None]) -> Any:
    import pyarrow as pa

    data = pa.py_buffer(array.array("q", [0 if value is None else value for value in values]))
    nulls = sum(value is None for value in values)
    validity = None
    if nulls:
        bits = bytearray((len(values) + 7) // 8)
        for index, value in enumerate(values):
            if value is not None:
                bits[index // 8] |= 1 << (index % 8)  # Arrow bitmaps are least significant bit first
        validity = pa.py_buffer(bytes(bits))
    return pa.Array.from_buffers(pa.int64(), len(values), [validity, data], null_count=nulls)


def _string_array(values: Sequence[str]) -> Any:
    import pyarrow as pa

    encoded = [value.encode("utf-8") for value in values]
    offsets = array.array("q", [0])
    for item in encoded:
        offsets.append(offsets[-1] + len(item))
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.large_string(), len(values), buffers, null_count=0)


def _installed_version(package: str) -> str | None:
    """A package's version from its dist-info folder, without importing it (or importlib.metadata: ~50 ms)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    prefix = f"{package}-"
    for info in Path(spec.origin).parent.parent.glob(f"{package}-*.dist-info"):
        return info.name[len(prefix) : -len(".dist-info")]
    return None


def _installed_major(package: str) -> int | None:
    version = _installed_version(package)
    head = version.split(".", 1)[0] if version else ""
    return int(head) if head.isdigit() else None


def _report_bytes(report: dict[str, Any]) -> bytes:
    return json.dumps(report, sort_keys=True).encode()


def write_manifest(frame: pd.DataFrame, path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[REPORT_KEY] = _report_bytes(report)
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
    import PIL.Image

    from stylegan_core.data.dataset import LABELS_FILE, ArchiveFiles, parse_labels, sha256_hex

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
    import PIL.Image

    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, image.mode
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{name}: cannot read the image header ({error})") from None
