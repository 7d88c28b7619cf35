"""Shared by the PR / IS / PPL tests: the reference network, the stand-in detector files, the fixture dataset, and
NVIDIA's stream of generated images (tests/fixtures/metrics_nvidia/README.md says how the fixture was made)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import FIXTURES
from inception_standin import save_standin_inception
from vgg_standin import save_standin_vgg16

from stylegan_core.metrics.sampling import quantize_images
from stylegan_core.networks import Generator

METRICS_NVIDIA = FIXTURES / "metrics_nvidia"
REALS_ZIP = METRICS_NVIDIA / "reals_G32_40.zip"


def nvidia_results() -> dict[str, dict[str, float]]:
    return json.loads((METRICS_NVIDIA / "nvidia_results.json").read_text())


def standin_files(folder: Path) -> tuple[Path, Path]:
    """(Inception, VGG16) stand-in TorchScript files from seed 0, the ones NVIDIA's code ran with."""
    inception, vgg16 = folder / "inception_standin_seed0.pt", folder / "vgg16_standin_seed0.pt"
    save_standin_inception(inception, seed=0)
    save_standin_vgg16(vgg16, seed=0)
    return inception, vgg16


@torch.no_grad()
def nvidia_stream_images(G: Generator, num_images: int, seed: int = 0, dataset_size: int = 40) -> torch.Tensor:
    """The uint8 images NVIDIA's compute_feature_stats_for_generator makes after torch/numpy are seeded with `seed`:
    batches of 64 in chunks of 4, each chunk z = torch.randn([4, z_dim]), then 4 label draws from numpy, then G with
    random noise from torch's global generator."""
    chunks: list[torch.Tensor] = []
    numpy_rng = np.random.RandomState(seed)  # NVIDIA's label draws (unconditional network: drawn, unused)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        while sum(len(chunk) for chunk in chunks) < num_images:
            for _ in range(64 // 4):
                z = torch.randn([4, G.z_dim])
                [numpy_rng.randint(dataset_size) for _ in range(4)]
                chunks.append(quantize_images(G(z, torch.zeros([4, 0]), noise_mode="random")))
    return torch.cat(chunks)[:num_images]
