"""Source images → an NVIDIA-layout dataset zip, its Parquet manifest and content hash.

The zip is what NVIDIA's dataset_tool writes (ZIP_STORED, `00000/img00000000.png`, uncompressed PNGs, `dataset.json`
last), but deterministic: fixed timestamps and sorted input make the same source give byte-identical zips.
Both files are written under temporary names and renamed only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylegan_core.data.manifest import ManifestRecord, SkippedFile, write_manifest_records
from stylegan_core.data.options import BadFileError, DatasetError, ImageDropped, IngestOptions, is_power_of_two
from stylegan_core.data.parallel import ordered_map, start_workers
from stylegan_core.data.sources import LABELS_FILE, SourceItem, SourceListing, SourceReader, list_source
from stylegan_core.io.atomic import atomic_outputs

# The image code (numpy, Pillow), the reader and the source converters are imported inside the functions that use
# them, after `prepare_dataset` has started the worker pool's server: the server's own start-up (an interpreter
# importing the same modules) then runs beside the parent's imports and listing instead of after them.
if TYPE_CHECKING:
    from stylegan_core.data.images import ProcessedImage
    from stylegan_core.data.inventory import SourceInventory, inventory_source
    from stylegan_core.spec import DatasetSpec, SourceSpec

__all__ = [
    "IngestResult",
    "SourceInventory",
    "archive_name",
    "inventory_source",
    "manifest_path_for",
    "materialize_source",
    "prepare_dataset",
    "prepare_from_spec",
]

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Where `process_task` lives, named without importing it: the forkserver preloads this module.
_TASKS_MODULE = "stylegan_core.data.tasks"


@dataclass(frozen=True)
class IngestResult:
    """What `prepare_dataset` produced."""

    zip_path: Path
    manifest_path: Path
    content_hash: str
    count: int
    resolution: int
    channels: int
    label_dim: int
    class_names: tuple[str, ...] | None
    skipped: tuple[SkippedFile, ...]


def manifest_path_for(zip_path: str | os.PathLike[str]) -> Path:
    """`out.zip` → `out.manifest.parquet`, next to it."""
    path = Path(zip_path)
    return path.with_name(path.stem + ".manifest.parquet")


def archive_name(index: int) -> str:
    """NVIDIA's entry name: a folder per 1000 images."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def prepare_dataset(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    resolution: int,
    options: IngestOptions | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    manifest_path: str | os.PathLike[str] | None = None,
) -> IngestResult:
    """Ingest a folder or zip of images into `dest` (a .zip) at `resolution` x `resolution`.

    Bad files stop ingestion with a `DatasetError` naming the file (no output is left behind), or with
    `options.on_error == "skip"` are left out and listed in `IngestResult.skipped` and the manifest's report.
    """
    options = options or IngestOptions()
    if not is_power_of_two(resolution) or resolution < 4:
        raise DatasetError(f"resolution must be a power of two >= 4, got {resolution}")
    dest = Path(dest)
    if dest.suffix.lower() != ".zip":
        raise DatasetError(f"{dest}: the destination must be a .zip file")
    manifest_path = Path(manifest_path) if manifest_path is not None else manifest_path_for(dest)
    # Before anything else: the pool's server starts (in its own process) while this one lists the source.
    start_workers(_TASKS_MODULE, workers)
    from stylegan_core.data.tasks import ProcessContext, process_task

    listing = list_source(source, options.labels, options.num_classes, options.max_images)
    skipped = _triage(listing.problems, options.on_error)
    reader = SourceReader(listing.root, listing.kind)
    items, channels, header_skips = _choose_channels(reader, list(listing.items), options, progress)
    context = ProcessContext(reader, resolution, channels, options)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The zip is renamed last, so a zip next to a stale manifest cannot appear.
    with atomic_outputs(manifest_path, dest) as (manifest_temp, zip_temp):
        outcomes = ordered_map(process_task, context, items, workers, progress, f"ingest {listing.root.name}")
        with contextlib.closing(outcomes):
            # Only now: earlier, the import would hold the GIL against the listing, which decides when the first
            # image goes out, and its thread would keep the pool from forking its workers from this process.
            manifest_writer_loaded = _import_in_background("pyarrow.parquet")
            records, process_skips, json_bytes = _write_archive(zip_temp, items, outcomes, listing, options)
        skipped = (*skipped, *header_skips, *process_skips)
        content_hash = _content_hash(records, json_bytes)
        label_dim = _label_dim(records, listing)
        report = _manifest_report(listing, options, resolution, channels, label_dim, content_hash, records, skipped)
        manifest_writer_loaded()
        write_manifest_records(records, label_dim if listing.labelled else None, manifest_temp, report)
    return IngestResult(
        dest, manifest_path, content_hash, len(records), resolution, channels, label_dim, listing.class_names, skipped
    )


def materialize_source(source: SourceSpec, work_dir: str | os.PathLike[str], spec_name: str = "source") -> Path:
    """The folder or zip ingestion reads: the spec's own path, or for `generated` and `cifar10` sources a folder
    written under `work_dir` (or at `source.path` for `generated`), reused while its inputs are unchanged."""
    from stylegan_core.data.cifar10 import convert_cifar10
    from stylegan_core.data.shapes import generate_shapes

    work_dir = Path(work_dir)
    match source.kind:
        case "folder" | "zip":
            assert source.path is not None
            return source.path
        case "generated":
            assert source.generator is not None
            return generate_shapes(source.path or work_dir / f"{spec_name}-source", source.generator)
        case "cifar10":
            assert source.path is not None
            return convert_cifar10(source.path, work_dir / f"{spec_name}-source")
    raise AssertionError(source.kind)


