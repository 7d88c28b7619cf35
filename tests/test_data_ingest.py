"""Ingestion: every conversion rule, the geometry, labels, the manifest, inventory and CIFAR-10 conversion."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from data_support import gradient, labelled_folder, read_zip_images, save, write_labels

from stylegan_core.data.cifar10 import convert_cifar10
from stylegan_core.data.dataset import content_hash
from stylegan_core.data.images import process_image
from stylegan_core.data.ingest import inventory_source, prepare_dataset
from stylegan_core.data.inventory import quick_fingerprint
from stylegan_core.data.manifest import read_manifest, read_manifest_report
from stylegan_core.data.options import DatasetError, IngestOptions


def _convert(image: PIL.Image.Image, channels: int, resolution: int = 8, **options: object) -> np.ndarray:
    """Run one in-memory image through the whole per-image pipeline and decode the PNG it produces."""
    buffer = io.BytesIO()
    if image.mode == "CMYK":
        image.save(buffer, format="jpeg", quality=100)
    else:
        image.save(buffer, format="png")
    options = IngestOptions(transform="none", **options)  # type: ignore[arg-type]
    processed = process_image(buffer.getvalue(), "test", resolution, channels, options)
    assert (processed.width, processed.height, processed.channels) == (resolution, resolution, channels)
    return np.asarray(PIL.Image.open(io.BytesIO(processed.png)))


def test_rgba_is_composited_on_the_background_by_the_stated_formula() -> None:
    rgba = gradient(8, 8, channels=4)
    rgba[..., 3] = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = _convert(PIL.Image.fromarray(rgba, "RGBA"), 3, background=(10, 200, 30))
    alpha = rgba[..., 3:].astype(np.int32)
    expected = (rgba[..., :3] * alpha + np.array([10, 200, 30]) * (255 - alpha) + 127) // 255
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    kept = _convert(PIL.Image.fromarray(rgba, "RGBA"), 4)
    np.testing.assert_array_equal(kept, rgba)


def test_la_and_palette_transparency_use_the_background() -> None:
    la = np.stack([np.full((8, 8), 100, np.uint8), np.zeros((8, 8), np.uint8)], axis=-1)
    la[0, 0, 1] = 255
    out = _convert(PIL.Image.fromarray(la, "LA"), 1, background=(0, 0, 255))
    assert out[0, 0] == 100 and out[1, 1] == 29  # fully transparent → luma of pure blue (Pillow's 601 weights)
    palette = PIL.Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    out = _convert(palette, 3, background=(1, 2, 3))
    assert tuple(out[0, 0]) == (1, 2, 3) and tuple(out[4, 4]) == (0, 255, 0)


def test_palette_cmyk_bilevel_and_16_bit_grey() -> None:
    palette = PIL.Image.fromarray(gradient(8, 8)).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=16)
    np.testing.assert_array_equal(_convert(palette, 3), np.asarray(palette.convert("RGB")))
    bilevel = PIL.Image.fromarray(gradient(8, 8, channels=1)).convert("1")
    np.testing.assert_array_equal(_convert(bilevel, 1), np.asarray(bilevel.convert("L")))
    deep = np.array([[0, 257, 65535, 32896] * 2] * 8, dtype=np.uint16)
    sixteen = PIL.Image.fromarray(deep)
    assert sixteen.mode.startswith("I;16")
    out = _convert(sixteen, 1)
    np.testing.assert_array_equal(out[0, :4], [0, 1, 255, 128])
    cmyk = PIL.Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = _convert(cmyk, 3)
    assert out[..., 0].min() > 240 and out[..., 1:].max() < 15


def test_exif_orientation_is_applied() -> None:
    pixels = gradient(12, 8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="png", exif=exif)
    options = IngestOptions(transform="none")
    processed = process_image(buffer.getvalue(), "phone.png", 8, 3, options)
    assert (processed.source_width, processed.source_height) == (8, 12)
    upright = np.rot90(pixels, k=-1)
    expected = np.asarray(PIL.Image.fromarray(np.ascontiguousarray(upright)).resize((8, 8), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(io.BytesIO(processed.png))), expected)


def test_grey_center_crop_and_channel_policies(tmp_path: Path) -> None:
    save(gradient(40, 24, channels=1), tmp_path / "src" / "a.png")
    save(gradient(24, 24, channels=1, seed=3), tmp_path / "src" / "b.png")
    grey = prepare_dataset(tmp_path / "src", tmp_path / "grey.zip", 16, IngestOptions(labels="none"))
    assert grey.channels == 1
    crop = gradient(40, 24, channels=1)[:, 8:32]
    expected = np.asarray(PIL.Image.fromarray(crop).resize((16, 16), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(read_zip_images(grey.zip_path)[0], expected)
    rgb = prepare_dataset(tmp_path / "src", tmp_path / "rgb.zip", 16, IngestOptions(labels="none", channels="rgb"))
    assert rgb.channels == 3 and read_zip_images(rgb.zip_path)[0].shape == (16, 16, 3)


def test_auto_channels_with_grey_colour_and_bad_files_mixed(tmp_path: Path) -> None:
    # The header scan stops at the first colour image; bad files before it are found by the scan, those after it
    # when decoded, and both are reported alike.
    source = tmp_path / "src"
    save(gradient(16, 16, channels=1), source / "a.png")
    (source / "b.png").write_bytes(b"not an image")
    save(gradient(16, 16), source / "c.png")
    save(gradient(16, 16, channels=1, seed=2), source / "d.png")
    (source / "e.png").write_bytes(b"not an image either")
    result = prepare_dataset(source, tmp_path / "d.zip", 16, IngestOptions(labels="none", on_error="skip"))
    assert result.channels == 3 and result.count == 3
    assert sorted(Path(entry.path).name for entry in result.skipped) == ["b.png", "e.png"]
    assert all("not an image" in entry.reason for entry in result.skipped)
    assert list(read_manifest(result.manifest_path)["source_path"]) == ["a.png", "c.png", "d.png"]
    images = read_zip_images(result.zip_path)
    assert images[0].shape == (16, 16, 3)
    np.testing.assert_array_equal(images[0], np.repeat(gradient(16, 16, channels=1)[..., None], 3, axis=2))
    (source / "b.png").unlink()  # now only e.png, after the scan's stop, is bad: on_error=fail still stops on it
    with pytest.raises(DatasetError, match="e.png: not an image"):
        prepare_dataset(source, tmp_path / "out" / "fail.zip", 16, IngestOptions(labels="none"))
    assert list((tmp_path / "out").iterdir()) == []


def test_transforms_and_filters_follow_pillow(tmp_path: Path) -> None:
    wide = gradient(64, 60)
    save(wide, tmp_path / "src" / "wide.png")
    save(gradient(16, 40), tmp_path / "src" / "narrow.png")  # narrower than 32: center-crop-wide drops it
    stretched = prepare_dataset(
        tmp_path / "src", tmp_path / "s.zip", 32, IngestOptions(transform="none", resize_filter="box", labels="none")
    )
    expected = np.asarray(PIL.Image.fromarray(wide).resize((32, 32), PIL.Image.BOX))
    np.testing.assert_array_equal(read_zip_images(stretched.zip_path)[1], expected)
    letterbox = prepare_dataset(
        tmp_path / "src", tmp_path / "w.zip", 32, IngestOptions(transform="center-crop-wide", labels="none")
    )
    assert letterbox.count == 1 and "narrow.png" in letterbox.skipped[0].path
    image = read_zip_images(letterbox.zip_path)[0]
    # 4:3 at 32 → a 32x24 band in rows 4..27; NVIDIA's rule keeps the round(32 * 60 / 64) = 30 middle source rows.
    band = np.asarray(PIL.Image.fromarray(wide[15:45]).resize((32, 24), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(image[4:28], band)
    assert image[:4].max() == 0 and image[28:].max() == 0


def test_labels_from_subfolders_and_manifest_columns(tmp_path: Path) -> None:
    for index, name in enumerate(["dog/x.png", "cat/y.png", "cat/z.png", "emu/w.png"]):
        save(gradient(16, 16, seed=index), tmp_path / "src" / name)
    (tmp_path / "src" / "notes.txt").write_text("ignored")
    result = prepare_dataset(tmp_path / "src", tmp_path / "d.zip", 16, IngestOptions(labels="subfolders"))
    assert result.class_names == ("cat", "dog", "emu") and result.label_dim == 3
    manifest = read_manifest(result.manifest_path)
    assert list(manifest["source_path"]) == ["cat/y.png", "cat/z.png", "dog/x.png", "emu/w.png"]
    assert list(manifest["label"]) == [0, 0, 1, 2]
    np.testing.assert_array_equal(manifest[["l0", "l1", "l2"]].to_numpy(), np.eye(3, dtype=int)[[0, 0, 1, 2]])
    assert list(manifest["path"]) == [f"00000/img0000000{i}.png" for i in range(4)]
    with zipfile.ZipFile(result.zip_path) as archive:
        labels = json.loads(archive.read("dataset.json"))["labels"]
        assert labels == [[f"00000/img0000000{i}.png", label] for i, label in enumerate([0, 0, 1, 2])]
        hashes = [__import__("hashlib").sha256(archive.read(p)).hexdigest() for p in manifest["path"]]
    assert hashes == list(manifest["sha256"])
    report = read_manifest_report(result.manifest_path)
    assert report["content_hash"] == result.content_hash == content_hash(result.zip_path)
    assert report["ignored"] == ["notes.txt"] and report["class_names"] == ["cat", "dog", "emu"]


def test_unlabelled_dataset_and_max_images(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "src", count=5)
    result = prepare_dataset(source, tmp_path / "d.zip", 16, IngestOptions(labels="none", max_images=3))
    assert (result.count, result.label_dim) == (3, 0)
    with zipfile.ZipFile(result.zip_path) as archive:
        assert json.loads(archive.read("dataset.json")) == {"labels": None}
    manifest = read_manifest(result.manifest_path)
    assert manifest["label"].isna().all() and "l0" not in manifest
    # Labels of the images beyond max_images are not "labels for missing files".
    labelled = prepare_dataset(source, tmp_path / "l.zip", 16, IngestOptions(max_images=3))
    assert (labelled.count, labelled.label_dim) == (3, 2)


def test_zip_source_reads_like_a_folder(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "src")
    archive_path = tmp_path / "src.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for file in sorted(source.iterdir()):
            archive.write(file, file.name)
    from_folder = prepare_dataset(source, tmp_path / "a.zip", 16)
    from_zip = prepare_dataset(archive_path, tmp_path / "b.zip", 16)
    assert from_folder.content_hash == from_zip.content_hash


def test_inventory_and_fingerprints_notice_changes(tmp_path: Path) -> None:
    source = labelled_folder(tmp_path / "src")
    inventory = inventory_source(source)
    frame = inventory.frame
    assert list(frame["path"]) == ["a.png", "b.png", "c.png", "d.png"]
    assert list(frame["label"]) == [0, 1, 0, 1] and set(frame["mode"]) == {"RGB"}
    assert frame["sha256"].str.len().eq(64).all() and frame["problem"].isna().all()
    quick = quick_fingerprint(source)
    assert inventory_source(source).fingerprint == inventory.fingerprint
    save(gradient(16, 16, seed=99), source / "b.png")
    assert inventory_source(source).fingerprint != inventory.fingerprint
    assert quick_fingerprint(source) != quick
    write_labels(source, {"a.png": 1, "b.png": 1, "c.png": 0, "d.png": 1})
    assert inventory_source(source).frame["label"].tolist() == [1, 1, 0, 1]


def _cifar_batch(rng: np.random.RandomState, count: int) -> dict[str, object]:
    return {
        "data": rng.randint(0, 256, (count, 3072)).astype(np.uint8),
        "labels": [int(v) for v in rng.randint(0, 10, count)],
    }


def test_cifar10_batches_become_a_labelled_source(tmp_path: Path) -> None:
    rng = np.random.RandomState(0)
    batches = [_cifar_batch(rng, 3) for _ in range(5)]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index, batch in enumerate(batches, start=1):
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(batch, protocol=2))
    archive_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    converted = convert_cifar10(archive_path, tmp_path / "converted")
    result = prepare_dataset(converted, tmp_path / "cifar.zip", 32, IngestOptions(transform="none", num_classes=10))
    assert (result.count, result.label_dim) == (15, 10)
    images = np.stack(read_zip_images(result.zip_path))
    expected = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(images, expected)
    labels = read_manifest(result.manifest_path)["label"].tolist()
    assert labels == [int(v) for b in batches for v in b["labels"]]
    assert convert_cifar10(tmp_path, tmp_path / "from_folder").is_dir()  # the extracted folder works too


class _CallsSomething:
    """Unpickling this would call os.getcwd: any callable a hostile batch names must be refused."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getcwd, ())


def test_cifar10_refuses_pickles_that_build_anything_else(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in range(1, 6):
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps({"data": _CallsSomething(), "labels": []}))
    with pytest.raises(DatasetError, match="refusing to load"):
        convert_cifar10(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()
