"""Build our networks from NVIDIA StyleGAN2-ADA constructor kwargs and state dicts.

Our classes take NVIDIA's constructor arguments unchanged (including the nested ``mapping_kwargs``,
``synthesis_kwargs``, ``block_kwargs`` and ``epilogue_kwargs``), and our parameter and buffer names **equal NVIDIA's
state-dict keys** (``mapping.fc0.weight``, ``synthesis.b4.conv1.affine.bias``, ``b32.fromrgb.weight``, ...), in the
same order. No renaming happens here: a state dict is loaded as is, with strict key and shape checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stylegan_core.networks import Discriminator, Generator

if TYPE_CHECKING:
    from stylegan_core.io.nvidia_pickle import NvidiaNetworks

StateDict = Mapping[str, "torch.Tensor | np.ndarray"]

_GENERATOR_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_DISCRIMINATOR_KWARGS = (
    "c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
    "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs",
)  # fmt: skip


def generator_from_nvidia(init_kwargs: Mapping[str, Any], state_dict: StateDict) -> Generator:
    """A Generator built from NVIDIA's ``Generator`` kwargs, holding the weights and buffers of ``state_dict``."""
    kwargs = _checked_kwargs("Generator", init_kwargs, _GENERATOR_KWARGS)
    network = Generator(**kwargs)
    load_state_dict_strict(network, state_dict, "Generator")
    return network


def discriminator_from_nvidia(init_kwargs: Mapping[str, Any], state_dict: StateDict) -> Discriminator:
    """A Discriminator built from NVIDIA's ``Discriminator`` kwargs, holding the tensors of ``state_dict``."""
    kwargs = _checked_kwargs("Discriminator", init_kwargs, _DISCRIMINATOR_KWARGS)
    network = Discriminator(**kwargs)
    load_state_dict_strict(network, state_dict, "Discriminator")
    return network


def _checked_kwargs(owner: str, init_kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    kwargs = dict(init_kwargs)
    # NVIDIA's training_options.json records the class next to its kwargs; accept it when it names the right class.
    class_name = kwargs.pop("class_name", None)
    if class_name is not None and str(class_name).rsplit(".", 1)[-1] != owner:
        raise ValueError(f"{owner} kwargs name class {class_name!r}, expected NVIDIA's training.networks.{owner}")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown NVIDIA {owner} kwargs {unknown}; accepted: {list(allowed)}")
    return kwargs


def load_state_dict_strict(network: torch.nn.Module, state_dict: StateDict, owner: str) -> None:
    """Copy every parameter and buffer from ``state_dict`` (tensors or numpy arrays) into ``network``.

    Raises ``ValueError`` listing missing, unexpected and mismatched-shape keys. A 0-d tensor and a one-element
    array are treated as the same shape (NVIDIA's scalar ``noise_strength`` often travels as ``[1]``).
    """
    expected = network.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    converted: dict[str, torch.Tensor] = {}
    mismatched = []
    for key, target in expected.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        value = value.detach() if torch.is_tensor(value) else torch.from_numpy(np.array(value))
        if tuple(value.shape) != tuple(target.shape):
            if value.numel() == 1 and target.numel() == 1 and min(value.ndim, target.ndim) == 0:
                value = value.reshape(target.shape)
            else:
                mismatched.append(f"{key}: got {list(value.shape)}, expected {list(target.shape)}")
                continue
        converted[key] = value.to(dtype=target.dtype)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{owner} state dict does not match the network built from its kwargs: "
            f"missing keys {missing}; unexpected keys {unexpected}; shape mismatches {mismatched}"
        )
    network.load_state_dict(converted, strict=True)


# NVIDIA network pickles (TRANSFER). The unpickler is imported on first use, so loading state dicts never needs it.
def load_nvidia_pickle(path: str | os.PathLike[str]) -> NvidiaNetworks:
    """Import G, D, G_ema and augment p from an NVIDIA .pkl without running its code (``io.nvidia_pickle``)."""
    from stylegan_core.io.nvidia_pickle import load_nvidia_pickle as load

    return load(path)


def is_nvidia_pickle(path: str | os.PathLike[str]) -> bool:
    """True for a plain pickle as NVIDIA writes its network snapshots; False for torch.save archives."""
    from stylegan_core.io.nvidia_pickle import is_nvidia_pickle as sniff

    return sniff(path)
