"""Equalized-learning-rate building blocks shared by G and D, and helpers for the network constructors.

Equalized learning rate (Karras et al. 2018, section 4.1): weights are stored as N(0, 1) / lr_multiplier and scaled at
run time by ``lr_multiplier / sqrt(fan_in)``, so every layer learns at the same speed whatever its fan-in. Parameter
and buffer names, registration order and random initialisation order equal NVIDIA's, so NVIDIA state dicts load with
``strict=True`` and the same seed gives the same initial weights.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from stylegan_core.ops import ACTIVATIONS, bias_act, conv2d_resample, setup_filter

DEFAULT_RESAMPLE_FILTER: tuple[int, ...] = (1, 3, 3, 1)
"""Binomial low-pass filter used for every up/downsampling (NVIDIA's default)."""

RESIDUAL_GAIN = math.sqrt(0.5)
"""Gain of each branch of a residual sum so that the sum keeps unit variance (StyleGAN2, appendix B)."""


def default_gain(activation: str) -> float:
    """The gain that keeps an activation's output variance at 1 (sqrt(2) for relu-like functions)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[activation].default_gain


def block_dtype(use_fp16: bool, force_fp32: bool) -> torch.dtype:
    """float16 for fp16 blocks unless ``force_fp32``, on every device, as NVIDIA's blocks do.

    Whether a CPU training run keeps its float16 blocks is decided once, by option resolution
    (``presets.resolve_precision``), not here: a network always runs the precision its kwargs say.
    """
    return torch.float16 if use_fp16 and not force_fp32 else torch.float32


def float32_off_cuda(network: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """For inference off CUDA: run the float16 blocks in float32 (the ``force_fp32`` path), in place; returns it.

    NVIDIA's later code (StyleGAN3's copy of these networks) does the same for every non-CUDA input: CPUs emulate
    float16 about 10x slower than float32, and the float32 path is the more exact one. The kwargs (and so snapshots
    and exports) still say ``num_fp16_res``; only this in-memory instance computes in float32.
    """
    if torch.device(device).type != "cuda":
        for module in network.modules():
            if getattr(module, "use_fp16", False):
                module.use_fp16 = False
    return network


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in float16: the ``num_fp16_res`` highest resolutions, never 4x4."""
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


def check_resolution(owner: str, img_resolution: int) -> None:
    if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"{owner}: img_resolution must be a power of two >= 4, got {img_resolution!r}")


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


def check_kwargs(owner: str, group: str, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Reject unknown keys in a nested kwargs dict with a message naming them and the accepted ones."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{owner}: unknown {group} {unknown}; accepted: {sorted(allowed)}")


def keyword_names(cls: type, exclude: set[str]) -> list[str]:
    """Names of the constructor parameters of ``cls``, less ``exclude`` (the ones a parent network sets itself)."""
    names = list(inspect.signature(cls.__init__).parameters)[1:]
    return [name for name in names if name not in exclude]


def plain_kwargs(owner: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-serialisable deep copy of constructor kwargs (tuples and arrays become lists), for ``init_kwargs``."""

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, (np.ndarray, torch.Tensor)):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        return copy.deepcopy(value)

    plain = convert(kwargs)
    try:
        json.dumps(plain)
    except TypeError as error:
        raise ValueError(f"{owner}: constructor kwargs must be JSON-serialisable: {error}") from None
    return plain


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer ``act(x @ (weight * gain).T + bias * lr_multiplier)``; ``weight`` is stored ``[out, in]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        default_gain(activation)  # validates the name at construction time
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Equalized-lr convolution with optional up/downsampling, bias, activation and pre-activation clamp.

    ``trainable=False`` (Freeze-D) stores weight and bias as buffers under the same names, so they get no gradient,
    are skipped by optimisers, and still appear in the state dict.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))
        self.act_gain = default_gain(activation)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            if bias_value is not None:
                self.register_buffer("bias", bias_value)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        # A transposed convolution (up > 1) wants the weight unflipped; NVIDIA flips only for up == 1.
        x = conv2d_resample(
            x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
            flip_weight=(self.up == 1),
        )  # fmt: skip
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
            f"up={self.up}, down={self.down}"
        )
