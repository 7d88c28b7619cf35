"""Bad input: each case fails with a message naming the file and the problem and leaves no output behind;
`on_error: skip` leaves the bad files out and reports them instead."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from data_support import gradient, labelled_folder, leftovers, png_bytes, save, write_labels

from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.manifest import read_manifest, read_manifest_report
from stylegan_core.data.options import DatasetError, IngestOptions


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes: a decompression-bomb stand-in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


def _corrupt(folder: Path) -> Path:
    labelled_folder(folder)
    (folder / "b.png").write_bytes(os.urandom(64))
    return folder


def _truncated(folder: Path) -> Path:
    labelled_folder(folder, size=32)
    data = (folder / "b.png").read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 2])
    return folder


def _not_an_image(folder: Path) -> Path:
    labelled_folder(folder)
    (folder / "b.png").write_text("these are notes, not pixels\n")
    return folder


def _bomb(folder: Path) -> Path:
    labelled_folder(folder)
    (folder / "b.png").write_bytes(_png_header_only(30_000, 30_000))
    return folder


def _unsupported_mode(folder: Path) -> Path:
    labelled_folder(folder)
    PIL.Image.fromarray(np.ones((16, 16), np.float32)).save(folder / "b.tif")
    write_labels(folder, {"a.png": 0, "b.tif": 1, "c.png": 0, "d.png": 1})
    (folder / "b.png").unlink()
    return folder


def _symlink_out(folder: Path) -> Path:
    labelled_folder(folder)
    outside = save(gradient(16, 16), folder.parent / "outside.png")
    (folder / "b.png").unlink()
    os.symlink(outside, folder / "b.png")
    return folder


def _symlinked_folder_out(folder: Path) -> Path:
    labelled_folder(folder)
    save(gradient(16, 16), folder.parent / "elsewhere" / "x.png")
    os.symlink(folder.parent / "elsewhere", folder / "linked")
    return folder


def _label_for_missing_file(folder: Path) -> Path:
    labelled_folder(folder)
    write_labels(folder, {"a.png": 0, "b.png": 1, "c.png": 0, "d.png": 1, "gone.png": 1})
    return folder


def _unlabelled_file(folder: Path) -> Path:
    labelled_folder(folder)
    save(gradient(16, 16), folder / "e.png")
    return folder


def _label_negative(folder: Path) -> Path:
    labelled_folder(folder)
    write_labels(folder, {"a.png": 0, "b.png": -1, "c.png": 0, "d.png": 1})
    return folder


def _label_not_integer(folder: Path) -> Path:
    labelled_folder(folder)
    write_labels(folder, {"a.png": 0, "b.png": 1.5, "c.png": 0, "d.png": 1})
    return folder


def _zip_entry(name: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        folder.mkdir(parents=True)
        archive_path = folder / "source.zip"
        with zipfile.ZipFile(archive_path, "w") as archive:
            archive.writestr("a.png", png_bytes(gradient(16, 16)))
            archive.writestr(name, png_bytes(gradient(16, 16, seed=1)))
        return archive_path

    return build


# (builder, options, words the message must contain: the file and the problem)
CASES = {
    "corrupt": (_corrupt, {}, ["b.png", "not an image"]),
    "truncated": (_truncated, {}, ["b.png", "truncated"]),
    "not_an_image": (_not_an_image, {}, ["b.png", "not an image"]),
    "decompression_bomb": (_bomb, {}, ["b.png", "decompression bomb"]),
    "unsupported_mode": (_unsupported_mode, {}, ["b.tif", "unsupported image mode"]),
    "symlink_out_of_source": (_symlink_out, {}, ["b.png", "outside the source"]),
    "symlinked_folder_out_of_source": (_symlinked_folder_out, {}, ["linked", "outside the source"]),
    "label_for_missing_file": (_label_for_missing_file, {}, ["gone.png", "not in the source"]),
    "file_without_label": (_unlabelled_file, {}, ["e.png", "no label"]),
    "label_out_of_range": (_label_negative, {}, ["b.png", "outside [0"]),
    "label_above_num_classes": (labelled_folder, {"num_classes": 1}, ["b.png", "outside [0, num_classes = 1)"]),
    "label_not_integer": (_label_not_integer, {}, ["b.png", "not an integer"]),
    "zip_entry_parent": (_zip_entry("../evil.png"), {}, ["../evil.png", "escapes the archive"]),
    "zip_entry_absolute": (_zip_entry("/etc/evil.png"), {}, ["/etc/evil.png", "escapes the archive"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_clearly_and_leaves_nothing(case: str, tmp_path: Path) -> None:
    build, options, words = CASES[case]
    source = build(tmp_path / "source")
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as caught:
        prepare_dataset(source, out / "data.zip", 16, IngestOptions(**options))
    message = str(caught.value)
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert leftovers(out) == []


def test_pillows_own_bomb_error_becomes_ours(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "source")
    (source / "b.png").write_bytes(_png_header_only(20_000, 20_000))  # 4e8 pixels > 2x Pillow's limit
    with pytest.raises(DatasetError, match=r"b\.png.*decompression bomb"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16, IngestOptions(max_pixels=10**12))
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("content", ["nothing", "only_notes"])
def test_empty_source(content: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    if content == "only_notes":
        (source / "README.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no image files"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16)
    assert leftovers(tmp_path / "out") == []


def test_malformed_dataset_json_and_missing_source(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "source")
    (source / "dataset.json").write_text("{labels: oops")
    with pytest.raises(DatasetError, match=r"dataset\.json.*not valid JSON"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16)
    (source / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"dataset\.json.*not found"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16, IngestOptions(labels="dataset.json"))
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "out" / "d.zip", 16)
    with pytest.raises(DatasetError, match=r"must be a \.zip"):
        prepare_dataset(source, tmp_path / "out" / "d.tar", 16)
    assert leftovers(tmp_path / "out") == []


def test_skip_mode_reports_every_bad_file(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "source", count=6)
    (source / "b.png").write_bytes(os.urandom(64))
    (source / "c.png").write_bytes(_png_header_only(30_000, 30_000))
    save(gradient(16, 16), source / "unlabelled.png")
    write_labels(source, {"a.png": 0, "b.png": 1, "c.png": 0, "d.png": 1.5, "e.png": 0, "f.png": 1, "gone.png": 0})
    result = prepare_dataset(source, tmp_path / "d.zip", 16, IngestOptions(on_error="skip"))
    reasons = {Path(entry.path.split("[")[-1].rstrip("]")).name: entry.reason for entry in result.skipped}
    assert set(reasons) == {"b.png", "c.png", "d.png", "unlabelled.png", "gone.png"}
    assert "not an image" in reasons["b.png"] and "decompression bomb" in reasons["c.png"]
    assert "not an integer" in reasons["d.png"] and "no label" in reasons["unlabelled.png"]
    assert result.count == 3
    manifest = read_manifest(result.manifest_path)
    assert list(manifest["source_path"]) == ["a.png", "e.png", "f.png"]
    report = read_manifest_report(result.manifest_path)
    assert sorted(entry["reason"] for entry in report["skipped"]) == sorted(reasons.values())


def test_skip_mode_with_nothing_left_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "x.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="no usable images"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16, IngestOptions(on_error="skip"))
    assert leftovers(tmp_path / "out") == []


def test_failure_keeps_the_previous_good_output(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "source")
    good = prepare_dataset(source, tmp_path / "out" / "d.zip", 16)
    before = good.zip_path.read_bytes()
    (source / "c.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="c.png"):
        prepare_dataset(source, tmp_path / "out" / "d.zip", 16)
    assert good.zip_path.read_bytes() == before
    assert leftovers(tmp_path / "out") == ["d.manifest.parquet", "d.zip"]
