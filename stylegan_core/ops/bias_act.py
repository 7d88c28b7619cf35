"""Fused bias + activation + gain + clamp, as used after every fully connected and convolution layer.

The reference below is the specification; a compiled CUDA kernel (``ops/cuda``) is chosen by ``ops.dispatch`` when
available. Order of operations (NVIDIA's): add bias along ``dim``, apply the activation, multiply by the gain
(skipped when it is exactly 1), clamp to ``[-clamp, clamp]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylegan_core.ops.dispatch import choose_impl


@dataclass(frozen=True)
class ActivationSpec:
    """One activation function and the alpha and gain it uses when the caller gives none."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float


# Gains of sqrt(2) keep the activation variance of relu-like functions at 1 (He init; StyleGAN's equalized lr).
ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(lambda x, alpha: x, 0.0, 1.0),
    "relu": ActivationSpec(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    # elu, selu and softplus use their standard constants; an alpha passed by the caller is ignored, as in NVIDIA's.
    "elu": ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": ActivationSpec(lambda x, alpha: F.silu(x), 0.0, math.sqrt(2)),
}


def resolve_activation(
    act: str, alpha: float | None, gain: float | None, clamp: float | None
) -> tuple[ActivationSpec, float, float, float | None]:
    """Validate the arguments and fill in the activation's defaults; returns ``(spec, alpha, gain, clamp)``."""
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    spec = ACTIVATIONS[act]
    alpha = float(alpha if alpha is not None else spec.default_alpha)
    gain = float(gain if gain is not None else spec.default_gain)
    return spec, alpha, gain, (None if clamp is None else float(clamp))


def _check_bias(x: torch.Tensor, b: torch.Tensor | None, dim: int) -> None:
    if not 0 <= dim < x.ndim:
        raise ValueError(f"bias_act: dim={dim} is out of range for a tensor with {x.ndim} dimensions")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias_act: bias of shape {list(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Plain PyTorch bias_act; supports gradients of any order."""
    spec, alpha, gain, clamp = resolve_activation(act, alpha, gain, clamp)
    _check_bias(x, b, dim)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Add ``b`` along ``dim``, apply ``act``, scale by ``gain`` and clamp to ``[-clamp, clamp]``.

    ``alpha`` and ``gain`` default per activation (lrelu alpha 0.2; gain sqrt(2) for relu, lrelu and swish, else 1);
    ``clamp=None`` disables clamping. ``impl`` is "auto", "ref" or "cuda" (see ``ops.dispatch``).
    """
    if choose_impl("bias_act", impl, x) == "cuda":
        from stylegan_core.ops.cuda import bias_act_cuda

        return bias_act_cuda(x, b, dim, act, alpha, gain, clamp)
    return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
