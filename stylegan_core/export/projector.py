"""Find the w of a given image: NVIDIA's projector (stylegan2-ada-pytorch ``projector.py``), W-space optimisation.

What it does, as NVIDIA's ``project()``:
- start at w_avg, the mean of the first w of 10 000 mappings of numpy ``RandomState(123)`` z; w_std is the RMS
  distance of those ws from w_avg;
- each step: w + Gaussian noise of ``w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2`` (t = the
  fraction of steps done), synthesis with the network's constant noise buffers (which are optimised too, starting
  from fresh N(0, 1) draws), images to [0, 255], area-downsampled to 256x256 when larger, LPIPS distance to the
  target with NVIDIA's VGG16 (``metrics/vgg.py``), plus ``regularize_noise_weight`` times the noise regulariser
  (squared mean autocorrelation at shift 1 along x and y, at every 2x-pooled scale down to 8x8);
- Adam (betas 0.9, 0.999) on w and the noise buffers; learning rate ``initial_learning_rate`` times a cosine ramp
  down over the last ``lr_rampdown_length`` and a linear ramp up over the first ``lr_rampup_length`` of the steps;
- after each step the noise buffers are renormalised to zero mean, unit variance; the step's w is recorded.
Random streams as NVIDIA's script: noise buffers then one w-noise draw per step, from torch seeded with `seed`
(a generator of our own, so the caller's global RNG is untouched).

Beyond NVIDIA: grey networks (the target and images are repeated to RGB for VGG16, as NVIDIA's PPL does) and
conditional networks (NVIDIA's projector maps z without a label and fails on them). A class enters only where a
label can: the mapping of the 10 000 z that gives w_avg and w_std, i.e. the start and the w-noise scale; the
synthesis network takes ws only, so the projected ws carry the class from there on.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylegan_core.errors import InputError

DEFAULT_NUM_STEPS = 1000
DEFAULT_SEED = 303
MAX_NUM_STEPS = 100_000
VGG_MAX_SIZE = 256
"""Images larger than this are area-downsampled to 256x256 before VGG16 (which was trained at 224x224)."""
W_AVG_SEED = 123

ProgressFn = Callable[[int, int, float, float], None]
"""progress(step (1-based), num_steps, LPIPS distance, loss) after each step."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProjectorConfig:
    """NVIDIA's projector hyperparameters (its ``project()`` defaults)."""

    num_steps: int = DEFAULT_NUM_STEPS
    w_avg_samples: int = 10_000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5

    def __post_init__(self) -> None:
        check_num_steps(self.num_steps)
        if not 1 <= self.w_avg_samples <= 1_000_000:
            raise InputError(f"w_avg_samples must be in 1..1000000, got {self.w_avg_samples}")


@dataclasses.dataclass(frozen=True, eq=False)
class Projection:
    w_steps: np.ndarray
    """float32 [num_steps, num_ws, w_dim]: w after each step, the same on every layer."""
    distances: np.ndarray
    """float32 [num_steps]: the LPIPS distance each step minimised (noisy w, optimised noise buffers)."""
    start_distance: float
    """LPIPS distance of w_avg's image (the network's own constant noise), where the optimisation starts."""
    final_distance: float
    """LPIPS distance of the last w's image with the network's own constant noise: what proj.png shows."""
    seed: int
    class_idx: int | None


def check_num_steps(num_steps: int) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_NUM_STEPS:
        raise InputError(f"num_steps must be an integer in 1..{MAX_NUM_STEPS}, got {num_steps!r}")
    return num_steps


def check_target(G: torch.nn.Module, target: torch.Tensor) -> None:
    if G.img_channels not in (1, 3):
        raise InputError(f"the projector needs a grey or RGB network (VGG16 sees RGB), not {G.img_channels} channels")
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if not isinstance(target, torch.Tensor) or target.dtype != torch.uint8 or tuple(target.shape) != expected:
        got = f"{target.dtype} {list(target.shape)}" if isinstance(target, torch.Tensor) else type(target).__name__
        raise InputError(f"target must be a uint8 tensor {list(expected)} (the network's channels and size), got {got}")


def to_vgg_range(images: torch.Tensor) -> torch.Tensor:
    """Synthesis output about [-1, 1] -> [0, 255] floats, sized for VGG16."""
    return vgg_size((images + 1) * (255 / 2))


