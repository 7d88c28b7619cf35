"""Compatibility with NVIDIA's dataset_tool and reader (tests/fixtures/reference, README section 4), determinism."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_support import extract_reference_sources, read_zip_images

from stylegan_core.data import parallel
from stylegan_core.data.dataset import ImageDataset, content_hash
from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.options import IngestOptions


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_reference_sources(tmp_path_factory.mktemp("sources"))


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_rgb_center_crop_matches_nvidia_byte_for_byte(sources: Path, tmp_path: Path, reference_dir: Path) -> None:
    result = prepare_dataset(sources / "rgb", tmp_path / "ours.zip", 32, IngestOptions(transform="center-crop"))
    ours, theirs = _entries(result.zip_path), _entries(reference_dir / "ada_dataset_32.zip")
    assert list(ours) == list(theirs)  # same names, same order, dataset.json last
    for name in theirs:
        assert ours[name] == theirs[name], name
    # Identical entry bytes → identical content hash, whatever the zip timestamps.
    assert result.content_hash == content_hash(reference_dir / "ada_dataset_32.zip")


def test_grey_without_transform_matches_nvidia(sources: Path, tmp_path: Path, reference_dir: Path) -> None:
    result = prepare_dataset(sources / "gray", tmp_path / "grey.zip", 32, IngestOptions(transform="none"))
    assert result.channels == 1
    assert _entries(result.zip_path) == _entries(reference_dir / "ada_dataset_gray_32.zip")


def test_zip_layout_is_nvidias(sources: Path, tmp_path: Path, reference_dir: Path) -> None:
    result = prepare_dataset(sources / "rgb", tmp_path / "ours.zip", 32)
    runs = json.loads((reference_dir / "dataset_tool_runs.json").read_text())
    with zipfile.ZipFile(result.zip_path) as archive:
        infos = archive.infolist()
        layout = [[info.filename, info.compress_type, info.file_size] for info in infos]
        assert layout == runs["zip_layouts"]["ada_dataset_32.zip"]["entries"]
        assert archive.read("dataset.json").decode() == runs["zip_layouts"]["ada_dataset_32.zip"]["dataset_json"]
        assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_mixed_grey_and_colour_with_center_crop_works(sources: Path, tmp_path: Path, reference_dir: Path) -> None:
    # NVIDIA's tool crashes on this source after the 8 RGB files (README section 4); ours makes 12 RGB images whose
    # first 8 are exactly NVIDIA's RGB output and whose grey ones are the grey pictures repeated in R, G and B.
    result = prepare_dataset(sources / "mixed", tmp_path / "mixed.zip", 32)
    assert (result.count, result.channels, result.label_dim) == (12, 3, 5)
    images = read_zip_images(result.zip_path)
    nvidia_rgb = read_zip_images(reference_dir / "ada_dataset_32.zip")
    for ours, theirs in zip(images[:8], nvidia_rgb, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for grey in images[8:]:
        assert grey.shape == (32, 32, 3)
        np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    grey_only = prepare_dataset(sources / "mixed", tmp_path / "g.zip", 32, IngestOptions(channels="grey"))
    assert grey_only.channels == 1 and read_zip_images(grey_only.zip_path)[0].ndim == 2


def test_two_runs_give_identical_bytes_also_in_parallel(
    sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = IngestOptions(transform="center-crop")
    serial = prepare_dataset(sources / "mixed", tmp_path / "a.zip", 16, options, workers=1)
    again = prepare_dataset(sources / "mixed", tmp_path / "b.zip", 16, options, workers=1)
    # Tiny sources run in-process; a pool needs at least 32 images per worker.
    many = tmp_path / "many"
    for copy in range(6):
        for file in (sources / "mixed").glob("*.*g"):
            (many / f"c{copy}").mkdir(parents=True, exist_ok=True)
            (many / f"c{copy}" / file.name).write_bytes(file.read_bytes())
    pools = []

    class CountingExecutor(parallel.ProcessPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", CountingExecutor)
    pooled = prepare_dataset(many, tmp_path / "p1.zip", 16, IngestOptions(labels="none"), workers=2)
    assert len(pools) == 1 and pools[0][0] == 2  # the images really went through a 2-process pool
    single = prepare_dataset(many, tmp_path / "p2.zip", 16, IngestOptions(labels="none"), workers=1)

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(serial.zip_path) == digest(again.zip_path)
    assert digest(pooled.zip_path) == digest(single.zip_path)
    assert pooled.count == 72


def test_nvidia_zips_read_as_nvidias_reader_did(reference_dir: Path) -> None:
    loaded = np.load(reference_dir / "ada_dataset_loaded.npz", allow_pickle=False)
    runs = json.loads((reference_dir / "dataset_tool_runs.json").read_text())["loaded"]
    for name in ("ada_dataset_32", "ada_dataset_gray_32"):
        dataset = ImageDataset(reference_dir / f"{name}.zip", use_labels=True)
        expected = runs[name]
        assert (len(dataset), list(dataset.image_shape), list(dataset.label_shape)) == (
            expected["len"],
            expected["image_shape"],
            expected["label_shape"],
        )
        assert dataset.image_names == expected["image_fnames"]
        assert dataset.resolution == expected["resolution"] and dataset.has_labels and dataset.has_onehot_labels
        images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
        np.testing.assert_array_equal(np.stack(images), loaded[f"{name}/images"])
        np.testing.assert_array_equal(np.stack(labels), loaded[f"{name}/labels_onehot"])

        mirrored = ImageDataset(reference_dir / f"{name}.zip", use_labels=True, xflip=True)
        np.testing.assert_array_equal(mirrored.raw_indices, loaded[f"{name}/xflip_order_raw_idx"])
        np.testing.assert_array_equal(mirrored.xflip_flags, loaded[f"{name}/xflip_order_flag"])
        np.testing.assert_array_equal(mirrored[len(mirrored) - 1][0], loaded[f"{name}/xflip_last_image"])

        subset = ImageDataset(reference_dir / f"{name}.zip", max_size=5, random_seed=0)
        np.testing.assert_array_equal(subset.raw_indices, loaded[f"{name}/max_size5_seed0_raw_idx"])
