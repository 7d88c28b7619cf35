"""Images from a projector's ``projected_w.npz`` (NVIDIA's generate.py --projected-w: ``proj%02d.png`` per w).

The file holds ``w`` [N, num_ws, w_dim]; each entry is synthesised on its own and written with the usual uint8
truncation. The npz is read as untrusted: no pickles, a size bound before the array is loaded, shape and finiteness
checked against the network.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from stylegan_core.export.grid import DEFAULT_NOISE_MODE, save_png
from stylegan_core.export.style_mixing import to_pil, to_uint8

MAX_PROJECTED_W_BYTES = 64 << 20  # far above any real projection (1000 ws of 18 x 512 float32 is 37 MB)


def load_projected_w(path: str | os.PathLike[str], num_ws: int, w_dim: int) -> np.ndarray:
    """float32 [N, num_ws, w_dim] from `path`, or ValueError naming the file and the problem."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo("w.npy").file_size
    except KeyError:
        raise ValueError(f"{path}: no array 'w' (expected a projected_w.npz written by a projector)") from None
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not an .npz file") from None
    if size > MAX_PROJECTED_W_BYTES:
        raise ValueError(f"{path}: array 'w' is {size} bytes, over the {MAX_PROJECTED_W_BYTES}-byte limit")
    try:
        with np.load(path, allow_pickle=False) as data:
            w = data["w"]
    except ValueError as error:  # object arrays (pickles) and damaged headers
        raise ValueError(f"{path}: cannot read array 'w': {error}") from None
    if w.dtype.kind != "f" or w.ndim != 3 or w.shape[1:] != (num_ws, w_dim) or len(w) == 0:
        raise ValueError(f"{path}: 'w' is {w.dtype} {list(w.shape)}; this network needs float [N, {num_ws}, {w_dim}]")
    if not np.isfinite(w).all():
        raise ValueError(f"{path}: 'w' contains NaN or infinite values")
    return w.astype(np.float32)


def save_projected_w(path: str | os.PathLike[str], w: np.ndarray) -> Path:
    """Write ``w`` (float32 [N, num_ws, w_dim]) as NVIDIA's projector does (an npz with one array ``w``), atomically."""
    from stylegan_core.io.atomic import atomic_file

    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 3 or len(w) == 0 or not np.isfinite(w).all():
        raise ValueError(f"{path}: projected w must be finite float32 [N, num_ws, w_dim], got {list(w.shape)}")
    with atomic_file(path) as file:
        np.savez(file, w=w)
    return Path(path)


@torch.no_grad()
def write_projected_images(
    G: torch.nn.Module,
    projected_w: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    noise_mode: str = DEFAULT_NOISE_MODE,
) -> list[Path]:
    """`outdir/proj%02d.png` for each w in the file, one synthesis call each (as NVIDIA's generate.py)."""
    ws = torch.from_numpy(load_projected_w(projected_w, G.num_ws, G.w_dim)).to(next(G.parameters()).device)
    paths = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # only noise_mode='random' draws
        for index, w in enumerate(ws):
            pixels = to_uint8(G.synthesis(w[None], noise_mode=noise_mode))[0]
            paths.append(save_png(to_pil(pixels), Path(outdir) / f"proj{index:02d}.png"))
    return paths
