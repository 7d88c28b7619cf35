"""Turn core results into Dagster metadata people would rather look at than read: images, tables, floats."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import dagster as dg

# Event-log rows live in SQLite/Postgres: keep embedded images bounded and link the full-size file instead.
THUMBNAIL_MAX_SIDE = 768
THUMBNAIL_MAX_BYTES = 200_000
# Grids of 16-32 px images are upscaled (nearest neighbour, whole factors) so they are readable in the UI.
THUMBNAIL_MIN_SIDE = 512


def sha256_text(*parts: str) -> str:
    """A stable digest of strings (never Python's per-process `hash()`), for data versions and run identities."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def png_thumbnail(path: str | os.PathLike[str] | io.BytesIO, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A PNG of at most max_side on its longer edge and THUMBNAIL_MAX_BYTES, for embedding in metadata."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    factor = THUMBNAIL_MIN_SIDE // max(image.size)
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    while True:
        thumb = image.copy()
        thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= THUMBNAIL_MAX_BYTES or max_side <= 64:
            return buffer.getvalue()
        max_side //= 2


def image_markdown(path: str | os.PathLike[str], title: str) -> dg.MetadataValue:
    """The image itself in the UI (markdown with a data-URI thumbnail); the full-size file is linked separately."""
    return png_markdown(png_thumbnail(path), title)


def png_markdown(png: bytes, title: str, caption: str = "") -> dg.MetadataValue:
    """PNG bytes as markdown with a data URI: what the asset page renders as an image ("Show Markdown").

    Images over THUMBNAIL_MAX_BYTES are shrunk (event-log rows stay bounded)."""
    if len(png) > THUMBNAIL_MAX_BYTES:
        png = png_thumbnail(io.BytesIO(png))
    encoded = base64.b64encode(png).decode("ascii")
    text = f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"
    return dg.MetadataValue.md(text + (f"\n\n{caption}" if caption else ""))


def table(records: Sequence[Mapping[str, object]], columns: Mapping[str, str]) -> dg.MetadataValue:
    """A UI table; `columns` maps column name → Dagster column type (string, int, float, bool)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    rows = [
        dg.TableRecord({name: _cell(record.get(name), kind) for name, kind in columns.items()}) for record in records
    ]
    return dg.MetadataValue.table(records=rows, schema=schema)


def _cell(value: object, kind: str) -> object:
    # TableRecord accepts only str/int/float/bool; None and lists become readable strings.
    if value is None:
        return "" if kind == "string" else None
    match kind:
        case "int":
            return int(value)  # type: ignore[call-overload]
        case "float":
            return float(value)  # type: ignore[arg-type]
        case "bool":
            return bool(value)
    return value if isinstance(value, str) else str(value)


def histogram(counts: Mapping[object, int], key_name: str = "class") -> dg.MetadataValue:
    """A count table plus a text bar per row, so a class imbalance is visible at a glance."""
    largest = max(counts.values(), default=0) or 1
    records = [
        {key_name: str(key), "count": count, "bar": "█" * max(1, round(24 * count / largest)) if count else ""}
        for key, count in sorted(counts.items(), key=lambda item: str(item[0]))
    ]
    return table(records, {key_name: "string", "count": "int", "bar": "string"})


def floats(values: Mapping[str, float]) -> dict[str, dg.MetadataValue]:
    """Named floats the UI plots across materialisations and partitions."""
    return {name: dg.MetadataValue.float(float(value)) for name, value in values.items()}


def path(value: str | os.PathLike[str]) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(Path(value)))


def url(value: str | os.PathLike[str]) -> dg.MetadataValue:
    """A clickable link to a local file (file:// URI): what the UI shows for videos it cannot embed."""
    return dg.MetadataValue.url(Path(value).resolve().as_uri())


def names(values: Iterable[object]) -> str:
    return ", ".join(str(value) for value in values)
