"""Latent interpolation frames, with the behaviour of StyleGAN3's gen_video.py.

Seeds are dealt to a grid of `columns x rows` cells, `num_keyframes` consecutive seeds per cell (cell-major: cell
(row, col) gets seeds[(row * columns + col) * K + k], the seed list repeating when it is shorter, optionally
shuffled by a RandomState(shuffle_seed)). Each seed's w (NVIDIA's z, truncated on all layers) is a keyframe; the
path through a cell's keyframes is a cubic spline of scipy's ``interp1d`` fitted to the keyframes repeated
`wraps` times before and after, so the loop closes smoothly. Frame f shows time f / frames_per_seed, for
K * frames_per_seed frames. Pixels are truncated to uint8 as NVIDIA's scripts do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stylegan_core.errors import UsageError
from stylegan_core.export.generate import class_label
from stylegan_core.export.grid import DEFAULT_NOISE_MODE
from stylegan_core.export.seeds import MAX_SEED, seeds_to_z


@dataclass(frozen=True, kw_only=True)
class InterpolationConfig:
    grid: tuple[int, int] = (1, 1)
    """(columns, rows) of simultaneous interpolations in each frame."""
    frames_per_seed: int = 120
    """Frames from one keyframe to the next (gen_video.py's --w-frames)."""
    num_keyframes: int | None = None
    """Keyframes per cell; None: len(seeds) / cells, which must then divide evenly."""
    shuffle_seed: int | None = None
    """Shuffle the dealt seeds with RandomState(shuffle_seed); None keeps their order."""
    truncation_psi: float = 1.0
    kind: str = "cubic"
    """scipy interp1d kind; cubic needs at least 4 points, which the wraps always give."""
    wraps: int = 2
    """Copies of the keyframes on each side of the loop, so the spline is smooth where it wraps."""
    noise_mode: str = DEFAULT_NOISE_MODE
    class_idx: int | None = None

    def __post_init__(self) -> None:
        columns, rows = self.grid
        if columns < 1 or rows < 1:
            raise UsageError(f"grid must be at least 1x1, got {columns}x{rows}")
        if self.frames_per_seed < 1:
            raise UsageError(f"frames per seed must be at least 1, got {self.frames_per_seed}")
        if self.num_keyframes is not None and self.num_keyframes < 1:
            raise UsageError(f"num_keyframes must be at least 1, got {self.num_keyframes}")
        if self.shuffle_seed is not None and not 0 <= self.shuffle_seed <= MAX_SEED:
            raise UsageError(f"shuffle seed {self.shuffle_seed} is outside 0..{MAX_SEED}")
        if self.wraps < 1:
            raise UsageError(f"wraps must be at least 1, got {self.wraps}")


def keyframe_seeds(seeds: Sequence[int], config: InterpolationConfig) -> np.ndarray:
    """int64 [rows, columns, K]: the seed of each keyframe of each cell."""
    columns, rows = config.grid
    cells = columns * rows
    if not seeds:
        raise UsageError("video: no seeds given")
    keyframes = config.num_keyframes
    if keyframes is None:
        if len(seeds) % cells:
            raise UsageError(f"{len(seeds)} seeds do not divide into {cells} grid cells; give --num-keyframes")
        keyframes = len(seeds) // cells
    dealt = np.array([seeds[index % len(seeds)] for index in range(keyframes * cells)], dtype=np.int64)
    if config.shuffle_seed is not None:
        np.random.RandomState(config.shuffle_seed).shuffle(dealt)
    return dealt.reshape(rows, columns, keyframes)


@torch.no_grad()
def keyframe_splines(G: torch.nn.Module, seeds: Sequence[int], config: InterpolationConfig) -> list:
    """One periodic spline per cell (row-major), each mapping time in [0, K) to ws [num_ws, w_dim] (float64)."""
    import scipy.interpolate  # here, not at the top: `stylegan --help` imports this module via the CLI

    table = keyframe_seeds(seeds, config)
    rows, columns, keyframes = table.shape
    device = next(G.parameters()).device
    z = seeds_to_z(table.ravel().tolist(), G.z_dim).to(device)
    c = class_label(G, config.class_idx).to(device).repeat(len(z), 1)
    ws = G.mapping(z, c, truncation_psi=config.truncation_psi).cpu().double().numpy()
    ws = ws.reshape(rows * columns, keyframes, *ws.shape[1:])
    times = np.arange(-keyframes * config.wraps, keyframes * (config.wraps + 1))
    repeats = [2 * config.wraps + 1] + [1] * (ws.ndim - 2)
    return [scipy.interpolate.interp1d(times, np.tile(cell, repeats), kind=config.kind, axis=0) for cell in ws]


def frame_count(seeds: Sequence[int], config: InterpolationConfig) -> int:
    return keyframe_seeds(seeds, config).shape[2] * config.frames_per_seed


@torch.no_grad()
def interpolation_frames(
    G: torch.nn.Module,
    seeds: Sequence[int],
    config: InterpolationConfig,
    indices: Sequence[int] | None = None,
    *,
    batch: int = 1,
) -> Iterator[np.ndarray]:
    """uint8 frames [rows * H, columns * W, C], `batch` frames (of all cells) per synthesis call.

    All `frame_count` frames in order, or only those at `indices` (previews and tests). A batch above 1 is much
    faster on a CPU, where a small network's per-call overhead dominates.
    """
    splines = keyframe_splines(G, seeds, config)
    columns, rows = config.grid
    device = next(G.parameters()).device
    wanted = list(range(frame_count(seeds, config)) if indices is None else indices)
    for start in range(0, len(wanted), max(1, batch)):
        chunk = wanted[start : start + max(1, batch)]
        ws = np.stack([spline(index / config.frames_per_seed) for index in chunk for spline in splines])
        images = G.synthesis(torch.from_numpy(ws).to(device, torch.float32), noise_mode=config.noise_mode)
        pixels = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
        _, channels, height, width = pixels.shape
        frames = pixels.reshape(len(chunk), rows, columns, channels, height, width).transpose(0, 1, 4, 2, 5, 3)
        yield from frames.reshape(len(chunk), rows * height, columns * width, channels)
