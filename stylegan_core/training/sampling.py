"""Deterministic randomness: which real images and which latents each rank uses at each iteration.

Everything random in an iteration is a function of (seed, iteration, phase, chunk), where a chunk is one
accumulation round on one rank and its global index is `round * world_size + rank`. Hence:

* exact resume needs only the iteration counter (`batch_idx`), not a sampler position or worker RNG states;
* a run on W ranks with R rounds sees the same images and latents as a run on W*R/W' ranks with R' rounds, as long
  as `batch` and `batch_gpu` are equal, so a 2-process run reproduces a 1-process run up to float summation order.

Real images follow an infinite sequence of epochs, each a fresh permutation of the dataset seeded by (seed, epoch);
iteration i consumes global positions [i*batch, (i+1)*batch), split into chunks of batch_gpu.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

_DATA_STREAM = 0x5EED_DA7A  # separates the data-order streams from the latent streams of the same seed
_CHUNK_STREAM = 0xC4A1_0000


def chunk_seed(seed: int, batch_idx: int, phase_idx: int, chunk: int) -> int:
    """A 63-bit seed for one (iteration, phase, global chunk)."""
    sequence = np.random.SeedSequence([_CHUNK_STREAM, seed, batch_idx, phase_idx, chunk])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_chunk(seed: int, batch_idx: int, phase_idx: int, chunk: int) -> np.random.Generator:
    """Seed torch's global generators (CPU and CUDA) for one chunk; return a numpy generator for the same chunk.

    Global generators are reseeded, rather than passing torch.Generator objects around, because the networks' noise
    inputs, style mixing and the augment pipe all draw from the global generator.
    """
    value = chunk_seed(seed, batch_idx, phase_idx, chunk)
    torch.manual_seed(value)
    return np.random.default_rng(value)


def chunk_indices(rounds: int, rank: int, world_size: int) -> list[int]:
    """Global chunk numbers handled by `rank`, in round order."""
    return [round_idx * world_size + rank for round_idx in range(rounds)]


class IterationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """For iteration `start_iteration`, `start_iteration + 1`, ...: this rank's dataset indices (all its rounds).

    Infinite; use as `DataLoader(dataset, batch_sampler=...)`. The loader then yields one [rounds * batch_gpu] batch
    per iteration, which the loop splits into rounds.
    """

    def __init__(
        self,
        dataset_size: int,
        seed: int,
        batch: int,
        batch_gpu: int,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
    ) -> None:
        if dataset_size < 1:
            raise ValueError("cannot sample from an empty dataset")
        if batch % (batch_gpu * world_size) != 0:
            raise ValueError(f"batch {batch} is not a multiple of batch_gpu {batch_gpu} x world size {world_size}")
        self.dataset_size = dataset_size
        self.seed = seed
        self.batch = batch
        self.batch_gpu = batch_gpu
        self.rank = rank
        self.world_size = world_size
        self.start_iteration = start_iteration
        self._permutations: dict[int, np.ndarray] = {}

    def __iter__(self) -> Iterator[list[int]]:
        iteration = self.start_iteration
        while True:
            yield self.indices_for(iteration)
            iteration += 1

    def indices_for(self, iteration: int) -> list[int]:
        rounds = self.batch // (self.batch_gpu * self.world_size)
        indices: list[int] = []
        for chunk in chunk_indices(rounds, self.rank, self.world_size):
            start = iteration * self.batch + chunk * self.batch_gpu
            indices.extend(self._index_at(position) for position in range(start, start + self.batch_gpu))
        return indices

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.dataset_size)
        return int(self._permutation(epoch)[offset])

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # a batch spans at most two epochs (or many, for tiny datasets)
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng([_DATA_STREAM, self.seed, epoch])
            self._permutations[epoch] = rng.permutation(self.dataset_size)
        return self._permutations[epoch]
