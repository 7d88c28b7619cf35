"""The training reader ImageDataset: folders, labels, subsets, x-flip, content hash, pickling, clear errors."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from data_support import gradient, save

from stylegan_core.data.dataset import ImageDataset, content_hash
from stylegan_core.data.options import DatasetError


def _write_dataset(folder: Path, count: int = 6, size: int = 8, labels: list[object] | None = None) -> Path:
    names = []
    for index in range(count):
        name = f"00000/img{index:08d}.png"
        save(gradient(size, size, seed=index), folder / name)
        names.append(name)
    entries = None if labels is None else [[n, label] for n, label in zip(names, labels, strict=True)]
    (folder / "dataset.json").write_text(json.dumps({"labels": entries}))
    return folder


def _zip_folder(
    folder: Path, path: Path, compression: int = zipfile.ZIP_STORED, stamp: tuple = (2020, 5, 5, 0, 0, 0)
) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=stamp)
                archive.writestr(info, file.read_bytes(), compress_type=compression)
    return path


def test_folder_and_zip_read_the_same(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "ds", labels=[0, 2, 1, 2, 0, 0])
    archive = _zip_folder(folder, tmp_path / "ds.zip")
    a, b = ImageDataset(folder, use_labels=True), ImageDataset(archive, use_labels=True)
    assert (len(a), a.image_shape, a.label_dim, a.name, b.name) == (6, (3, 8, 8), 3, "ds", "ds")
    for index in range(6):
        np.testing.assert_array_equal(a[index][0], b[index][0])
        np.testing.assert_array_equal(a[index][1], b[index][1])
    image, label = a[1]
    np.testing.assert_array_equal(image, gradient(8, 8, seed=1).transpose(2, 0, 1))
    np.testing.assert_array_equal(label, [0, 0, 1])
    assert image.dtype == np.uint8 and label.dtype == np.float32
    assert a.content_hash == b.content_hash == content_hash(folder)


def test_labels_off_subset_xflip_and_distribution(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "ds", count=10, labels=[0, 1, 1, 1, 0, 2, 1, 1, 0, 1])
    plain = ImageDataset(folder)
    assert plain.label_dim == 0 and not plain.has_labels and plain[0][1].shape == (0,)
    subset = ImageDataset(folder, use_labels=True, max_size=4, xflip=True, random_seed=3)
    order = np.arange(10)
    np.random.RandomState(3).shuffle(order)
    kept = np.sort(order[:4])
    np.testing.assert_array_equal(subset.raw_indices, np.concatenate([kept, kept]))
    assert len(subset) == 8
    np.testing.assert_array_equal(subset[5][0], plain[int(kept[1])][0][:, :, ::-1])
    full = ImageDataset(folder, use_labels=True)
    np.testing.assert_allclose(full.label_distribution(), [0.3, 0.6, 0.1])
    assert plain.label_distribution().shape == (0,)


def test_float_label_vectors_are_used_as_they_are(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "ds", count=3, labels=[[0.5, 1.0], [0.0, 0.25], [1.0, 1.0]])
    dataset = ImageDataset(folder, use_labels=True)
    assert dataset.label_shape == (2,) and not dataset.has_onehot_labels
    np.testing.assert_array_equal(dataset[1][1], np.array([0.0, 0.25], np.float32))


def test_content_hash_ignores_timestamps_compression_and_path(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "ds", labels=[0, 1, 0, 1, 0, 1])
    stored = _zip_folder(folder, tmp_path / "a.zip")
    deflated = _zip_folder(folder, tmp_path / "elsewhere.zip", zipfile.ZIP_DEFLATED, (1999, 1, 1, 1, 1, 1))
    assert content_hash(stored) == content_hash(deflated) == content_hash(folder)
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f"00000/img{i:08d}.png", 1] for i in range(6)]}))
    assert content_hash(folder) != content_hash(stored)


def test_pickling_drops_the_zip_handle_and_reopens_per_process(tmp_path: Path) -> None:
    archive = _zip_folder(_write_dataset(tmp_path / "ds"), tmp_path / "ds.zip")
    dataset = ImageDataset(archive)
    first = dataset[0][0]
    assert "_handle" in dataset._files.__dict__
    clone = pickle.loads(pickle.dumps(dataset))
    assert "_handle" not in clone._files.__dict__
    np.testing.assert_array_equal(clone[0][0], first)
    handle = dataset._files.__dict__["_handle"]
    dataset._files.__dict__["_handle_pid"] = -1  # as seen from a forked worker: the parent's handle is not reused
    np.testing.assert_array_equal(dataset[2][0], clone[2][0])
    assert dataset._files.__dict__["_handle"] is not handle


def test_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    folder = _write_dataset(tmp_path / "ds", labels=[0, 1, 0, 1, 0, 1])
    with pytest.raises(DatasetError, match="not 16x16"):
        ImageDataset(folder, resolution=16)
    save(gradient(4, 4), folder / "00000" / "img00000003.png")
    # Found when the dataset opens (from the PNG header), not when the image is first drawn (issue 13).
    with pytest.raises(DatasetError, match=r"img00000003\.png: image is 4x4 with 3 channel\(s\), but the dataset's "
                       r"images are 8x8 with 3"):  # fmt: skip
        ImageDataset(folder)
    save(gradient(8, 8), folder / "00000" / "img00000003.png")
    (folder / "dataset.json").write_text(json.dumps({"labels": [["00000/img00000000.png", 1]]}))
    with pytest.raises(DatasetError, match=r"dataset\.json: no label for 00000/img00000001\.png"):
        ImageDataset(folder, use_labels=True)
    wide = tmp_path / "wide"
    save(gradient(8, 4), wide / "a.png")
    with pytest.raises(DatasetError, match="square"):
        _ = ImageDataset(wide).resolution
    palette = tmp_path / "palette"
    save(PIL.Image.new("P", (8, 8)), palette / "a.png")
    with pytest.raises(DatasetError, match="mode P"):
        ImageDataset(palette)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        ImageDataset(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="folder or a .zip"):
        ImageDataset(tmp_path / "notes.txt")
    broken = tmp_path / "broken"
    (broken / "a.png").parent.mkdir()
    (broken / "a.png").write_bytes(io.BytesIO(b"junk").getvalue())
    with pytest.raises(DatasetError, match=r"a\.png: cannot decode"):
        ImageDataset(broken)
