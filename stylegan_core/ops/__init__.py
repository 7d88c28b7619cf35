"""Low-level ops of StyleGAN2-ADA with NVIDIA-compatible signatures (NCHW tensors).

Every op has a plain PyTorch reference (``*_ref``) that is the specification; ``impl="auto" | "ref" | "cuda"``
selects a compiled kernel where one exists (see ``ops.dispatch``).
"""

from stylegan_core.ops.bias_act import ACTIVATIONS, ActivationSpec, bias_act, bias_act_ref
from stylegan_core.ops.conv2d_resample import conv2d_resample
from stylegan_core.ops.fma import fma
from stylegan_core.ops.misc import minibatch_std, normalize_2nd_moment
from stylegan_core.ops.modconv import modulated_conv2d
from stylegan_core.ops.upfirdn2d import (
    downsample2d,
    filter2d,
    filter_size,
    parse_padding,
    parse_scaling,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)

__all__ = [
    "ACTIVATIONS",
    "ActivationSpec",
    "bias_act",
    "bias_act_ref",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "filter_size",
    "fma",
    "minibatch_std",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "parse_padding",
    "parse_scaling",
    "setup_filter",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample2d",
]
