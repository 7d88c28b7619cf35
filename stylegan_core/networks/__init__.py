"""StyleGAN2 generator and discriminator with NVIDIA's class names, constructor arguments and state-dict keys.

float16 blocks (``num_fp16_res``), ``conv_clamp`` and ``fp16_channels_last`` behave as NVIDIA's on every device; the
choice to train in float32 on a CPU is made by option resolution (``presets.resolve_precision``), not here.

Differences from NVIDIA's ``training/networks.py`` (all deliberate):
- residual sums are computed out of place (same numbers; safe for kernels that keep their outputs for backward).
- ``MappingNetwork.forward`` also accepts StyleGAN3's ``update_emas`` beside ADA's ``skip_w_avg_update``.
- bad arguments raise ``ValueError`` naming the argument instead of failing an ``assert``.
"""

from __future__ import annotations

from stylegan_core.config import NetworkConfig
from stylegan_core.networks.discriminator import (
    Discriminator,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    MinibatchStdLayer,
)
from stylegan_core.networks.generator import Generator
from stylegan_core.networks.layers import Conv2dLayer, FullyConnectedLayer
from stylegan_core.networks.mapping import MappingNetwork
from stylegan_core.networks.synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer


def generator_kwargs(net: NetworkConfig, resolution: int, img_channels: int, c_dim: int) -> dict:
    """NVIDIA-style Generator constructor kwargs for our network config (as NVIDIA's train.py builds them)."""
    return dict(
        z_dim=net.z_dim,
        c_dim=c_dim,
        w_dim=net.w_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=net.mapping_layers),
        synthesis_kwargs=dict(
            channel_base=net.channel_base,
            channel_max=net.channel_max,
            num_fp16_res=net.num_fp16_res,
            conv_clamp=net.conv_clamp,
            architecture=net.g_architecture,
            fp16_channels_last=net.fp16_channels_last,
        ),
    )


def discriminator_kwargs(net: NetworkConfig, resolution: int, img_channels: int, c_dim: int) -> dict:
    """NVIDIA-style Discriminator constructor kwargs for our network config (Freeze-D via ``freeze_layers``)."""
    return dict(
        c_dim=c_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        architecture=net.d_architecture,
        channel_base=net.channel_base,
        channel_max=net.channel_max,
        num_fp16_res=net.num_fp16_res,
        conv_clamp=net.conv_clamp,
        cmap_dim=net.cmap_dim,
        block_kwargs=dict(freeze_layers=net.freezed, fp16_channels_last=net.fp16_channels_last),
        mapping_kwargs={},
        epilogue_kwargs=dict(mbstd_group_size=net.mbstd_group, mbstd_num_channels=net.mbstd_num_channels),
    )


def build_generator(net: NetworkConfig, resolution: int, img_channels: int, c_dim: int) -> Generator:
    """A freshly initialised Generator for images of ``resolution`` px, ``img_channels`` channels, ``c_dim`` labels."""
    return Generator(**generator_kwargs(net, resolution, img_channels, c_dim))


def build_discriminator(net: NetworkConfig, resolution: int, img_channels: int, c_dim: int) -> Discriminator:
    """A freshly initialised Discriminator matching ``build_generator``'s images."""
    return Discriminator(**discriminator_kwargs(net, resolution, img_channels, c_dim))


__all__ = [
    "Conv2dLayer",
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "MinibatchStdLayer",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "build_discriminator",
    "build_generator",
    "discriminator_kwargs",
    "generator_kwargs",
]