def prepare_from_spec(
    spec: DatasetSpec,
    resolution: int,
    dest: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool = False,
) -> IngestResult:
    """Ingest a spec's source at one of its resolutions (what the Dagster `dataset` asset runs)."""
    if resolution not in spec.resolutions:
        raise DatasetError(f"{spec.spec_path}: resolution {resolution} is not one of {list(spec.resolutions)}")
    source = materialize_source(spec.source, work_dir, spec.name)
    return prepare_dataset(source, dest, resolution, spec.ingest, workers=workers, progress=progress)


def _triage(problems: Iterable[BadFileError], on_error: str) -> tuple[SkippedFile, ...]:
    problems = list(problems)
    if problems and on_error == "fail":
        raise problems[0]
    return tuple(SkippedFile(problem.path, problem.reason) for problem in problems)


def _choose_channels(
    reader: SourceReader, items: list[SourceItem], options: IngestOptions, progress: bool
) -> tuple[list[SourceItem], int, tuple[SkippedFile, ...]]:
    """The output channel count; `auto` reads headers in order until the first colour image (every header only
    when all are grey). Files not scanned are still checked when they are decoded, with the same messages."""
    if options.channels != "auto":
        return items, options.output_channels(all_sources_grey=False), ()
    from stylegan_core.data.tasks import header_task

    # Headers are a few hundred bytes each: one process reads them faster than a pool starts.
    headers = ordered_map(header_task, (reader, options.max_pixels), items, 1, progress, "scan headers")
    kept: list[SourceItem] = []
    skipped: list[BadFileError] = []
    all_grey = True
    with contextlib.closing(headers):
        for item, header in zip(items, headers, strict=True):
            if isinstance(header, BadFileError):
                skipped.append(header)
                continue
            kept.append(item)
            if not header.is_grey:
                all_grey = False
                break
    unscanned = items[len(kept) + len(skipped) :]
    return [*kept, *unscanned], options.output_channels(all_grey), _triage(skipped, options.on_error)


def _write_archive(
    zip_path: Path,
    items: Sequence[SourceItem],
    outcomes: Iterator[ProcessedImage | BadFileError],
    listing: SourceListing,
    options: IngestOptions,
) -> tuple[list[ManifestRecord], list[SkippedFile], bytes]:
    records: list[ManifestRecord] = []
    skipped: list[SkippedFile] = []
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, BadFileError):
                # center-crop-wide drops small images by design (as NVIDIA's tool); other problems obey on_error.
                if options.on_error == "fail" and not isinstance(outcome, ImageDropped):
                    raise outcome
                skipped.append(SkippedFile(outcome.path, outcome.reason))
                continue
            name = archive_name(len(records))
            _write_entry(archive, name, outcome.png)
            records.append(ManifestRecord.from_processed(name, item, outcome, listing))
        if not records:
            raise DatasetError(f"{listing.root}: no usable images (all {len(items)} were skipped)")
        labels = [[r.path, r.label] for r in records] if listing.labelled else None
        json_bytes = json.dumps({"labels": labels}).encode("utf-8")
        _write_entry(archive, LABELS_FILE, json_bytes)
    return records, skipped, json_bytes


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # unix, whatever machine wrote it
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def __getattr__(name: str) -> Any:
    # The inventory, re-exported here, loads the image code: imported on first use (see the imports above).
    if name in ("SourceInventory", "inventory_source"):
        from stylegan_core.data import inventory

        return getattr(inventory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _import_in_background(*modules: str) -> Callable[[], None]:
    """Start importing `modules` on a helper thread; the returned function waits for it (and re-raises its error).

    The manifest writer's import (pyarrow: about 0.1 s) then overlaps with the images being processed instead of
    adding to the tail.
    """
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for name in modules:
                importlib.import_module(name)
        except BaseException as error:  # handed to the main thread
            errors.append(error)

    # Not a daemon: an interpreter that exits early (bad input) waits for the import instead of freezing it midway.
    thread = threading.Thread(target=load, name="import-manifest-writer")
    thread.start()

    def wait() -> None:
        thread.join()
        if errors:
            raise errors[0]

    return wait


def _content_hash(records: Sequence[ManifestRecord], json_bytes: bytes) -> str:
    from stylegan_core.data.dataset import hash_entries, sha256_hex  # numpy: loaded by pyarrow's import meanwhile

    return hash_entries([(r.path, r.sha256) for r in records] + [(LABELS_FILE, sha256_hex(json_bytes))])


def _manifest_report(
    listing: SourceListing,
    options: IngestOptions,
    resolution: int,
    channels: int,
    label_dim: int,
    content_hash: str,
    records: Sequence[ManifestRecord],
    skipped: Sequence[SkippedFile],
) -> dict[str, Any]:
    """The JSON report stored in the manifest's metadata."""
    return {
        "resolution": resolution,
        "channels": channels,
        "label_dim": label_dim,
        "class_names": list(listing.class_names) if listing.class_names else None,
        "content_hash": content_hash,
        "count": len(records),
        "skipped": [asdict(entry) for entry in skipped],
        "ignored": list(listing.ignored),
        "options": asdict(options),
    }


def _label_dim(records: Sequence[ManifestRecord], listing: SourceListing) -> int:
    if not listing.labelled:
        return 0
    if listing.num_classes is not None:
        return listing.num_classes
    return max(record.label for record in records if record.label is not None) + 1
