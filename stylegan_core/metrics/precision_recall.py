"""Improved precision and recall (Kynkäänniemi et al. 2019) as NVIDIA's `pr50k3_full` computes them.

Each sample set spans a manifold: the union of balls around its points, each ball's radius being the distance to the
point's k-th nearest neighbour in the same set. Precision is the fraction of generated samples inside the real
manifold, recall the fraction of real samples inside the generated one. Features are VGG16 fc features, held in
float16 as NVIDIA holds them; distances are computed in float32 from those float16 values and rounded to float16
(NVIDIA computes them in float16 on the GPU; CPUs have no float16 `cdist`).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

NHOOD_SIZE = 3
ROW_BATCH_SIZE = 10_000
COL_BATCH_SIZE = 10_000


def pairwise_distances(rows: torch.Tensor, cols: torch.Tensor, col_batch_size: int = COL_BATCH_SIZE) -> torch.Tensor:
    """Euclidean distances [R, C] between float16 rows and cols, in column batches as NVIDIA splits them.

    The columns are zero-padded to a multiple of the batch count and cut into equal batches (NVIDIA's layout), so
    that `torch.cdist` sees the same shapes and therefore makes the same rounding as NVIDIA's code does.
    """
    num_cols = cols.shape[0]
    num_batches = (num_cols - 1) // col_batch_size + 1
    padded = torch.nn.functional.pad(cols, [0, 0, 0, -num_cols % num_batches])
    row32 = rows.to(torch.float32).unsqueeze(0)
    parts = [torch.cdist(row32, batch.to(torch.float32).unsqueeze(0))[0].to(torch.float16)
             for batch in padded.chunk(num_batches)]  # fmt: skip
    return torch.cat(parts, dim=1)[:, :num_cols]


def manifold_coverage(
    manifold: torch.Tensor,
    probes: torch.Tensor,
    nhood_size: int = NHOOD_SIZE,
    row_batch_size: int = ROW_BATCH_SIZE,
    col_batch_size: int = COL_BATCH_SIZE,
) -> float:
    """Fraction of `probes` within the k-NN balls of `manifold` (both float16 [N, D])."""
    if len(manifold) <= nhood_size:
        raise ValueError(f"precision/recall: k={nhood_size} needs more than {nhood_size} samples, got {len(manifold)}")
    radii = []
    for batch in manifold.split(row_batch_size):
        distances = pairwise_distances(batch, manifold, col_batch_size).to(torch.float32)
        # k + 1: every point is its own nearest neighbour at distance 0.
        radii.append(distances.kthvalue(nhood_size + 1, dim=1).values.to(torch.float16))
    radius = torch.cat(radii)
    inside = [(pairwise_distances(batch, manifold, col_batch_size) <= radius).any(dim=1)
              for batch in probes.split(row_batch_size)]  # fmt: skip
    return float(torch.cat(inside).to(torch.float32).mean())


def precision_recall(
    real_features: ArrayLike,
    gen_features: ArrayLike,
    nhood_size: int = NHOOD_SIZE,
    *,
    device: torch.device | str = "cpu",
    row_batch_size: int = ROW_BATCH_SIZE,
    col_batch_size: int = COL_BATCH_SIZE,
) -> tuple[float, float]:
    """(precision, recall) of generated features [N_g, D] against real features [N_r, D]."""
    real = _half(real_features, "real_features", device)
    gen = _half(gen_features, "gen_features", device)
    if real.shape[1] != gen.shape[1]:
        raise ValueError(f"precision/recall: feature sizes differ, {real.shape[1]} (real) and {gen.shape[1]} (gen)")
    batches = {"row_batch_size": row_batch_size, "col_batch_size": col_batch_size}
    precision = manifold_coverage(real, gen, nhood_size, **batches)
    recall = manifold_coverage(gen, real, nhood_size, **batches)
    return precision, recall


def _half(features: ArrayLike, what: str, device: torch.device | str) -> torch.Tensor:
    array = np.asarray(features)
    if array.dtype != np.float16:  # cached real features already are; no float32 copy (3.3 GB at 200k x 4096)
        array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"precision/recall: {what} must be [N, D] with N > 0, got shape {list(array.shape)}")
    return torch.from_numpy(array).to(torch.float16).to(device)


class VGG16Features(torch.nn.Module):
    """PR's detector: uint8-range images -> NVIDIA's VGG16 features (`return_features=True`), with the file's sha256
    (part of the real-feature cache key) and the feature size (probed once)."""

    def __init__(self, vgg16) -> None:
        super().__init__()
        self.vgg16 = vgg16
        self.sha256 = vgg16.sha256
        self.source = vgg16.source
        self.device = next(iter([*vgg16.parameters(), *vgg16.buffers()]), torch.empty(0)).device
        with torch.inference_mode():
            probe = vgg16.features(torch.full([1, 3, 32, 32], 128, dtype=torch.uint8, device=self.device))
        if probe.ndim != 2:
            raise ValueError(f"{vgg16.source}: VGG16 features have shape {list(probe.shape)}, expected [1, D]")
        self.feature_dim = int(probe.shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vgg16.features(images.to(self.device)).to(torch.float32)
