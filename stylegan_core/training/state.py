"""The whole training state <-> a snapshot dict, random-generator states, and resume versus transfer.

Resume (`--resume`) has two meanings, chosen by what the snapshot holds:
* continue: same dataset content and the same network constructor arguments -> every piece of state is restored
  (weights, optimisers, augment p and the ADA accumulator, progress, pl_mean, RNG) and training goes on exactly
  where it stopped;
* transfer (fine-tuning, NVIDIA's only kind of resume): a different dataset, or different networks -> only the
  weights are copied by name (tensors missing from the snapshot keep their initial values; differing shapes are an
  error listing them), progress, optimisers and p start afresh. Freeze-D (`--freezed`) applies as configured.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_core.config import TrainOptions
from stylegan_core.io.snapshot import Snapshot, is_snapshot_file, load_snapshot

# Options that do not change what a step computes: a continued run takes them from the new options freely.
RUN_CONTROL_FIELDS = {
    "loop": ("total_kimg", "kimg_per_tick", "snap", "resume", "cudnn_benchmark", "allow_tf32", "grid_seed", "ops_impl"),
    "data": ("path", "workers"),
    "metrics": ("names",),
}
# NVIDIA shortens ada_kimg and drops the EMA ramp-up on resume because its resume forgets p and restarts the EMA
# ramp; a continued run remembers both, so these are restored from the snapshot instead.
RESTORED_ON_CONTINUE = {"ada": ("kimg",), "loop": ("ema_rampup",)}


def capture_rng_state() -> dict[str, Any]:
    """Every random generator of this process, as tensors and plain data (weights_only-loadable)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gauss),
        },  # fmt: skip
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))  # fmt: skip
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple) -> list[Any]:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _load_resume_state(path: str | Path) -> Snapshot:
    """Read `--resume PATH` as a Snapshot, dispatching on the file type.

    Our snapshot (a torch.save archive) comes back whole; an NVIDIA network pickle is imported without running its
    code (stylegan_core.io.nvidia) as a weights-only state, which always means fine-tuning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} does not exist")
    if is_snapshot_file(path):
        return load_snapshot(path)
    from stylegan_core.io.nvidia import is_nvidia_pickle, load_nvidia_pickle

    if not is_nvidia_pickle(path):
        raise ValueError(f"--resume: {path} is neither a stylegan_core snapshot nor an NVIDIA network pickle")
    from stylegan_core.io.nvidia_pickle import snapshot_state_from_nvidia

    return snapshot_state_from_nvidia(load_nvidia_pickle(path))


# Constructor arguments that choose how a network computes, not what it is: a GPU run's snapshot (float16 blocks)
# resumed on a CPU (float32 by policy, presets.resolve_precision) is the same network and continues its training.
PRECISION_KWARGS = frozenset({"num_fp16_res", "fp16_channels_last"})


def can_continue(snapshot: Snapshot, G_kwargs: Mapping, D_kwargs: Mapping, dataset_hash: str) -> bool:
    """True if the snapshot is a full state of the same networks (up to precision) trained on the same data."""
    return (
        not snapshot.weights_only
        and snapshot.dataset is not None
        and snapshot.dataset.content_hash == dataset_hash
        and _plain(snapshot.G_kwargs) == _plain(G_kwargs)
        and _plain(snapshot.D_kwargs) == _plain(D_kwargs)
    )


def _plain(value: Any) -> Any:
    # Snapshot kwargs went through torch.save; compare lists and tuples alike, and ignore the precision choices.
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items() if key not in PRECISION_KWARGS}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def continued_options(new: TrainOptions, snapshot_options: Mapping[str, Any]) -> tuple[TrainOptions, list[str]]:
    """Options for a continued run, and the trajectory-changing differences from the snapshot's run (if any).

    Everything comes from the new options, except the fields in RESTORED_ON_CONTINUE (from the snapshot).
    """
    old = TrainOptions.from_dict(snapshot_options)
    sections = {}
    for section, names in RESTORED_ON_CONTINUE.items():
        restored = {name: getattr(getattr(old, section), name) for name in names}
        sections[section] = dataclasses.replace(getattr(new, section), **restored)
    options = dataclasses.replace(new, **sections)
    changes = []
    old_dict, new_dict = old.to_dict(), options.to_dict()
    for section, fields in new_dict.items():
        if not isinstance(fields, dict):
            continue
        for name, value in fields.items():
            if name not in RUN_CONTROL_FIELDS.get(section, ()) and old_dict[section].get(name) != value:
                changes.append(f"{section}.{name}: {old_dict[section].get(name)!r} -> {value!r}")
    return options, changes


def copy_weights(targets: Mapping[str, torch.nn.Module], snapshot: Mapping[str, Any], where: str) -> list[str]:
    """Copy every same-named tensor of the snapshot's G, D and G_ema into `targets`; return those left at init.

    Differing resolution, channels or tensor shapes raise ValueError listing the tensors (io.transfer's rules).
    """
    from stylegan_core.io.transfer import check_transfer_compatible

    left_at_init = check_transfer_compatible(snapshot, targets, where)
    with torch.no_grad():
        for name, module in targets.items():
            source = snapshot[name]
            for key, tensor in module.state_dict().items():
                if key in source:
                    tensor.copy_(source[key])
    return left_at_init
