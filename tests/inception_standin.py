"""A tiny stand-in for NVIDIA's Inception TorchScript (``inception-2015-12-05.pt``), with its forward signature.

``forward(img, return_features=False, use_fp16=False, no_output_bias=False)`` on images [N, 3, H, W] in [0, 255]
(uint8 or float, any size): bilinear resize to 16x16, ``(x - 128) / 128``, a 3x3 convolution, pooled statistics
lifted to 2048 "pool3" features (``return_features=True``), else softmax probabilities over 1008 classes of a linear
head whose bias is left out with ``no_output_bias=True`` (NVIDIA's Inception Score call). Weights come from numpy's
RandomState(seed), so the same seed gives the same file on any machine. Used by the IS/FID tests and, with the same
file, by NVIDIA's metric code in a scratch checkout (tests/fixtures/metrics_nvidia/README.md).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from standin_support import scripted_with_seed

FEATURES = 2048
CLASSES = 1008


class StandinInception(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.RandomState(seed)

        def tensor(*shape: int, scale: float) -> torch.nn.Parameter:
            values = torch.from_numpy((rng.randn(*shape) * scale).astype(np.float32))
            return torch.nn.Parameter(values, requires_grad=False)  # frozen, as NVIDIA's file

        self.conv = tensor(8, 3, 3, 3, scale=(1 / 27) ** 0.5)
        self.conv_bias = tensor(8, scale=0.1)
        self.lift = tensor(FEATURES, 16, scale=0.5)
        self.head = tensor(CLASSES, 32, scale=0.5)
        self.head_bias = tensor(CLASSES, scale=2.0)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        x = img.to(torch.float32)
        x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
        x = (x - 128) / 128
        x = torch.tanh(F.conv2d(x, self.conv, self.conv_bias, padding=1))
        stats = torch.cat([x.mean(dim=[2, 3]), x.square().mean(dim=[2, 3])], dim=1) * 4
        features = F.relu(stats @ self.lift.t())
        if return_features:
            return features
        # Bounded logits (|logit| < ~30): no probability underflows to 0 in float32, where NVIDIA's IS gives NaN.
        logits = torch.tanh(3 * (features[:, :32] - features[:, 32:64])) * 4 @ self.head.t()
        if not no_output_bias:
            logits = logits + self.head_bias
        return F.softmax(logits, dim=1)


def build_standin_inception(seed: int = 0) -> torch.jit.ScriptModule:
    return scripted_with_seed(StandinInception, seed)


def save_standin_inception(path: str | os.PathLike[str], seed: int = 0) -> str:
    build_standin_inception(seed).save(str(path))
    return str(path)
