"""Autograd wiring of the compiled bias_act kernel: first and second order gradients.

One kernel serves three modes (see sg_ops_math.h): the forward value; ``grad``, the incoming gradient times the
activation's derivative; ``gradgrad``, the derivative of ``grad`` with respect to the pre-activation. Three
``autograd.Function`` classes use them:

- ``_BiasAct``: forward. It saves only what the derivative needs: the output ``y`` for activations whose derivative
  follows from their value (relu, lrelu, tanh, sigmoid, elu, selu, softplus), the input ``x`` for linear and swish
  (and for lrelu with a negative slope, where the output does not determine the sign of the input), ``y`` whenever
  clamping (it masks the gradient), and ``x`` for curved activations so that second-order gradients reach it.
- ``_BiasActGrad``: ``dx = dy * gain * f'``. It is linear in ``dy``, so its gradient with respect to ``dy`` is
  itself, to any order; its gradient with respect to ``x`` (and ``b``) is the ``gradgrad`` mode, zero for the
  piecewise-linear activations. This is what R1 and path-length regularization differentiate.
- ``_BiasActGradGrad``: the ``gradgrad`` mode. Differentiating it again (a third order) raises: no StyleGAN loss
  needs it, and the reference (impl="ref") supports any order.

The kernel's first argument fixes the output layout, so the other tensors are brought to the same strides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Activation ids of sg_ops_math.h, and whether each one's backward reads x (else y) and has a second derivative.
_ACTIVATION_IDS = {
    "linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4, "elu": 5, "selu": 6, "softplus": 7, "swish": 8,
}  # fmt: skip
_X_REFERENCE = {"linear", "swish"}
_CURVED = {"tanh", "sigmoid", "elu", "selu", "softplus", "swish"}
_FORWARD, _GRAD, _GRADGRAD = 0, 1, 2


@dataclass(frozen=True)
class BiasActParams:
    """Resolved arguments of one bias_act call, as the kernel takes them (clamp < 0: none)."""

    dim: int
    act_id: int
    ref_is_x: bool
    curved: bool
    alpha: float
    gain: float
    clamp: float

    @property
    def saves_x(self) -> bool:
        return self.ref_is_x or self.curved

    @property
    def saves_y(self) -> bool:
        return not self.ref_is_x or self.clamp >= 0


def make_params(act: str, dim: int, alpha: float, gain: float, clamp: float | None) -> BiasActParams:
    """Kernel parameters for an activation whose alpha and gain are already resolved."""
    if act not in _ACTIVATION_IDS:
        raise ValueError(f"bias_act_cuda: unknown activation {act!r}; expected one of {sorted(_ACTIVATION_IDS)}")
    ref_is_x = act in _X_REFERENCE or (act == "lrelu" and alpha < 0)
    clamp_value = -1.0 if clamp is None else float(clamp)
    return BiasActParams(dim, _ACTIVATION_IDS[act], ref_is_x, act in _CURVED, float(alpha), float(gain), clamp_value)


_EMPTY: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _empty(like: torch.Tensor) -> torch.Tensor:
    """A zero-element tensor standing for an absent argument."""
    key = (like.device, like.dtype)
    if key not in _EMPTY:
        _EMPTY[key] = torch.empty([0], device=like.device, dtype=like.dtype)
    return _EMPTY[key]


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when its memory is one dense block the kernel can walk (NCHW or channels_last), else a copy."""
    if x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def _like(t: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of ``layout`` (same shape), copying only when they differ."""
    if t.numel() == 0 or t.stride() == layout.stride():
        return t
    return torch.empty_like(layout).copy_(t)


def _reduce_bias(grad: torch.Tensor, dim: int) -> torch.Tensor:
    return grad.sum([i for i in range(grad.ndim) if i != dim])


def _call(backend: Any, mode: int, x, b, xref, yref, dy, p: BiasActParams) -> torch.Tensor:  # noqa: ANN001
    return backend.bias_act(x, b, xref, yref, dy, mode, p.dim, p.act_id, p.ref_is_x, p.alpha, p.gain, p.clamp)


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor, p: BiasActParams, backend: Any) -> torch.Tensor:  # noqa: ANN001
        empty = _empty(x)
        y = _call(backend, _FORWARD, x, b, empty, empty, empty, p)
        ctx.save_for_backward(x if p.saves_x else empty, b, y if p.saves_y else empty)
        ctx.p, ctx.backend = p, backend
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # noqa: ANN001, ANN205
        x, b, y = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # y enters only as the value the derivative is read from; its dependence on x is in the gradgrad mode.
            dx = _BiasActGrad.apply(dy, x, b, y.detach(), ctx.p, ctx.backend)
        if ctx.needs_input_grad[1] and b.numel():
            db = _reduce_bias(dx, ctx.p.dim)
        return (dx if ctx.needs_input_grad[0] else None), db, None, None


class _BiasActGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, x, b, y, p: BiasActParams, backend: Any) -> torch.Tensor:  # noqa: ANN001
        layout = x if x.numel() else y
        dy = _like(dy, layout) if layout.numel() else _dense(dy)
        dx = _call(backend, _GRAD, dy, b, x, y, _empty(dy), p)
        ctx.save_for_backward(dy if p.curved else _empty(dy), x, b, y)
        ctx.p, ctx.backend = p, backend
        return dx

    @staticmethod
    def backward(ctx, d_dx: torch.Tensor):  # noqa: ANN001, ANN205
        dy, x, b, y = ctx.saved_tensors
        p = ctx.p
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActGrad.apply(d_dx, x, b, y, p, ctx.backend)
        if p.curved and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _BiasActGradGrad.apply(d_dx, dy, x, b, y, p, ctx.backend)
            if ctx.needs_input_grad[2] and b.numel():
                d_b = _reduce_bias(d_x, p.dim)
            if not ctx.needs_input_grad[1]:
                d_x = None
        return d_dy, d_x, d_b, None, None, None


class _BiasActGradGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, d_dx, dy, x, b, y, p: BiasActParams, backend: Any) -> torch.Tensor:  # noqa: ANN001
        d_dx = _like(d_dx, dy)
        return _call(backend, _GRADGRAD, d_dx, b, x, y, dy, p)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):  # noqa: ANN002, ANN205
        raise RuntimeError(
            "bias_act: third-order gradients are not implemented by the CUDA kernel; use impl='ref' "
            "(or STYLEGAN_OPS_IMPL=ref) for them"
        )


def bias_act_with_backend(
    backend: Any,
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """bias_act through ``backend.bias_act`` (the compiled module, or a stand-in with its signature in tests)."""
    if not 0 <= dim < x.ndim:
        raise ValueError(f"bias_act_cuda: dim={dim} is out of range for a tensor with {x.ndim} dimensions")
    if b is None:
        b = _empty(x)
    elif b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise ValueError(f"bias_act_cuda: bias of shape {list(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")
    else:
        b = b.to(x.dtype).contiguous()
    # Made dense here, outside the Function, so that the copy (if any) stays on the autograd graph and second-order
    # gradients reach the caller's x.
    return _BiasAct.apply(_dense(x), b, make_params(act, dim, alpha, gain, clamp), backend)
