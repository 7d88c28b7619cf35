"""Bilinear ``grid_sample`` whose gradient w.r.t. the input is itself differentiable (R1 through augmentation).

R1 differentiates ``D(augment(x))`` w.r.t. ``x`` with ``create_graph=True`` and then backpropagates the squared
gradient into D's weights, which needs the derivative of grid_sample's input-gradient. Current PyTorch (checked on
2.13) provides it natively, but older releases raise "derivative for grid_sampler_2d_backward is not implemented"
(pytorch#34704, still reported on 2.0) and this project accepts torch>=2.1. For a fixed sampling grid the
input-gradient is a *linear* map of the output gradient (the adjoint of sampling: each output gradient is scattered
onto the four neighbouring input pixels with the bilinear weights), so its own derivative is the adjoint of that
adjoint, i.e. grid_sample again. Two small autograd Functions express exactly that, so gradients of any order work
on every supported version with native kernels. The pipeline's grid never requires grad (its matrices come from
random draws), so no gradient w.r.t. the grid is provided; a grid that requires grad falls back to the native op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Integer codes of aten::grid_sampler_2d_backward.
_BILINEAR = 0
_ZEROS_PADDING = 0


class _SampleBilinear(torch.autograd.Function):
    """images [N,C,H,W], grid [N,Ho,Wo,2] -> [N,C,Ho,Wo]; backward w.r.t. images only."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(grid)
        ctx.input_shape = images.shape
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        (grid,) = ctx.saved_tensors
        grad_images = None
        if ctx.needs_input_grad[0]:
            grad_images = _SampleBilinearAdjoint.apply(grad_output, grid, ctx.input_shape)
        return grad_images, None


class _SampleBilinearAdjoint(torch.autograd.Function):
    """The input-gradient of bilinear sampling: a linear map of ``grad_output`` whose adjoint is sampling."""

    @staticmethod
    def forward(ctx, grad_output: torch.Tensor, grid: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(grid)
        # The kernel reads the input only for its shape and for the grid gradient, which is masked off here.
        placeholder = grad_output.new_empty(input_shape)
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, placeholder, grid, _BILINEAR, _ZEROS_PADDING, False, [True, False]
        )
        return grad_images

    @staticmethod
    def backward(ctx, grad_grad_images: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:  # type: ignore[override]
        (grid,) = ctx.saved_tensors
        grad_grad_output = None
        if ctx.needs_input_grad[0]:
            grad_grad_output = _SampleBilinear.apply(grad_grad_images, grid)
        return grad_grad_output, None, None


def grid_sample_bilinear(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(images, grid, "bilinear", "zeros", align_corners=False)``, twice differentiable in ``images``."""
    if grid.requires_grad:
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _SampleBilinear.apply(images, grid)
