"""Fine-tuning rules: may the weights of a source snapshot (ours or an imported NVIDIA pickle) seed these networks?

NVIDIA copies every same-named tensor and silently skips the rest (``copy_params_and_buffers(require_all=False)``),
so a 1024 px source fine-tuned at 256 px, or an RGB source on grey data, either crashes deep inside ``copy_`` or
trains from a half-initialised network without saying so. Here a different image resolution or channel count, or
any tensor whose shape differs, is an error that lists the tensors concerned; tensors that only the target has
(e.g. a label embedding when fine-tuning an unconditional network on labels) are allowed and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

_NETWORK_NAMES = ("G", "D", "G_ema")
_KWARGS_OF = {"G": "G_kwargs", "G_ema": "G_kwargs", "D": "D_kwargs"}
_LISTED = 40  # tensors named per category in an error, so a 1024 px mismatch stays readable


def transfer_mismatches(
    snapshot: Mapping[str, Any], targets: Mapping[str, torch.nn.Module]
) -> tuple[list[str], list[str]]:
    """(problems, left_at_init) for copying ``snapshot``'s G/D/G_ema state dicts into ``targets`` by name.

    ``problems`` is empty when the copy is sound; ``left_at_init`` names the target tensors the source lacks.
    """
    problems = _geometry_mismatches(snapshot, targets)
    only_source: list[str] = []
    left_at_init: list[str] = []
    for name, module in targets.items():
        if name not in _NETWORK_NAMES or name not in snapshot:
            continue
        source, target = snapshot[name], module.state_dict()
        problems += [
            f"{name}.{key}: source {list(source[key].shape)}, target {list(tensor.shape)}"
            for key, tensor in target.items()
            if key in source and tuple(source[key].shape) != tuple(tensor.shape)
        ]
        left_at_init += [f"{name}.{key}" for key in target if key not in source]
        only_source += [f"{name}.{key}" for key in source if key not in target]
    if problems:  # with a geometry change these name the blocks that do not carry over
        problems += [f"{key}: only in the source" for key in only_source[:_LISTED]]
        problems += [f"{key}: only in the target" for key in left_at_init[:_LISTED]]
    return problems, left_at_init


def check_transfer_compatible(
    snapshot: Mapping[str, Any], targets: Mapping[str, torch.nn.Module], where: str
) -> list[str]:
    """Raise ValueError listing every mismatch (see module docstring); return the target tensors left at init."""
    problems, left_at_init = transfer_mismatches(snapshot, targets)
    if problems:
        listing = "\n  ".join(problems)
        raise ValueError(
            f"{where}: the source networks do not fit the networks configured for this run (different resolution, "
            f"image channels, channel widths or mapping layers); mismatched tensors:\n  {listing}"
        )
    return left_at_init


def _geometry_mismatches(snapshot: Mapping[str, Any], targets: Mapping[str, torch.nn.Module]) -> list[str]:
    problems = []
    for name, module in targets.items():
        source_kwargs = snapshot.get(_KWARGS_OF.get(name, ""))
        target_kwargs = getattr(module, "init_kwargs", None)
        if not isinstance(source_kwargs, Mapping) or not isinstance(target_kwargs, Mapping):
            continue
        for key in ("img_resolution", "img_channels"):
            if key in source_kwargs and key in target_kwargs and source_kwargs[key] != target_kwargs[key]:
                problems.append(f"{name} {key}: source {source_kwargs[key]}, target {target_kwargs[key]}")
    return problems
