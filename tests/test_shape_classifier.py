"""The grid reader behind the demo's "rows are the five shape classes" claim reads real shapes and not noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from shape_classifier import SHAPE_CLASSES, held_out_accuracy, load_zip, read_grid, train_classifier

from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.options import IngestOptions
from stylegan_core.data.shapes import ShapesSettings, generate_shapes

COLUMNS = 4


@pytest.fixture(scope="module")
def reals(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """150 shapes drawn at 64 px and ingested at 16 px, as the demo's dataset is (128 px → 16 px)."""
    root = tmp_path_factory.mktemp("shapes")
    folder = generate_shapes(root / "src", ShapesSettings(count=150, size=64, seed=3), workers=1)
    options = IngestOptions(labels="subfolders", transform="center-crop", resize_filter="lanczos")
    prepare_dataset(folder, root / "shapes.zip", 16, options, workers=1)
    return load_zip(root / "shapes.zip")


def _grid(path: Path, rows: list[np.ndarray]) -> Path:
    image = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    PIL.Image.fromarray(image).save(path)
    return path


def test_it_classifies_held_out_real_shapes(reals) -> None:
    torch.set_num_threads(1)
    images, labels = reals
    assert sorted(set(labels.tolist())) == list(range(len(SHAPE_CLASSES)))
    assert held_out_accuracy(images, labels, steps=300) >= 0.9


def test_grid_rows_of_reals_read_as_their_class_and_noise_does_not(reals, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    images, labels = reals
    test = np.arange(len(images)) % 3 == 2  # cells the classifier never saw
    model = train_classifier(images[~test], labels[~test], steps=300)
    held_images, held_labels = images[test], labels[test]
    rows = [held_images[held_labels == label][:COLUMNS] for label in range(len(SHAPE_CLASSES))]

    good = read_grid(model, _grid(tmp_path / "good.png", rows), 16, COLUMNS, len(SHAPE_CLASSES))
    assert [row.label for row in good] == list(range(5))
    assert np.mean([row.accuracy for row in good]) >= 0.85

    swapped = read_grid(model, _grid(tmp_path / "swapped.png", rows[1:] + rows[:1]), 16, COLUMNS, 5)
    assert np.mean([row.accuracy for row in swapped]) <= 0.2  # rows of the wrong class

    noise = np.random.default_rng(0).integers(0, 256, size=(5, COLUMNS, 16, 16, 3), dtype=np.uint8)
    read = read_grid(model, _grid(tmp_path / "noise.png", list(noise)), 16, COLUMNS, 5)
    assert np.mean([row.accuracy for row in read]) <= 0.4  # no better than a guess or two

    with pytest.raises(ValueError, match="not 3 columns of 16 px"):
        read_grid(model, tmp_path / "good.png", 16, 3, 5)
