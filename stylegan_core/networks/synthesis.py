"""The synthesis network: ws -> image, built from modulated convolutions (StyleGAN2 paper, section 2).

Shapes are NCHW. Blocks exist for every resolution 4, 8, ..., img_resolution. Output architectures (paper, figure 7):
``orig`` (ToRGB only after the last block), ``skip`` (ToRGB in every block, upsampled images summed) and ``resnet``
(residual blocks with a 1x1 upsampling skip convolution, ToRGB only after the last block).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stylegan_core.networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    RESIDUAL_GAIN,
    Conv2dLayer,
    FullyConnectedLayer,
    block_dtype,
    check_choice,
    check_resolution,
    default_gain,
    fp16_resolution,
)
from stylegan_core.ops import bias_act, modulated_conv2d, setup_filter, upsample2d

NOISE_MODES = ("random", "const", "none")
G_ARCHITECTURES = ("orig", "skip", "resnet")


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + per-pixel noise + bias + activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = default_gain(activation)
        # Styles start at 1 (affine bias 1), so at initialisation the layer behaves like an unmodulated convolution.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1,
    ) -> torch.Tensor:
        check_choice("SynthesisLayer", "noise_mode", noise_mode, NOISE_MODES)
        in_resolution = self.resolution // self.up
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, in_resolution, in_resolution):
            raise ValueError(
                f"SynthesisLayer: expected x [N, {self.in_channels}, {in_resolution}, {in_resolution}], "
                f"got {list(x.shape)}"
            )
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv,
        )  # fmt: skip
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
            f"up={self.up}, activation={self.activation}"
        )


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation (StyleGAN2, section 2.2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        # Without demodulation the equalized-lr gain must be applied somewhere: it goes into the styles.
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: (const | conv0 up 2x) -> conv1 -> optional ToRGB.

    Consumes ``num_conv + num_torgb`` ws; the ToRGB w is shared with the next block's first conv.
    ``kernel_size``, ``use_noise`` and ``activation`` go to both convolution layers (NVIDIA's ``layer_kwargs``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        kernel_size: int = 3,
        use_noise: bool = True,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        check_choice("SynthesisBlock", "architecture", architecture, G_ARCHITECTURES)
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(
            kernel_size=kernel_size, use_noise=use_noise, activation=activation, channels_last=self.channels_last
        )
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs,
            )  # fmt: skip
            self.num_conv += 1
        # conv1 and skip keep NVIDIA's choice of filters: conv1 never resamples, so it gets the default filter.
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter,
                channels_last=self.channels_last,
            )  # fmt: skip

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise_mode: str = "random",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the block's features and the running image (float32, None until the first ToRGB)."""
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_conv + self.num_torgb, self.w_dim):
            raise ValueError(
                f"SynthesisBlock {self.resolution}: expected ws [N, {self.num_conv + self.num_torgb}, {self.w_dim}], "
                f"got {list(ws.shape)}"
            )
        w_iter = iter(ws.unbind(dim=1))
        dtype = block_dtype(self.use_fp16, force_fp32)
        channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_modconv is None:
            # Grouped convolution only for inference; float16 overflows in it unless the batch is 1.
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        layer_kwargs = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        else:
            self._check_input("x", x, self.in_channels)
            x = x.to(dtype=dtype, memory_format=memory_format)
            if self.architecture == "resnet":
                y = self.skip(x, gain=RESIDUAL_GAIN)
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), gain=RESIDUAL_GAIN, **layer_kwargs)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), **layer_kwargs)
                x = self.conv1(x, next(w_iter), **layer_kwargs)
        if img is not None:
            self._check_input("img", img, self.img_channels)
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img

    def _check_input(self, name: str, value: torch.Tensor | None, channels: int) -> None:
        half = self.resolution // 2
        if value is None or value.ndim != 4 or tuple(value.shape[1:]) != (channels, half, half):
            shape = None if value is None else list(value.shape)
            raise ValueError(f"SynthesisBlock {self.resolution}: expected {name} [N, {channels}, {half}, {half}], "
                             f"got {shape}")  # fmt: skip

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisNetwork(torch.nn.Module):
    """All synthesis blocks; channels at resolution r are ``min(channel_base // r, channel_max)``.

    The ``num_fp16_res`` highest resolutions run in float16 (never 4x4), on any device, as NVIDIA's do.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        architecture: str = "skip",
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        fp16_channels_last: bool = False,
        kernel_size: int = 3,
        use_noise: bool = True,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        check_resolution("SynthesisNetwork", img_resolution)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        lowest_fp16 = fp16_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=(res == img_resolution), architecture=architecture,
                resample_filter=resample_filter, conv_clamp=conv_clamp, use_fp16=(res >= lowest_fp16),
                fp16_channels_last=fp16_channels_last, kernel_size=kernel_size, use_noise=use_noise,
                activation=activation,
            )  # fmt: skip
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """``ws`` [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution] (float32)."""
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"SynthesisNetwork: expected ws [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        block_ws = []
        w_index = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws.append(ws.narrow(1, w_index, block.num_conv + block.num_torgb))
            w_index += block.num_conv
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws, strict=True):
            block = getattr(self, f"b{res}")
            x, img = block(x, img, cur_ws, force_fp32=force_fp32, fused_modconv=fused_modconv, noise_mode=noise_mode)
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"
