"""Per-file work that runs in the worker processes. Kept apart from ingest/inventory so a worker imports only Pillow
(numpy where alpha or 16-bit grey needs it; never pandas or pyarrow), which keeps pool start-up cheap."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass

import PIL.Image

from stylegan_core.data.images import ImageHeader, ProcessedImage, process_image, read_header
from stylegan_core.data.options import BadFileError, IngestOptions
from stylegan_core.data.sources import SourceItem, SourceReader

# Pillow loads its common decoders (JPEG, PNG, ...) on the first open; done at import, that happens once in the pool's
# server (which imports this module) rather than in every worker it forks.
PIL.Image.preinit()

INVENTORY_COLUMNS = ("path", "size_bytes", "sha256", "width", "height", "mode", "format", "label", "problem")


@dataclass(frozen=True)
class ProcessContext:
    """Sent once to each worker process."""

    reader: SourceReader
    resolution: int
    channels: int
    options: IngestOptions


def process_task(context: ProcessContext, item: SourceItem) -> ProcessedImage | BadFileError:
    """Source file → output PNG, or the reason it cannot be used (returned, so the parent decides fail or skip)."""
    name = context.reader.display_name(item.path)
    try:
        data = context.reader.read(item.path)
        return process_image(data, name, context.resolution, context.channels, context.options)
    except BadFileError as error:
        return error
    except OSError as error:
        return BadFileError(name, f"cannot be read ({error})")


def header_task(context: tuple[SourceReader, int], item: SourceItem) -> ImageHeader | BadFileError:
    reader, max_pixels = context
    name = reader.display_name(item.path)
    try:
        with reader.open(item.path) as stream:
            return read_header(stream, name, max_pixels)
    except BadFileError as error:
        return error
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:  # CRC-checked; encrypted
        return BadFileError(name, f"cannot be read ({error})")


def inventory_task(context: tuple[SourceReader, int], item: SourceItem) -> dict[str, object]:
    """One inventory row: size, sha256 and header facts of a source file, or the problem found."""
    reader, max_pixels = context
    row: dict[str, object] = dict.fromkeys(INVENTORY_COLUMNS) | {"path": item.path, "label": item.label}
    try:
        data = reader.read(item.path)
    except (OSError, BadFileError) as error:
        return row | {"problem": f"cannot be read ({error})"}
    row |= {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        header = read_header(data, reader.display_name(item.path), max_pixels)
    except BadFileError as error:
        return row | {"problem": error.reason}
    return row | {"width": header.width, "height": header.height, "mode": header.mode, "format": header.format}
