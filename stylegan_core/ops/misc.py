"""Small tensor helpers of the StyleGAN2 networks: 2nd-moment normalisation and minibatch standard deviation."""

from __future__ import annotations

import torch


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that the mean of its squares along ``dim`` is 1 (applied to z and the label embedding)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def minibatch_std(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """Append ``num_channels`` feature maps holding the stddev across groups of samples (StyleGAN2 D epilogue).

    The batch of N splits into groups of ``G = min(group_size, N)`` samples (``None``: the whole batch); sample ``i``
    belongs to group ``i mod (N / G)``. Channels split into ``num_channels`` slices; for each group and slice the
    per-pixel stddev over the group's samples is averaged over channels and pixels, and broadcast back to
    ``[N, num_channels, H, W]``. Output: ``[N, C + num_channels, H, W]``.
    """
    if x.ndim != 4:
        raise ValueError(f"minibatch_std: x must be NCHW, got shape {list(x.shape)}")
    n, c, h, w = x.shape
    group = n if group_size is None else min(int(group_size), n)
    if group < 1 or n % group:
        raise ValueError(
            f"minibatch_std: batch of {n} samples cannot be split into groups of {group} (mbstd group size "
            f"{group_size}); make the per-GPU batch (batch_gpu) a multiple of the mbstd group size, or set "
            "the mbstd group size to a divisor of it"
        )
    if num_channels < 1 or c % num_channels:
        raise ValueError(
            f"minibatch_std: {c} channels cannot be split into num_channels={num_channels} slices; "
            "use a num_channels that divides the channel count"
        )
    # Sample index i = g * (n // group) + j, so reshaping with the group axis first puts sample i in group j.
    y = x.reshape(group, -1, num_channels, c // num_channels, h, w)  # [G, n/G, F, C/F, H, W]
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n/G, F, C/F, H, W] stddev over each group
    y = y.mean(dim=[2, 3, 4])  # [n/G, F]
    y = y.reshape(-1, num_channels, 1, 1).repeat(group, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)
