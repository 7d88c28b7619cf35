"""The procedural shapes set: pinned pixels, correct geometry per class, the source folder it writes."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.options import DatasetError, IngestOptions
from stylegan_core.data.shapes import SHAPE_CLASSES, ShapesSettings, _coverage, generate_shapes, render_shape_image

# sha256 of the raw pixels of images 0..9 at 128 px, seed 0. Drawing uses only exactly rounded float operations and
# RandomState's frozen streams, so this holds on every machine; a change here changes the demo dataset for everyone.
GOLDEN_FIRST_TEN = "7f131dff59bc0b46f920ce0bdd2a84eb4dee6a73b017d7267f6e0b76d82395e5"

# Areas in units of radius^2: circle pi; ring pi(1 - 1/4); square of half-side 0.7 (1.4^2); equilateral triangle
# with circumradius 1 (3 sqrt(3) / 4); plus of two 2 x 0.6 bars crossing in a 0.6 x 0.6 square (2 * 1.2 - 0.36).
EXPECTED_AREA = {
    "circle": math.pi,
    "plus": 2 * (2 * 0.6) - 0.6 * 0.6,
    "ring": math.pi * 0.75,
    "square": 1.96,
    "triangle": 3 * math.sqrt(3) / 4,
}


def test_pixels_are_pinned() -> None:
    digest = hashlib.sha256()
    for index in range(10):
        image, label = render_shape_image(index, 128, 0)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert label == index % len(SHAPE_CLASSES)
        digest.update(image.tobytes())
    assert digest.hexdigest() == GOLDEN_FIRST_TEN


def test_images_depend_on_seed_and_index_only() -> None:
    a, _ = render_shape_image(7, 64, seed=1)
    b, _ = render_shape_image(7, 64, seed=1)
    c, _ = render_shape_image(7, 64, seed=2)
    d, _ = render_shape_image(8, 64, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)


@pytest.mark.parametrize("shape", SHAPE_CLASSES)
def test_each_class_has_its_geometric_area_at_any_rotation(shape: str) -> None:
    radius = 40.0
    for rotation in [(1.0, 0.0), (0.6, 0.8), ((1 - 0.09) / 1.09, 0.6 / 1.09)]:
        _box, coverage = _coverage(shape, 128, np.array([64.0, 64.0]), radius, rotation)
        area = coverage.sum() / radius**2
        assert area == pytest.approx(EXPECTED_AREA[shape], rel=0.005), (shape, rotation)
        assert coverage.min() >= 0 and coverage.max() == 1


def test_generated_folder_is_a_labelled_source_and_is_reused(tmp_path: Path) -> None:
    settings = ShapesSettings(count=10, size=32, seed=0)
    folder = generate_shapes(tmp_path / "shapes", settings, workers=1)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert files == sorted(f"{SHAPE_CLASSES[i % 5]}/{i:05d}.png" for i in range(10))
    stamp = (folder / "circle" / "00000.png").stat().st_mtime_ns
    assert generate_shapes(tmp_path / "shapes", settings) == folder
    assert (folder / "circle" / "00000.png").stat().st_mtime_ns == stamp  # same settings: not redrawn
    generate_shapes(tmp_path / "shapes", ShapesSettings(count=5, size=32), workers=1)
    assert len(list(folder.rglob("*.png"))) == 5
    result = prepare_dataset(folder, tmp_path / "shapes.zip", 16, IngestOptions(labels="subfolders"))
    assert result.class_names == SHAPE_CLASSES and result.count == 5 and result.channels == 3
    assert [item.path for item in result.skipped] == []


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DatasetError, match="not a generated shapes folder"):
        generate_shapes(tmp_path / "photos", ShapesSettings(count=5, size=32))
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"precious"
