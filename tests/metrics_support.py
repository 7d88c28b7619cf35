"""Helpers for the metrics/export tests: tiny NVIDIA-layout zips, a cheap feature detector, a tiny Generator."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.networks import Generator


def write_zip(path: Path, images: np.ndarray, labels: list[int] | None = None) -> Path:
    """uint8 images [N, H, W, C] (C = 1 or 3) -> NVIDIA dataset_tool layout zip (00000/img%08d.png, dataset.json)."""
    entries = []
    with zipfile.ZipFile(path, "w") as archive:
        for index, pixels in enumerate(images):
            name = f"{index // 1000:05d}/img{index:08d}.png"
            buffer = io.BytesIO()
            mode = "L" if pixels.shape[2] == 1 else "RGB"
            PIL.Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
            entries.append([name, labels[index] if labels is not None else None])
        archive.writestr("dataset.json", json.dumps({"labels": entries if labels is not None else None}))
    return path


def npz_bytes(**members: bytes | np.ndarray) -> bytes:
    """An .npz whose members are arrays or raw .npy bytes (for headers that lie)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                npy = io.BytesIO()
                np.save(npy, value, allow_pickle=True)  # hostile entries may hold object arrays (pickles)
                value = npy.getvalue()
            archive.writestr(f"{name}.npy", value)
    return buffer.getvalue()


def lying_npy_header(shape: tuple[int, ...], dtype: str = "<f2") -> bytes:
    """An .npy header declaring `shape` of `dtype`, followed by 64 bytes of data only."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": dtype, "fortran_order": False, "shape": shape})
    return npy.getvalue() + b"\0" * 64


def random_images(count: int, resolution: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=[count, resolution, resolution, channels], dtype=np.uint8)


class CountingDetector(torch.nn.Module):
    """A cheap stand-in for Inception: per-channel means and squared means of the [0, 255] image, times a fixed
    random projection to `feature_dim`. It counts the images it sees (to tell cache hits from misses)."""

    def __init__(self, feature_dim: int = 16, sha256: str = "0" * 64) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.sha256 = sha256
        self.images_seen = 0
        self.projection = torch.nn.Parameter(torch.randn([6, feature_dim], generator=torch.Generator().manual_seed(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        x = images.to(self.projection.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat([1, 3, 1, 1])
        x = x / 255
        moments = torch.cat([x.mean(dim=[2, 3]), x.square().mean(dim=[2, 3])], dim=1)
        return moments @ self.projection


def tiny_generator(c_dim: int = 0, resolution: int = 16, channels: int = 3, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(
        z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=resolution, img_channels=channels,
        mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 128, "channel_max": 16},
    )  # fmt: skip
    return G.eval().requires_grad_(False)
