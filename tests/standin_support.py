"""What the stand-in detectors (tests/inception_standin.py, tests/vgg_standin.py) share: TorchScript compiled once."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch

_compiled: dict[Callable[[int], torch.nn.Module], torch.jit.ScriptModule] = {}


def scripted_with_seed(module_type: Callable[[int], torch.nn.Module], seed: int) -> torch.jit.ScriptModule:
    """`module_type(seed)` as TorchScript: compiled once per process (the slow part), then a copy of that module
    given the weights of `seed`. torch.jit.script still writes the files NVIDIA's detectors are, so its deprecation
    warning is not ours to act on."""
    if module_type not in _compiled:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            _compiled[module_type] = torch.jit.script(module_type(0).eval())
    module = copy.deepcopy(_compiled[module_type])
    module.load_state_dict(module_type(seed).state_dict())
    return module
