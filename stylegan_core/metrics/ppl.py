"""Perceptual path length (Karras et al. 2019) as NVIDIA's `ppl2_wend`, `ppl_zfull`, ... compute it.

A sample is a pair of images a tiny step ε apart on a latent path: t uniform in [0, 1] (`full`) or t = 0 (`end`),
interpolated linearly in W or spherically in Z. Its value is the squared LPIPS distance (NVIDIA's VGG16) divided by
ε². Images are made with fresh random constant noise per batch, in float32, optionally centre-cropped to the face
region (`ppl_*`, not `ppl2_*`), area-downsampled to at most 256 pixels and scaled to [0, 255]. The metric is the
mean after dropping values below the 1st and above the 99th percentile.

Batch b draws t, the latents and the noise, in that order, from a torch generator seeded by (`seed`, b) (NVIDIA:
from the unseeded global generator in the same order), so results do not depend on the number of processes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch

from stylegan_core.metric_names import MetricSpec
from stylegan_core.metrics.progress import LineProgress
from stylegan_core.metrics.sampling import Shard, _batch_seed, _gather_in_order

EPSILON = 1e-4
BATCH_SIZE = 2
"""Pairs per batch, as NVIDIA's metric_main (4 images through G and VGG16 per step)."""
LPIPS_MAX_RESOLUTION = 256


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b [N, D] at t [N, 1]; unit-length results."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos_angle = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos_angle)
    towards_b = b - cos_angle * a  # the part of b orthogonal to a
    towards_b = towards_b / towards_b.norm(dim=-1, keepdim=True)
    result = a * torch.cos(angle) + towards_b * torch.sin(angle)
    return result / result.norm(dim=-1, keepdim=True)


def filtered_mean(distances: np.ndarray) -> float:
    """Mean of the values within [1st percentile (lower), 99th percentile (higher)], NVIDIA's outlier rule."""
    low = np.percentile(distances, 1, method="lower")
    high = np.percentile(distances, 99, method="higher")
    return float(distances[(distances >= low) & (distances <= high)].mean())


def lpips_images(G: torch.nn.Module, images: torch.Tensor, crop: bool) -> torch.Tensor:
    """Generator output [-1, 1] -> the VGG16 input of PPL: optional face crop, area-downsampled to <= 256, [0, 255]."""
    if crop:
        eighth = images.shape[2] // 8
        images = images[:, :, eighth * 3 : eighth * 7, eighth * 2 : eighth * 6]
    factor = G.img_resolution // LPIPS_MAX_RESOLUTION
    if factor > 1:
        n, c, h, w = images.shape
        images = images.reshape([n, c, h // factor, factor, w // factor, factor]).mean([3, 5])
    return (images + 1) * (255 / 2)


class PathSampler:
    """Squared LPIPS steps / ε² of `batch_size` path samples per call (a copy of G: its noise buffers are changed)."""

    def __init__(self, G: torch.nn.Module, vgg16: Callable, spec: MetricSpec, epsilon: float = EPSILON) -> None:
        self.G = copy.deepcopy(G).eval().requires_grad_(False)
        self.vgg16 = vgg16
        self.spec = spec
        self.epsilon = epsilon
        self.noise = [buf for name, buf in self.G.named_buffers() if name.endswith(".noise_const")]

    @torch.no_grad()
    def __call__(self, c: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        G, count, device = self.G, c.shape[0], c.device
        t = torch.rand([count], device=device, generator=generator) * (1 if self.spec.sampling == "full" else 0)
        z0, z1 = torch.randn([count * 2, G.z_dim], device=device, generator=generator).chunk(2)
        if self.spec.space == "w":
            w0, w1 = G.mapping(torch.cat([z0, z1]), torch.cat([c, c])).chunk(2)
            steps = t[:, None, None]
            ws = torch.cat([w0.lerp(w1, steps), w0.lerp(w1, steps + self.epsilon)])
        else:
            steps = t[:, None]
            zs = torch.cat([slerp(z0, z1, steps), slerp(z0, z1, steps + self.epsilon)])
            ws = G.mapping(zs, torch.cat([c, c]))
        for buf in self.noise:  # fresh constant noise for every batch
            buf.copy_(torch.randn(buf.shape, device=device, generator=generator))
        images = G.synthesis(ws, noise_mode="const", force_fp32=True)
        start, end = self.vgg16(lpips_images(G, images, self.spec.crop), resize_images=False).chunk(2)
        return (start - end).square().sum(dim=1) / self.epsilon**2


def path_lengths(
    G: torch.nn.Module,
    vgg16: Callable,
    spec: MetricSpec,
    labels: Callable[[np.random.Generator, int], np.ndarray],
    *,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    shard: Shard | None = None,
    progress: bool | LineProgress = False,
) -> np.ndarray:
    """The `spec.num_gen` per-sample path lengths (float32), in global batch order on every rank."""
    shard = shard or Shard()
    device = next(G.parameters()).device
    sampler = PathSampler(G, vgg16, spec)
    num_batches = -(-spec.num_gen // batch_size)
    mine = list(range(shard.rank, num_batches, shard.world_size))
    lines = progress if isinstance(progress, LineProgress) else None
    if lines is not None:
        lines.start("ppl samples", len(mine) * batch_size)
    local = np.zeros([len(mine), batch_size], dtype=np.float32)
    for row, batch_index in enumerate(_with_bar(mine, progress is True, batch_size)):
        batch_seed = _batch_seed(seed, batch_index)
        generator = torch.Generator(device).manual_seed(batch_seed)
        c = labels(np.random.default_rng(batch_seed), batch_size)
        c = torch.from_numpy(np.asarray(c, dtype=np.float32).reshape(batch_size, G.c_dim)).to(device)
        local[row] = sampler(c, generator).cpu().numpy()
        if lines is not None:
            lines.update(batch_size)
    return _gather_in_order(local, num_batches, shard).reshape(-1)[: spec.num_gen]


def _with_bar(batches: list[int], show: bool, batch_size: int) -> Iterator[int]:
    from tqdm import tqdm

    with tqdm(total=len(batches) * batch_size, desc="ppl", unit="pair", disable=not show, leave=False) as bar:
        for batch in batches:
            yield batch
            bar.update(batch_size)


def perceptual_path_length(G: torch.nn.Module, vgg16: Callable, spec: MetricSpec, labels, **kwargs) -> float:
    """NVIDIA's PPL value of `spec` (ppl2_wend, ppl_zfull, ...): the filtered mean of `path_lengths`."""
    return filtered_mean(path_lengths(G, vgg16, spec, labels, **kwargs))
