"""Shared helpers for the training tests: a tiny NVIDIA-layout dataset and tiny training options."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_core.config import TrainOptions
from stylegan_core.presets import resolve_options


def write_tiny_dataset(path: Path, count: int = 12, resolution: int = 16, classes: int = 3, seed: int = 0) -> Path:
    """A zip in NVIDIA's dataset_tool layout: coloured blobs whose colour depends on the class label."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    labels = []
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(count):
            label = index % classes
            cx, cy, radius = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
            mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2)[..., None]
            colour = np.eye(3)[label] * 200 + 30
            pixels = np.where(mask, colour, 20 + 10 * rng.rand(resolution, resolution, 3)).astype(np.uint8)
            buffer = io.BytesIO()
            PIL.Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
            name = f"00000/img{index:08d}.png"
            archive.writestr(name, buffer.getvalue())
            labels.append([name, label])
        archive.writestr("dataset.json", json.dumps({"labels": labels}))
    return path


TINY_OVERRIDES = {
    "cbase": 256, "cmax": 32, "map": 2, "z_dim": 32, "w_dim": 32, "batch": 4, "batch_gpu": 4, "mbstd_group": 2,
    "kimg": 0.032, "tick": 0.016, "snap": 1, "metrics": "none", "workers": 0, "fp32": True, "glr": 0.002,
    "dlr": 0.002, "gamma": 1,
}  # fmt: skip


def tiny_options(data: Path, **overrides: object) -> TrainOptions:
    """A 16 px network with 32-wide layers: a few iterations take well under a second on a CPU."""
    merged = {**TINY_OVERRIDES, "data": str(data), **overrides}
    return resolve_options("auto", 16, 1, merged, source="tiny test options")


def replace_loop(options: TrainOptions, **fields: object) -> TrainOptions:
    return dataclasses.replace(options, loop=dataclasses.replace(options.loop, **fields))
