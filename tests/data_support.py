"""Helpers for the data tests: reference sources on disk, small images in any Pillow mode, listing outputs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image

REFERENCE = Path(__file__).parent / "fixtures" / "reference"


def extract_reference_sources(folder: Path) -> Path:
    """source_images.zip → folder/{mixed,rgb,gray}/ (each with its dataset.json)."""
    with zipfile.ZipFile(REFERENCE / "source_images.zip") as archive:
        archive.extractall(folder)
    return folder


def gradient(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 test picture [H, W, C] (or [H, W] for one channel) with structure in both axes."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // max(width - 1, 1) + rng.randint(0, 40)) % 256, (y * 255 // max(height - 1, 1)) % 256]
    planes.append((planes[0] // 2 + planes[1] // 2 + rng.randint(0, 60)) % 256)
    planes.append(np.full_like(x, 200))
    array = np.stack(planes[:channels], axis=-1).astype(np.uint8)
    return array[:, :, 0] if channels == 1 else array


def save(image: PIL.Image.Image | np.ndarray, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = PIL.Image.fromarray(image)
    image.save(path, **kwargs)
    return path


def write_labels(folder: Path, labels: dict[str, object] | None) -> None:
    entries = None if labels is None else [[name, label] for name, label in labels.items()]
    (folder / "dataset.json").write_text(json.dumps({"labels": entries}))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def read_zip_images(path: Path) -> list[np.ndarray]:
    """Every PNG of a dataset zip, decoded, in entry order."""
    with zipfile.ZipFile(path) as archive:
        return [
            np.asarray(PIL.Image.open(io.BytesIO(archive.read(name))))
            for name in archive.namelist()
            if name.endswith(".png")
        ]


def labelled_folder(folder: Path, count: int = 4, size: int = 16) -> Path:
    """count RGB images a.png, b.png... with labels 0, 1, 0, 1... in dataset.json."""
    labels = {}
    for index in range(count):
        name = f"{chr(ord('a') + index)}.png"
        save(gradient(size, size, seed=index), folder / name)
        labels[name] = index % 2
    write_labels(folder, labels)
    return folder


def leftovers(folder: Path) -> list[str]:
    """Every file in an output folder (used to prove that a failed ingestion left nothing behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
