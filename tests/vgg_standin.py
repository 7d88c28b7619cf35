"""A tiny stand-in for NVIDIA's VGG16 TorchScript (``vgg16.pt``), with its forward signature and output conventions.

``forward(img, resize_images=True, return_features=False, return_lpips=False)`` on float images [N, 3, H, W] in
[0, 255]: ``resize_images`` area-resizes to 224x224 first (as NVIDIA's does); ``return_lpips`` gives, per image, the
concatenation over two conv stages of channel-normalised features times per-channel weights, divided by
sqrt(H*W), so that ``(a - b).square().sum()`` is an LPIPS-style distance; ``return_features`` gives a 16-value
feature vector (pooled, linear, unit length), like PR's features. Weights come from numpy's RandomState(seed), so
the same seed gives the same file on any machine and torch version. Used by the projector tests and, with the
same file, by NVIDIA's ``project()`` in a scratch checkout (tests/fixtures/projector/README.md).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from standin_support import scripted_with_seed


class StandinVGG16(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.RandomState(seed)

        def tensor(*shape: int, scale: float) -> torch.nn.Parameter:
            values = torch.from_numpy((rng.randn(*shape) * scale).astype(np.float32))
            return torch.nn.Parameter(values, requires_grad=False)  # as NVIDIA's file: frozen weights

        self.conv1 = tensor(4, 3, 3, 3, scale=(1 / 27) ** 0.5)
        self.bias1 = tensor(4, scale=0.1)
        self.conv2 = tensor(8, 4, 3, 3, scale=(1 / 36) ** 0.5)
        self.bias2 = tensor(8, scale=0.1)
        self.lin1 = torch.nn.Parameter(torch.from_numpy(rng.uniform(0.1, 1.0, 4).astype(np.float32)), False)
        self.lin2 = torch.nn.Parameter(torch.from_numpy(rng.uniform(0.1, 1.0, 8).astype(np.float32)), False)
        self.fc = tensor(16, 8, scale=(1 / 8) ** 0.5)

    def forward(
        self, img: torch.Tensor, resize_images: bool = True, return_features: bool = False, return_lpips: bool = False
    ) -> torch.Tensor:
        x = img.to(torch.float32)
        if resize_images:
            x = F.interpolate(x, size=(224, 224), mode="area")
        x = x / 127.5 - 1
        f1 = F.relu(F.conv2d(x, self.conv1, self.bias1, padding=1))
        f2 = F.relu(F.conv2d(F.avg_pool2d(f1, 2), self.conv2, self.bias2, padding=1))
        if return_lpips:
            parts = []
            for f, lin in ((f1, self.lin1), (f2, self.lin2)):
                unit = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                scaled = unit * lin.sqrt().reshape(1, -1, 1, 1) / float(f.shape[2] * f.shape[3]) ** 0.5
                parts.append(scaled.flatten(1))
            return torch.cat(parts, dim=1)
        pooled = f2.mean(dim=[2, 3]) @ self.fc.t()
        if return_features:
            return pooled / pooled.square().sum(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
        return pooled


def build_standin_vgg16(seed: int = 0) -> torch.jit.ScriptModule:
    return scripted_with_seed(StandinVGG16, seed)


def save_standin_vgg16(path: str | os.PathLike[str], seed: int = 0) -> str:
    build_standin_vgg16(seed).save(str(path))
    return str(path)
