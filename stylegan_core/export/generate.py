"""Images for chosen seeds, as NVIDIA's generate.py makes them (same network + seeds -> same images).

Per seed: z = RandomState(seed).randn(1, z_dim), label one-hot `class_idx` (conditional networks), one image per
call, then ``(img * 127.5 + 128).clamp(0, 255).to(uint8)`` (truncating, not rounding) and ``seed%04d.png``.
Differences: grey networks are written as grey PNGs (NVIDIA forces RGB and fails), and ``noise_mode='random'``
seeds torch's RNG with the image seed, so that mode is repeatable too (NVIDIA's is not).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.export.grid import DEFAULT_NOISE_MODE, save_image_grid, save_png
from stylegan_core.export.seeds import seeds_to_z

DEFAULT_TRUNCATION_PSI = 1.0
NOISE_MODES = ("const", "random", "none")


def class_label(G: torch.nn.Module, class_idx: int | None) -> torch.Tensor:
    """[1, c_dim] one-hot label for `class_idx`; conditional networks require it, unconditional ones ignore it."""
    label = torch.zeros([1, G.c_dim])
    if G.c_dim == 0:
        if class_idx is not None:
            warnings.warn(f"class {class_idx} ignored: the network is unconditional", stacklevel=2)
        return label
    if class_idx is None:
        raise ValueError(f"the network is conditional ({G.c_dim} classes): choose a class (--class 0..{G.c_dim - 1})")
    if not 0 <= class_idx < G.c_dim:
        raise ValueError(f"class {class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    label[0, class_idx] = 1
    return label


@torch.no_grad()
def generate_images(
    G: torch.nn.Module,
    seeds: Sequence[int],
    *,
    truncation_psi: float = DEFAULT_TRUNCATION_PSI,
    class_idx: int | None = None,
    noise_mode: str = DEFAULT_NOISE_MODE,
) -> Iterator[tuple[int, np.ndarray]]:
    """(seed, uint8 image [H, W, C]) for each seed, one network call per image as NVIDIA's generate.py."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    device = next(G.parameters()).device
    label = class_label(G, class_idx).to(device)
    for seed in seeds:
        z = seeds_to_z([seed], G.z_dim).to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # only used by noise_mode='random'
            image = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
        pixels = (image.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        yield seed, pixels[0].cpu().numpy()


def write_seed_images(
    G: torch.nn.Module,
    seeds: Sequence[int],
    outdir: str | os.PathLike[str],
    *,
    truncation_psi: float = DEFAULT_TRUNCATION_PSI,
    class_idx: int | None = None,
    noise_mode: str = DEFAULT_NOISE_MODE,
) -> list[Path]:
    """`outdir/seed%04d.png` for each seed, made by `generate_images`."""
    options = dict(truncation_psi=truncation_psi, class_idx=class_idx, noise_mode=noise_mode)
    paths = []
    for seed, pixels in generate_images(G, seeds, **options):
        image = (
            PIL.Image.fromarray(pixels[:, :, 0], "L") if pixels.shape[2] == 1 else PIL.Image.fromarray(pixels, "RGB")
        )
        paths.append(save_png(image, Path(outdir) / f"seed{seed:04d}.png"))
    return paths


def write_seed_grid(
    G: torch.nn.Module,
    seeds: Sequence[int],
    path: str | os.PathLike[str],
    grid_size: tuple[int, int] | None = None,
    *,
    truncation_psi: float = DEFAULT_TRUNCATION_PSI,
    class_idx: int | None = None,
    noise_mode: str = DEFAULT_NOISE_MODE,
) -> Path:
    """The same images as `write_seed_images`, in one PNG; unused grid cells stay black.

    Default layout: ceil(sqrt(N)) columns and as many rows as needed.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("write_seed_grid: no seeds given")
    if grid_size is None:
        columns = math.ceil(math.sqrt(len(seeds)))
        grid_size = (columns, math.ceil(len(seeds) / columns))
    columns, rows = grid_size
    if columns * rows < len(seeds):
        raise ValueError(f"grid {columns}x{rows} has room for {columns * rows} images, not {len(seeds)}")
    options = dict(truncation_psi=truncation_psi, class_idx=class_idx, noise_mode=noise_mode)
    images = [pixels.transpose(2, 0, 1) for _, pixels in generate_images(G, seeds, **options)]
    blank = np.zeros_like(images[0])
    images += [blank] * (columns * rows - len(images))
    return save_image_grid(np.stack(images), path, (0, 255), grid_size)
