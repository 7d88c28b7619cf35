"""Style-mixing matrix, with the conventions of NVIDIA's style_mixing.py (same network + seeds -> same pixels).

Every seed gets w = mapping(RandomState(seed).randn(z_dim)), truncated towards ``w_avg`` on all layers. The image
in row r, column c uses row r's ws with the ws at the chosen style indices taken from column c's seed. Files:
``<row>-<col>.png`` per mixed image, ``<seed>-<seed>.png`` per unmixed seed, and ``grid.png``: an empty (black)
top-left cell, the column seeds' own images along the top, the row seeds' own images down the left.
Pixels are ``(x * 127.5 + 128).clamp(0, 255)`` truncated to uint8, as NVIDIA's. Differences: grey networks are
written as grey PNGs (NVIDIA forces RGB), conditional networks take a class, and noise_mode='random' draws from a
fixed torch seed so it is repeatable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.errors import UsageError
from stylegan_core.export.generate import class_label
from stylegan_core.export.grid import DEFAULT_NOISE_MODE, save_png
from stylegan_core.export.seeds import seeds_to_z

DEFAULT_STYLES = tuple(range(7))
"""NVIDIA's default --styles 0-6: the coarse and middle layers come from the column seed."""


def check_styles(styles: Sequence[int], num_ws: int) -> list[int]:
    """The style indices as a list, each within the network's 0..num_ws-1."""
    styles = [int(index) for index in styles]
    if not styles:
        raise UsageError("style mixing: no style indices given")
    bad = [index for index in styles if not 0 <= index < num_ws]
    if bad:
        raise UsageError(f"style indices {bad} are out of range: the network has ws 0..{num_ws - 1}")
    return styles


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] floats about [-1, 1] -> uint8 [N, H, W, C], truncating as NVIDIA's scripts do."""
    return (images.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def seed_ws(
    G: torch.nn.Module, seeds: Sequence[int], truncation_psi: float, class_idx: int | None = None
) -> dict[int, torch.Tensor]:
    """{seed: ws [num_ws, w_dim]} for each distinct seed, truncated on every layer towards w_avg."""
    unique = list(dict.fromkeys(int(seed) for seed in seeds))
    device = next(G.parameters()).device
    z = seeds_to_z(unique, G.z_dim).to(device)
    c = class_label(G, class_idx).to(device).repeat(len(unique), 1)
    ws = G.mapping(z, c, truncation_psi=truncation_psi)
    return dict(zip(unique, ws, strict=True))


@torch.no_grad()
def style_mix_images(
    G: torch.nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    styles: Sequence[int] = DEFAULT_STYLES,
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = DEFAULT_NOISE_MODE,
    class_idx: int | None = None,
) -> dict[tuple[int, int], np.ndarray]:
    """{(row_seed, col_seed): uint8 [H, W, C]}; (seed, seed) keys hold each seed's own, unmixed image."""
    styles = check_styles(styles, G.num_ws)
    if not row_seeds or not col_seeds:
        raise UsageError("style mixing: give at least one row seed and one column seed")
    ws = seed_ws(G, list(row_seeds) + list(col_seeds), truncation_psi, class_idx)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # only noise_mode='random' draws
        own = to_uint8(G.synthesis(torch.stack(list(ws.values())), noise_mode=noise_mode))
        images = {(seed, seed): image for seed, image in zip(ws, own, strict=True)}
        for row in row_seeds:
            for col in col_seeds:
                mixed = ws[row].clone()
                mixed[styles] = ws[col][styles]
                images[(row, col)] = to_uint8(G.synthesis(mixed[None], noise_mode=noise_mode))[0]
    return images


def mixing_canvas(
    images: dict[tuple[int, int], np.ndarray], row_seeds: Sequence[int], col_seeds: Sequence[int]
) -> np.ndarray:
    """uint8 [(rows+1)*H, (cols+1)*W, C]: black corner, column seeds on top, row seeds on the left, mixes inside."""
    height, width, channels = next(iter(images.values())).shape
    canvas = np.zeros([(len(row_seeds) + 1) * height, (len(col_seeds) + 1) * width, channels], dtype=np.uint8)

    def paste(image: np.ndarray, row: int, col: int) -> None:
        canvas[row * height : (row + 1) * height, col * width : (col + 1) * width] = image

    for j, col in enumerate(col_seeds, start=1):
        paste(images[(col, col)], 0, j)
    for i, row in enumerate(row_seeds, start=1):
        paste(images[(row, row)], i, 0)
        for j, col in enumerate(col_seeds, start=1):
            paste(images[(row, col)], i, j)
    return canvas


def to_pil(pixels: np.ndarray) -> PIL.Image.Image:
    return PIL.Image.fromarray(pixels[:, :, 0], "L") if pixels.shape[2] == 1 else PIL.Image.fromarray(pixels, "RGB")


def write_style_mixing(
    G: torch.nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    outdir: str | os.PathLike[str],
    styles: Sequence[int] = DEFAULT_STYLES,
    **options,
) -> Path:
    """Write every image as ``<row>-<col>.png`` and the matrix as ``grid.png`` in `outdir`; returns the grid path."""
    images = style_mix_images(G, row_seeds, col_seeds, styles, **options)
    outdir = Path(outdir)
    for (row, col), pixels in images.items():
        save_png(to_pil(pixels), outdir / f"{row}-{col}.png")
    return save_png(to_pil(mixing_canvas(images, row_seeds, col_seeds)), outdir / "grid.png")
