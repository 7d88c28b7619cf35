"""The mapping network z (+ label c) -> w, with the running mean ``w_avg`` used for the truncation trick."""

from __future__ import annotations

import torch

from stylegan_core.networks.layers import FullyConnectedLayer, default_gain
from stylegan_core.ops import normalize_2nd_moment


class MappingNetwork(torch.nn.Module):
    """MLP from normalised z (concatenated with a normalised label embedding) to w, broadcast to ``num_ws`` copies.

    ``num_ws=None`` returns ``[N, w_dim]`` (D's label mapping); ``w_avg_beta=None`` disables ``w_avg`` (and
    truncation). Labels are embedded by a linear layer of ``embed_features`` outputs (default w_dim).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork: z_dim and c_dim are both 0, so there is no input")
        if num_layers < 1:
            raise ValueError(f"MappingNetwork: num_layers must be >= 1, got {num_layers}")
        default_gain(activation)
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for index in range(num_layers):
            layer = FullyConnectedLayer(
                features[index], features[index + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{index}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
        update_emas: bool | None = None,
    ) -> torch.Tensor:
        """Map ``z`` [N, z_dim] and ``c`` [N, c_dim] to ws [N, num_ws, w_dim] (or [N, w_dim] if num_ws is None).

        ``w_avg`` tracking follows NVIDIA's ADA rule: updated in train mode unless ``skip_w_avg_update`` (set for the
        second latent of style mixing). ``update_emas`` (StyleGAN3's spelling), when given, decides instead.
        Truncation pulls the first ``truncation_cutoff`` ws (all if None) towards ``w_avg``:
        ``w_avg + psi * (w - w_avg)``.
        """
        x = self._embed_inputs(z, c)
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        update = (self.training and not skip_w_avg_update) if update_emas is None else update_emas
        if update and self.w_avg_beta is not None and self.num_ws is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _embed_inputs(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            _check_2d("z", z, self.z_dim)
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            _check_2d("c", c, self.c_dim)
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _truncate(self, x: torch.Tensor, psi: float, cutoff: int | None) -> torch.Tensor:
        if self.w_avg_beta is None or self.num_ws is None:
            raise ValueError("MappingNetwork: truncation needs w_avg, which this network does not track")
        if cutoff is None:
            return self.w_avg.lerp(x, psi)
        x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


def _check_2d(name: str, value: torch.Tensor | None, features: int) -> None:
    if value is None or value.ndim != 2 or value.shape[1] != features:
        shape = None if value is None else list(value.shape)
        raise ValueError(f"MappingNetwork: {name} must have shape [N, {features}], got {shape}")
