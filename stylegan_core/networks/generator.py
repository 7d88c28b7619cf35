"""The StyleGAN2 generator: mapping network + synthesis network, with NVIDIA's constructor and call signatures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from stylegan_core.networks.layers import check_kwargs, keyword_names, plain_kwargs
from stylegan_core.networks.mapping import MappingNetwork
from stylegan_core.networks.synthesis import SynthesisNetwork

# Keys that NVIDIA's Generator accepts inside its nested kwargs (the rest it sets itself).
G_MAPPING_KWARGS = keyword_names(MappingNetwork, {"z_dim", "c_dim", "w_dim", "num_ws"})
G_SYNTHESIS_KWARGS = keyword_names(SynthesisNetwork, {"w_dim", "img_resolution", "img_channels"})


class Generator(torch.nn.Module):
    """z [N, z_dim], c [N, c_dim] -> image [N, img_channels, img_resolution, img_resolution] in about [-1, 1].

    ``init_kwargs`` holds the constructor arguments as plain JSON data: ``Generator(**G.init_kwargs)`` rebuilds it.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: Mapping[str, Any] | None = None,
        synthesis_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        check_kwargs("Generator", "mapping_kwargs", mapping_kwargs, G_MAPPING_KWARGS)
        check_kwargs("Generator", "synthesis_kwargs", synthesis_kwargs, G_SYNTHESIS_KWARGS)
        self.init_kwargs = plain_kwargs(
            "Generator",
            dict(
                z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs,
            ),
        )  # fmt: skip
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # Built in NVIDIA's order (synthesis first) so parameters and seeded initial weights line up with theirs.
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """Generate images; in train mode the mapping network also updates ``w_avg`` (as NVIDIA's)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, force_fp32=force_fp32)

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
            f"img_resolution={self.img_resolution}, img_channels={self.img_channels}"
        )