def vgg_size(images: torch.Tensor) -> torch.Tensor:
    """Area-downsampled to 256x256 when larger (as NVIDIA; smaller images go to VGG16 as they are)."""
    if images.shape[2] > VGG_MAX_SIZE:
        images = F.interpolate(images, size=(VGG_MAX_SIZE, VGG_MAX_SIZE), mode="area")
    return images


def projector_pixels(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] about [-1, 1] -> uint8 [N, H, W, C] the way NVIDIA's projector writes them: (x + 1) * 127.5,
    clamped, truncated (NVIDIA's generate.py adds 128 instead, so the two scripts' PNGs differ by up to 1)."""
    return ((images + 1) * (255 / 2)).permute(0, 2, 3, 1).clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def w_statistics(
    G: torch.nn.Module, c: torch.Tensor, samples: int, device: torch.device
) -> tuple[np.ndarray, np.floating]:
    """(w_avg float32 [1, 1, w_dim], w_std float32 scalar) from `samples` mapped z of RandomState(123), in numpy
    float32 as NVIDIA computes them (the same reductions, so the same bits)."""
    z = np.random.RandomState(W_AVG_SEED).randn(samples, G.z_dim)
    ws = G.mapping(torch.from_numpy(z).to(device), c.expand(samples, -1))
    first = ws[:, :1, :].cpu().numpy().astype(np.float32)  # [N, 1, w_dim]
    w_avg = np.mean(first, axis=0, keepdims=True)
    w_std = (np.sum((first - w_avg) ** 2) / samples) ** 0.5
    return w_avg, w_std


def noise_regularizer(buffers: list[torch.Tensor]) -> torch.Tensor:
    """Sum over buffers and 2x-pooled scales (down to 8x8) of the squared mean products with the 1-pixel roll."""
    total = torch.zeros([], device=buffers[0].device) if buffers else torch.zeros([])
    for buffer in buffers:
        noise = buffer[None, None]
        while True:
            for dim in (3, 2):
                total = total + (noise * torch.roll(noise, shifts=1, dims=dim)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


def learning_rate(step: int, config: ProjectorConfig) -> float:
    t = step / config.num_steps
    ramp = min(1.0, (1.0 - t) / config.lr_rampdown_length)
    ramp = 0.5 - 0.5 * np.cos(ramp * np.pi)
    ramp = ramp * min(1.0, t / config.lr_rampup_length)
    return float(config.initial_learning_rate * ramp)


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    *,
    vgg: torch.nn.Module,
    num_steps: int = DEFAULT_NUM_STEPS,
    seed: int = DEFAULT_SEED,
    class_idx: int | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    config: ProjectorConfig | None = None,
) -> Projection:
    """Optimise w (and the noise buffers of a private copy of G) so that G's image matches `target`.

    target: uint8 [C, H, W] at G's channels and resolution. vgg: a ``metrics.vgg.VGG16`` (or anything with its
    ``lpips(images)`` method). `config` overrides the other hyperparameters; `num_steps` is its num_steps.
    """
    from stylegan_core.export.generate import class_label

    config = dataclasses.replace(config or ProjectorConfig(), num_steps=check_num_steps(num_steps))
    check_target(G, target)
    device = torch.device(device) if device is not None else next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)  # its noise buffers are optimised
    c = class_label(G, class_idx).to(device)
    w_avg, w_std = w_statistics(G, c, config.w_avg_samples, device)
    target_features = vgg.lpips(vgg_size(target[None].to(device, torch.float32))).detach()
    buffers = [buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name]
    own_noise = [buf.clone() for buf in buffers]
    start_distance = _distance(G, vgg, torch.from_numpy(w_avg).to(device), target_features)

    generator = torch.Generator(device=device).manual_seed(int(seed))
    w_opt = torch.tensor(w_avg, dtype=torch.float32, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([w_opt, *buffers], betas=(0.9, 0.999), lr=config.initial_learning_rate)
    for buf in buffers:
        buf.copy_(torch.randn(buf.shape, generator=generator, device=device))
        buf.requires_grad_(True)
    w_steps, distances = _optimise(
        G, vgg, target_features, w_opt, w_std, buffers, optimizer, generator, config, progress
    )  # fmt: skip

    with torch.no_grad():  # back to the network's own noise: what proj.png and `generate --projected-w` render
        for buf, own in zip(buffers, own_noise, strict=True):
            buf.requires_grad_(False).copy_(own)
    final_distance = _distance(G, vgg, w_steps[-1], target_features)
    w_all = w_steps[:, None, :].expand(-1, G.num_ws, -1)
    return Projection(
        w_steps=w_all.cpu().numpy().astype(np.float32), distances=distances, start_distance=start_distance,
        final_distance=final_distance, seed=int(seed), class_idx=class_idx,
    )  # fmt: skip


def _optimise(
    G: torch.nn.Module,
    vgg: torch.nn.Module,
    target_features: torch.Tensor,
    w_opt: torch.Tensor,
    w_std: np.floating,
    buffers: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: ProjectorConfig,
    progress: ProgressFn | None,
) -> tuple[torch.Tensor, np.ndarray]:
    """The optimisation loop: (w after each step [num_steps, w_dim], distance of each step [num_steps])."""
    w_steps = torch.zeros([config.num_steps, G.w_dim], dtype=torch.float32, device=w_opt.device)
    distances = np.zeros([config.num_steps], dtype=np.float32)
    for step in range(config.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        t = step / config.num_steps
        # w_std is a numpy float32 scalar: numpy's promotion gives the scale NVIDIA's expression gives.
        w_noise_scale = w_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp_length) ** 2
        w_noise = torch.randn(w_opt.shape, generator=generator, device=w_opt.device) * w_noise_scale
        images = G.synthesis((w_opt + w_noise).repeat([1, G.num_ws, 1]), noise_mode="const")
        distance = (target_features - vgg.lpips(to_vgg_range(images))).square().sum()
        loss = distance + noise_regularizer(buffers) * config.regularize_noise_weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        w_steps[step] = w_opt.detach()[0, 0]
        distances[step] = float(distance.detach())
        with torch.no_grad():
            for buf in buffers:
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        if progress is not None:
            progress(step + 1, config.num_steps, float(distance.detach()), float(loss.detach()))
    return w_steps, distances


@torch.no_grad()
def _distance(G: torch.nn.Module, vgg: torch.nn.Module, w: torch.Tensor, target_features: torch.Tensor) -> float:
    images = G.synthesis(w.reshape(1, 1, -1).repeat([1, G.num_ws, 1]), noise_mode="const")
    return float((target_features - vgg.lpips(to_vgg_range(images))).square().sum())


PROJECTION_VIDEO_FPS = 10  # NVIDIA's projector video


@torch.no_grad()
def write_projection(
    outdir: str | os.PathLike[str],
    G: torch.nn.Module,
    target: torch.Tensor,
    projection: Projection,
    save_video: bool = False,
) -> dict[str, Path]:
    """Write NVIDIA's outputs: ``target.png``, ``proj.png`` (the last w, the network's own constant noise),
    ``projected_w.npz`` (``w`` [1, num_ws, w_dim], read by ``generate --projected-w``) and, with `save_video`,
    ``proj.mp4``: target | projection side by side for every step, 10 fps (animated WebP/GIF under the name
    ``video_writer`` reports when no MP4 encoder is installed). Each file is written atomically."""
    from stylegan_core.export.grid import save_png
    from stylegan_core.export.projected_w import save_projected_w
    from stylegan_core.export.style_mixing import to_pil

    check_target(G, target)
    outdir = Path(outdir)
    device = next(G.parameters()).device
    target_pixels = target.permute(1, 2, 0).cpu().numpy()
    ws = torch.from_numpy(projection.w_steps).to(device)
    paths: dict[str, Path] = {}
    if save_video:
        paths["video"] = _write_video(outdir / "proj.mp4", G, target_pixels, ws)
    paths["target"] = save_png(to_pil(target_pixels), outdir / "target.png")
    proj = projector_pixels(G.synthesis(ws[-1:], noise_mode="const"))[0]
    paths["proj"] = save_png(to_pil(proj), outdir / "proj.png")
    paths["projected_w"] = save_projected_w(outdir / "projected_w.npz", projection.w_steps[-1:])
    return paths


def _write_video(path: Path, G: torch.nn.Module, target_pixels: np.ndarray, ws: torch.Tensor) -> Path:
    from stylegan_core.export.video_writer import check_animation_size, resolve_output, write_video

    path, note = resolve_output(path)
    if note:
        print(note)
    check_animation_size(path, len(ws), target_pixels.shape[0], 2 * target_pixels.shape[1])

    def frames():
        for w in ws:
            proj = projector_pixels(G.synthesis(w[None], noise_mode="const"))[0]
            yield np.concatenate([target_pixels, proj], axis=1)

    return write_video(frames(), path, fps=PROJECTION_VIDEO_FPS)
