"""Detector features of real and generated images, sharded across ranks as NVIDIA's metric_utils does.

Work is split by index: rank r takes real items r, r + W, r + 2W, ... and generated batches likewise; the features
are all-gathered and put back into global order, so every rank ends with the same array, identical to a
single-process run. Generated batch b is drawn from its own seed (derived from `seed` and b), so the images do not
depend on the number of ranks either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stylegan_core.metrics.inception import FEATURE_DIM, detector_features
from stylegan_core.metrics.progress import LineProgress

Detector = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Shard:
    """This process's rank among `world_size` processes that all call the same metric function."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size}")
        if self.world_size > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError(f"world_size={self.world_size} needs torch.distributed to be initialised on every rank")


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output in about [-1, 1] -> uint8 exactly as NVIDIA's metrics: (x * 127.5 + 128), clamp, truncate."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def dataset_features(
    dataset: Sequence,
    detector: Detector,
    *,
    num_items: int,
    batch_size: int,
    shard: Shard | None = None,
    progress: bool | LineProgress = True,
) -> np.ndarray:
    """Features [num_items, D] of dataset items 0 .. num_items - 1 (images only; `dataset[i] -> (uint8 CHW, label)`)."""
    shard = shard or Shard()
    if not 0 < num_items <= len(dataset):
        raise ValueError(f"num_items must be in 1..{len(dataset)}, got {num_items}")
    indices = list(range(shard.rank, num_items, shard.world_size))

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, len(indices), batch_size):
            yield torch.from_numpy(np.stack([dataset[i][0] for i in indices[start : start + batch_size]]))

    local = detector_features(
        detector,
        batches(),
        num_images=len(indices),
        progress=progress,
        description="reals",
        feature_dim=_feature_dim(detector),
    )
    return _gather_in_order(local[:, None], num_items, shard)[:, 0]


@torch.no_grad()
def generator_features(
    G: torch.nn.Module,
    detector: Detector,
    *,
    num_images: int,
    labels: Callable[[np.random.Generator, int], np.ndarray],
    batch_size: int,
    seed: int = 0,
    shard: Shard | None = None,
    progress: bool | LineProgress = True,
) -> np.ndarray:
    """Features [num_images, D] of G(z, c) with ψ = 1 and random noise, as NVIDIA's metrics sample them.

    `labels(rng, n)` returns n float32 label rows (NVIDIA: labels of uniformly drawn dataset items).
    """
    shard = shard or Shard()
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    device = next(G.parameters()).device
    num_batches = -(-num_images // batch_size)
    mine = list(range(shard.rank, num_batches, shard.world_size))

    def batches() -> Iterator[torch.Tensor]:
        for batch_index in mine:
            count = min(batch_size, num_images - batch_index * batch_size)
            yield quantize_images(_generate_batch(G, labels, count, _batch_seed(seed, batch_index), device))

    count_mine = sum(min(batch_size, num_images - b * batch_size) for b in mine)
    local = detector_features(
        detector,
        batches(),
        num_images=count_mine,
        progress=progress,
        description="fakes",
        feature_dim=_feature_dim(detector),
    )
    # Pad this rank's last batch so every batch is a full [batch_size, D] unit for the gather.
    padded = np.zeros([len(mine) * batch_size, local.shape[1]], dtype=local.dtype)
    padded[: len(local)] = local
    units = padded.reshape(len(mine), batch_size, -1)
    return _gather_in_order(units, num_batches, shard).reshape(-1, local.shape[1])[:num_images]


def _feature_dim(detector: Detector) -> int:
    return int(getattr(detector, "feature_dim", FEATURE_DIM))


def _batch_seed(seed: int, batch_index: int) -> int:
    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _generate_batch(G: torch.nn.Module, labels: Callable, count: int, batch_seed: int, device: torch.device):
    rng = np.random.default_rng(batch_seed)
    z = torch.from_numpy(rng.standard_normal([count, G.z_dim]).astype(np.float32)).to(device)
    c = torch.from_numpy(np.asarray(labels(rng, count), dtype=np.float32).reshape(count, G.c_dim)).to(device)
    # G draws its per-layer noise from torch's global RNG: seed it for this batch and restore it afterwards.
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(batch_seed)
        return G(z, c, truncation_psi=1, noise_mode="random")


def dataset_label_sampler(dataset) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Labels of uniformly drawn dataset items (NVIDIA's sampling); zero-width rows for unlabelled datasets."""

    def sample(rng: np.random.Generator, count: int) -> np.ndarray:
        if dataset.label_dim == 0:
            return np.zeros([count, 0], dtype=np.float32)
        return np.stack([dataset.get_label(int(i)) for i in rng.integers(len(dataset), size=count)])

    return sample


def _gather_in_order(local_units: np.ndarray, num_units: int, shard: Shard) -> np.ndarray:
    """Units [k, ...] held as rank r's units r, r + W, ... -> all units [num_units, ...] in global order, everywhere."""
    if shard.world_size == 1:
        return local_units[:num_units]
    per_rank = -(-num_units // shard.world_size)
    padded = np.zeros([per_rank, *local_units.shape[1:]], dtype=local_units.dtype)
    padded[: len(local_units)] = local_units
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else None
    tensor = torch.from_numpy(padded).to(device or "cpu")
    gathered = [torch.empty_like(tensor) for _ in range(shard.world_size)]
    torch.distributed.all_gather(gathered, tensor)
    stacked = torch.stack(gathered).cpu().numpy()
    return interleave_ranks(stacked, num_units)


def interleave_ranks(stacked: np.ndarray, num_units: int) -> np.ndarray:
    """[W, K, ...] with rank r's j-th unit = global unit j * W + r -> [num_units, ...] in global order."""
    world_size, per_rank = stacked.shape[:2]
    ordered = stacked.swapaxes(0, 1).reshape(world_size * per_rank, *stacked.shape[2:])
    return ordered[:num_units]
