"""Image grids as NVIDIA's training loop writes them (reals.png, fakes*.png), plus sample grids with truncation.

Layout: `grid_size = (columns, rows)`; image i goes to row i // columns, column i % columns. NVIDIA's default fills
about an 8K canvas: columns = clip(7680 // W, 7, 32), rows = clip(4320 // H, 4, 32). Conditional grids show one
class per row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from numpy.typing import ArrayLike

from stylegan_core.export.seeds import seeds_to_z
from stylegan_core.io.atomic import atomic_file

DEFAULT_NOISE_MODE = "const"
"""Noise for grids and exported samples (NVIDIA's fakes*.png and generate.py use 'const')."""


def default_grid_size(height: int, width: int | None = None) -> tuple[int, int]:
    """NVIDIA's (columns, rows) for images of height x width: about a 7680x4320 canvas, 7-32 columns, 4-32 rows."""
    width = height if width is None else width
    return int(np.clip(7680 // width, 7, 32)), int(np.clip(4320 // height, 4, 32))


def save_image_grid(
    images: ArrayLike | torch.Tensor,
    path: str | os.PathLike[str],
    drange: Sequence[float],
    grid_size: tuple[int, int],
) -> Path:
    """Write images [N, C, H, W] (values in `drange`, C = 1 or 3) as one PNG of (columns, rows), atomically.

    Pixels are mapped to [0, 255] and rounded to nearest, as NVIDIA's ``save_image_grid``.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    pixels = np.asarray(images, dtype=np.float32)
    low, high = (float(value) for value in drange)
    columns, rows = (int(value) for value in grid_size)
    if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"save_image_grid: expected images [N, 1 or 3, H, W], got shape {list(pixels.shape)}")
    if not high > low:
        raise ValueError(f"save_image_grid: drange must be (low, high) with low < high, got {tuple(drange)}")
    if columns < 1 or rows < 1 or columns * rows != len(pixels):
        raise ValueError(f"save_image_grid: grid_size {columns}x{rows} does not hold {len(pixels)} images")
    pixels = np.rint((pixels - low) * (255 / (high - low))).clip(0, 255).astype(np.uint8)
    _, channels, height, width = pixels.shape
    canvas = pixels.reshape(rows, columns, channels, height, width).transpose(0, 3, 1, 4, 2)
    canvas = canvas.reshape(rows * height, columns * width, channels)
    image = PIL.Image.fromarray(canvas[:, :, 0], "L") if channels == 1 else PIL.Image.fromarray(canvas, "RGB")
    return save_png(image, path)


def save_png(image: PIL.Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save a PNG to a temporary file in the same folder, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        image.save(file, format="PNG")
    return path


def setup_snapshot_image_grid(
    dataset, seed: int = 0, grid_size: tuple[int, int] | None = None
) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """NVIDIA's choice of real images for reals.png: ((columns, rows), uint8 images [N, C, H, W], labels [N, L]).

    Unlabelled: a seeded random sample (repeating when the dataset is smaller than the grid). Labelled: one label
    per row, labels in sorted order (cycling when there are more rows than labels), each row a seeded shuffle of
    that label's images. `dataset` is an ImageDataset (`len`, `ds[i]`, `get_label`, `has_labels`, `image_shape`).
    """
    columns, rows = grid_size if grid_size is not None else default_grid_size(*dataset.image_shape[1:])
    rng = np.random.RandomState(seed)
    if not dataset.has_labels:
        order = list(range(len(dataset)))
        rng.shuffle(order)
        indices = [order[i % len(order)] for i in range(columns * rows)]
    else:
        indices = _rows_by_label(dataset, columns, rows, rng)
    loaded = {index: dataset[index] for index in set(indices)}  # small datasets repeat images in the grid
    images = np.stack([loaded[index][0] for index in indices])
    labels = np.stack([loaded[index][1] for index in indices])
    return (columns, rows), images, labels


def _rows_by_label(dataset, columns: int, rows: int, rng: np.random.RandomState) -> list[int]:
    groups: dict[tuple[float, ...], list[int]] = {}
    for index in range(len(dataset)):
        # Sorting the reversed label vector orders one-hot labels by class index, as NVIDIA does.
        key = tuple(np.asarray(dataset.get_label(index)).ravel()[::-1].tolist())
        groups.setdefault(key, []).append(index)
    order = sorted(groups)
    for key in order:
        rng.shuffle(groups[key])
    indices: list[int] = []
    for row in range(rows):
        key = order[row % len(order)]
        members = groups[key]
        indices += [members[column % len(members)] for column in range(columns)]
        groups[key] = members[columns % len(members) :] + members[: columns % len(members)]  # next row continues
    return indices


def class_row_labels(c_dim: int, grid_size: tuple[int, int]) -> np.ndarray:
    """One-hot labels [columns * rows, c_dim] with class (row % c_dim) in every row; zero-width if unconditional."""
    columns, rows = grid_size
    labels = np.zeros([columns * rows, c_dim], dtype=np.float32)
    if c_dim > 0:
        labels[np.arange(columns * rows), (np.arange(columns * rows) // columns) % c_dim] = 1
    return labels


@torch.no_grad()
def sample_grid(
    G: torch.nn.Module,
    seeds: Sequence[int] | None = None,
    grid_z: torch.Tensor | None = None,
    labels: ArrayLike | torch.Tensor | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = DEFAULT_NOISE_MODE,
    *,
    truncation_cutoff: int | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """G's images [N, C, H, W] (float32, CPU, about [-1, 1]) for `seeds` (NVIDIA's z per seed) or explicit `grid_z`.

    `labels` [N, c_dim]: for a conditional G they are required (``class_row_labels`` gives rows per class).
    """
    device = next(G.parameters()).device
    if (seeds is None) == (grid_z is None):
        raise ValueError("sample_grid: give exactly one of seeds or grid_z")
    z = seeds_to_z(seeds, G.z_dim) if seeds is not None else torch.as_tensor(grid_z, dtype=torch.float32)
    if labels is None:
        if G.c_dim != 0:
            raise ValueError(f"sample_grid: the generator is conditional (c_dim={G.c_dim}); labels are required")
        labels = torch.zeros([len(z), 0])
    c = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(len(z), G.c_dim)
    images = []
    for z_batch, c_batch in zip(z.split(batch_size), c.split(batch_size), strict=True):
        out = G(z_batch.to(device), c_batch.to(device), truncation_psi=truncation_psi,
                truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)  # fmt: skip
        images.append(out.float().cpu())
    return torch.cat(images)


def write_sample_grids(
    G: torch.nn.Module,
    outdir: str | os.PathLike[str],
    grid_size: tuple[int, int],
    *,
    first_seed: int = 0,
    truncation_psis: Sequence[float] = (1.0,),
    noise_mode: str = DEFAULT_NOISE_MODE,
) -> list[Path]:
    """One grid PNG per ψ (`samples-psi<ψ:.2f>.png`), the same seeds in each, rows per class when conditional."""
    columns, rows = grid_size
    seeds = range(first_seed, first_seed + columns * rows)
    labels = class_row_labels(G.c_dim, grid_size) if G.c_dim else None
    paths = []
    for psi in truncation_psis:
        images = sample_grid(G, seeds=seeds, labels=labels, truncation_psi=psi, noise_mode=noise_mode)
        paths.append(save_image_grid(images, Path(outdir) / f"samples-psi{psi:.2f}.png", (-1, 1), grid_size))
    return paths
