"""The StyleGAN2 discriminator: blocks from img_resolution down to 8x8, then the 4x4 epilogue.

Architectures (StyleGAN2 paper, figure 7): ``orig`` (FromRGB at the input only), ``skip`` (FromRGB at every
resolution of a downsampled copy of the image) and ``resnet`` (residual blocks; NVIDIA's default). Conditional
discriminators project the features onto an embedding of the label (Miyato & Koyama 2018).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from stylegan_core.networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    RESIDUAL_GAIN,
    Conv2dLayer,
    FullyConnectedLayer,
    block_dtype,
    check_choice,
    check_kwargs,
    check_resolution,
    fp16_resolution,
    keyword_names,
    plain_kwargs,
)
from stylegan_core.networks.mapping import MappingNetwork
from stylegan_core.ops import downsample2d, minibatch_std, setup_filter

D_ARCHITECTURES = ("orig", "skip", "resnet")


class DiscriminatorBlock(torch.nn.Module):
    """fromrgb (first block, or every block for ``skip``) -> conv0 3x3 -> conv1 3x3 down 2x (+ resnet skip).

    Freeze-D: layers whose running index (``first_layer_idx`` + position in the block) is below ``freeze_layers``
    are built with ``trainable=False``.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        check_choice("DiscriminatorBlock", "architecture", architecture, D_ARCHITECTURES)
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"DiscriminatorBlock: in_channels must be 0 or {tmp_channels}, got {in_channels}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_layers = 0
        self._freeze_layers = freeze_layers
        common = dict(conv_clamp=conv_clamp, channels_last=self.channels_last)
        # fromrgb and conv0 never resample, so (as in NVIDIA's) they keep the default filter.
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, activation=activation, trainable=self._next_trainable(),
                **common,
            )  # fmt: skip
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, kernel_size=3, activation=activation, trainable=self._next_trainable(),
            **common,
        )  # fmt: skip
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
            trainable=self._next_trainable(), resample_filter=resample_filter, **common,
        )  # fmt: skip
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, trainable=self._next_trainable(),
                resample_filter=resample_filter, channels_last=self.channels_last,
            )  # fmt: skip

    def _next_trainable(self) -> bool:
        layer_index = self.first_layer_idx + self.num_layers
        self.num_layers += 1
        return layer_index >= self._freeze_layers

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the downsampled features and (``skip`` only) the downsampled image."""
        dtype = block_dtype(self.use_fp16, force_fp32)
        channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if x is not None:
            self._check_input("x", x, self.in_channels)
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            self._check_input("img", img, self.img_channels)
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=RESIDUAL_GAIN)
            x = self.conv0(x)
            x = self.conv1(x, gain=RESIDUAL_GAIN)
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img

    def _check_input(self, name: str, value: torch.Tensor | None, channels: int) -> None:
        res = self.resolution
        if value is None or value.ndim != 4 or tuple(value.shape[1:]) != (channels, res, res):
            shape = None if value is None else list(value.shape)
            raise ValueError(f"DiscriminatorBlock {res}: expected {name} [N, {channels}, {res}, {res}], got {shape}")

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class MinibatchStdLayer(torch.nn.Module):
    """Appends the stddev over groups of samples as extra channels, so D can see the batch's diversity."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_std(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head, always float32: (skip: + fromrgb) -> mbstd -> conv 3x3 -> fc -> out (-> label projection)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("DiscriminatorEpilogue", "architecture", architecture, D_ARCHITECTURES)
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels)
            if mbstd_num_channels > 0
            else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * (resolution**2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        """Return logits [N, 1]."""
        res = self.resolution
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, res, res):
            raise ValueError(
                f"DiscriminatorEpilogue: expected x [N, {self.in_channels}, {res}, {res}], got {list(x.shape)}"
            )
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            if cmap is None or tuple(cmap.shape) != (x.shape[0], self.cmap_dim):
                shape = None if cmap is None else list(cmap.shape)
                raise ValueError(f"DiscriminatorEpilogue: expected cmap [N, {self.cmap_dim}], got {shape}")
            # Projection discriminator: logit = <features, label embedding>, normalised by sqrt(cmap_dim).
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, cmap_dim={self.cmap_dim}, architecture={self.architecture}"


# Keys that NVIDIA's Discriminator accepts inside its nested kwargs (the rest it sets itself).
D_BLOCK_KWARGS = keyword_names(
    DiscriminatorBlock,
    {"in_channels", "tmp_channels", "out_channels", "resolution", "img_channels", "first_layer_idx", "use_fp16",
     "architecture", "conv_clamp"},
)  # fmt: skip
D_MAPPING_KWARGS = keyword_names(MappingNetwork, {"z_dim", "c_dim", "w_dim", "num_ws", "w_avg_beta"})
D_EPILOGUE_KWARGS = keyword_names(
    DiscriminatorEpilogue, {"in_channels", "cmap_dim", "resolution", "img_channels", "architecture", "conv_clamp"}
)


class Discriminator(torch.nn.Module):
    """img [N, img_channels, R, R], c [N, c_dim] -> logits [N, 1].

    ``init_kwargs`` holds the constructor arguments as plain JSON data: ``Discriminator(**D.init_kwargs)`` rebuilds it.
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: Mapping[str, Any] | None = None,
        mapping_kwargs: Mapping[str, Any] | None = None,
        epilogue_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_resolution("Discriminator", img_resolution)
        if img_resolution < 8:
            raise ValueError(f"Discriminator: img_resolution must be >= 8, got {img_resolution}")
        block_kwargs, mapping_kwargs, epilogue_kwargs = (
            dict(kw or {}) for kw in (block_kwargs, mapping_kwargs, epilogue_kwargs)
        )
        check_kwargs("Discriminator", "block_kwargs", block_kwargs, D_BLOCK_KWARGS)
        check_kwargs("Discriminator", "mapping_kwargs", mapping_kwargs, D_MAPPING_KWARGS)
        check_kwargs("Discriminator", "epilogue_kwargs", epilogue_kwargs, D_EPILOGUE_KWARGS)
        self.init_kwargs = plain_kwargs(
            "Discriminator",
            dict(
                c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
                channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
                cmap_dim=cmap_dim, block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
                epilogue_kwargs=epilogue_kwargs,
            ),
        )  # fmt: skip
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_index = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0, channels[res], channels[res // 2], resolution=res,
                first_layer_idx=layer_index, use_fp16=(res >= lowest_fp16), **block_kwargs, **common,
            )  # fmt: skip
            setattr(self, f"b{res}", block)
            layer_index += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor, force_fp32: bool = False) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}"
