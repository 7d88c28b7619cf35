"""Which shape is in each cell of a sample grid: an objective reading of "the rows are the five shape classes".

A small convolutional classifier is trained on the real images of a shapes dataset zip (the one the network trained
on), then labels every cell of a conditional sample grid (`samples-psi*.png`: row r shows class r, one cell per
column). Shape colours and backgrounds are random per image, so the classifier must use the outline; training adds
mirror images, shuffled colour channels and inverted colours so that it cannot lean on colour statistics either.

    python tests/shape_classifier.py --data shapes-16.zip --grid samples-psi1.00.png [--columns 8]

prints the held-out accuracy on reals and, per grid row, the predicted class of each cell and the share that matches
the row's class. The tests (tests/test_shape_classifier.py) pin that it reads real shapes and does not read noise.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.data.shapes import SHAPE_CLASSES  # one list of class names, in label order


@dataclass(frozen=True)
class RowReport:
    label: int
    predicted: tuple[int, ...]

    @property
    def accuracy(self) -> float:
        return sum(p == self.label for p in self.predicted) / len(self.predicted)


def load_zip(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, 3] and integer labels [N] of a dataset zip (`dataset.json` labels)."""
    with zipfile.ZipFile(path) as archive:
        labels = dict(json.loads(archive.read("dataset.json"))["labels"])
        names = sorted(labels)
        images = [np.asarray(PIL.Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names]
    return np.stack(images), np.array([labels[n] for n in names], dtype=np.int64)


def grid_cells(path: str | Path, resolution: int, columns: int) -> list[np.ndarray]:
    """The rows of a sample grid, each uint8 [columns, resolution, resolution, 3]."""
    grid = np.asarray(PIL.Image.open(path).convert("RGB"))
    rows = grid.shape[0] // resolution
    if grid.shape[1] != columns * resolution or grid.shape[0] != rows * resolution:
        raise ValueError(f"{path}: {grid.shape[1]}x{grid.shape[0]} px is not {columns} columns of {resolution} px")
    cells = grid.reshape(rows, resolution, columns, resolution, 3).transpose(0, 2, 1, 3, 4)
    return [np.ascontiguousarray(row) for row in cells]


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = x[:, torch.randperm(3, generator=generator)]
    invert = torch.rand(n, generator=generator) < 0.5
    return torch.where(invert[:, None, None, None], -x, x)


class ShapeClassifier(torch.nn.Module):
    def __init__(self, classes: int = len(SHAPE_CLASSES), width: int = 32) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1), torch.nn.ReLU(),
        )  # fmt: skip
        self.head = torch.nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


def train_classifier(images: np.ndarray, labels: np.ndarray, steps: int = 600, seed: int = 0) -> ShapeClassifier:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ShapeClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = _tensor(images), torch.from_numpy(labels)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(_augment(x[batch], generator)), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: ShapeClassifier, images: np.ndarray) -> np.ndarray:
    return model(_tensor(images)).argmax(dim=1).numpy()


def held_out_accuracy(images: np.ndarray, labels: np.ndarray, steps: int = 600) -> float:
    """Train on every image but each fifth, test on those."""
    test = np.arange(len(images)) % 5 == 4
    model = train_classifier(images[~test], labels[~test], steps)
    return float((predict(model, images[test]) == labels[test]).mean())


def read_grid(model: ShapeClassifier, grid: str | Path, resolution: int, columns: int, classes: int) -> list[RowReport]:
    """Row r of a conditional grid shows class r mod `classes`."""
    return [
        RowReport(label=r % classes, predicted=tuple(int(p) for p in predict(model, row)))
        for r, row in enumerate(grid_cells(grid, resolution, columns))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset zip the network trained on")
    parser.add_argument("--grid", required=True, nargs="+", help="conditional sample grid(s), one row per class")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, labels = load_zip(args.data)
    print(f"held-out accuracy on reals (4/5 train, 1/5 test): {held_out_accuracy(images, labels, args.steps):.3f}")
    model = train_classifier(images, labels, args.steps)
    for grid in args.grid:
        rows = read_grid(model, grid, images.shape[1], args.columns, len(SHAPE_CLASSES))
        print(grid)
        for row in rows if len(rows) <= len(SHAPE_CLASSES) * 2 else []:
            cells = " ".join(f"{SHAPE_CLASSES[p]:8s}" for p in row.predicted)
            print(f"  row {SHAPE_CLASSES[row.label]:8s} {row.accuracy:5.2f}  {cells}")
        for label, name in enumerate(SHAPE_CLASSES):
            cells = [p for row in rows if row.label == label for p in row.predicted]
            if cells:
                print(f"  class {name:8s} {sum(p == label for p in cells)}/{len(cells)} cells read as {name}")
        total = sum(sum(p == row.label for p in row.predicted) for row in rows)
        print(f"  all cells: {total}/{sum(len(row.predicted) for row in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
