"""NVIDIA's seed convention: image `seed` uses z = numpy.random.RandomState(seed).randn(1, z_dim)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import torch

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
MAX_SEED = 2**32 - 1  # RandomState accepts seeds in [0, 2**32)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11] (NVIDIA's generate.py accepts 'a,b,c' or 'a-b'; we allow both mixed)."""
    seeds: list[int] = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if match is None:
            raise ValueError(f"seeds: {part.strip()!r} in {text!r} is not a number or a range a-b")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first or last > MAX_SEED:
            raise ValueError(f"seeds: range {part.strip()!r} must go upwards and stay within 0..{MAX_SEED}")
        seeds.extend(range(first, last + 1))
    return seeds


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """float64 [1, z_dim], exactly NVIDIA's generate.py latent for `seed`."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}")
    return np.random.RandomState(seed).randn(1, z_dim)


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """float32 [N, z_dim]; NVIDIA passes float64 z, which its mapping network casts to float32 first thing."""
    return torch.from_numpy(np.concatenate([seed_to_z(int(seed), z_dim) for seed in seeds])).to(torch.float32)
