"""Our training snapshot format: one `torch.save` dict with the whole training state, loaded with weights_only=True.

Keys (docs/architecture.md): `format`, `G_kwargs`, `D_kwargs`, `G`, `D`, `G_ema` (state dicts), `G_opt`, `D_opt`
(optimiser state dicts), `augment` (`pipe`, `p`, `ada`), `progress` (`cur_nimg`, `cur_tick`, `batch_idx`),
`pl_mean` (one value per rank), `rng` (one dict per rank), `world_size`, `options` (resolved TrainOptions as a plain
dict), `dataset` (`content_hash`, `resolution`, `num_channels`, `label_dim`, `class_names`). Only tensors and plain
Python data are stored, so loading never executes code. A weights-only state imported from an NVIDIA pickle has
`weights_only: True`.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from stylegan_core.io.atomic import atomic_file

if TYPE_CHECKING:
    from stylegan_core.networks import Generator

SNAPSHOT_FORMAT = "stylegan_core.snapshot/1"
SNAPSHOT_DIR = "snapshots"
REQUIRED_KEYS = ("format", "G_kwargs", "D_kwargs", "G", "D", "G_ema", "progress", "options")
_SNAPSHOT_NAME = re.compile(r"^network-snapshot-(\d{6})(?:\.(\d{3}))?\.pt$")


def save_snapshot(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write `state` atomically: to a temporary file in the same folder, then renamed over `path`."""
    path = Path(path)
    with atomic_file(path) as file:
        torch.save(dict(state), file)
    return path


def is_snapshot_file(path: str | os.PathLike[str]) -> bool:
    """True for files written by `torch.save` (a zip archive); NVIDIA's .pkl snapshots are plain pickles."""
    return zipfile.is_zipfile(path)


def load_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a snapshot written by `save_snapshot` (tensors on the CPU), or raise ValueError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"snapshot {path} does not exist")
    if not is_snapshot_file(path):
        raise ValueError(
            f"{path} is not a stylegan_core snapshot (not a torch.save archive); NVIDIA .pkl files are read with "
            "stylegan_core.io.nvidia"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt or foreign archives
        raise ValueError(f"{path}: cannot read snapshot ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a stylegan_core snapshot: format is {found!r}, expected {SNAPSHOT_FORMAT!r}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: snapshot is missing {missing}")
    return state


def load_generator(path: str | os.PathLike[str], which: str = "G_ema", device: torch.device | str = "cpu") -> Generator:
    """Rebuild a Generator (`which` = "G_ema" or "G") from our snapshot or an NVIDIA .pkl, in eval mode, no grads."""
    from stylegan_core.networks import Generator

    if which not in ("G", "G_ema"):
        raise ValueError(f"which must be 'G' or 'G_ema', got {which!r}")
    path = Path(path)
    if path.is_file() and not is_snapshot_file(path):
        return _load_nvidia_generator(path, which, device)
    state = load_snapshot(path)
    generator = Generator(**state["G_kwargs"])
    _load_state(generator, state[which], f"{path} [{which}]")
    return generator.eval().requires_grad_(False).to(device)


def _load_nvidia_generator(path: Path, which: str, device: torch.device | str) -> Generator:
    from stylegan_core.io.nvidia import is_nvidia_pickle, load_nvidia_pickle

    if not is_nvidia_pickle(path):
        raise ValueError(f"{path} is neither a stylegan_core snapshot nor an NVIDIA network pickle")
    return load_nvidia_pickle(path)[which].eval().requires_grad_(False).to(device)


def _load_state(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key}: {list(state_dict[key].shape)} vs {list(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(f"{where}: state does not fit: missing {missing}, unexpected {unexpected}, "
                         f"shape mismatches {mismatched}")  # fmt: skip
    module.load_state_dict(dict(state_dict))


def snapshot_label(cur_nimg: int, kimg_per_tick: float | None = None) -> str:
    """`<kimg:06d>` as NVIDIA's file names when kimg is whole, else `<kimg:06d>.<nimg mod 1000:03d>`.

    The label depends on the image count alone, so every image count has its own name, within a run and across
    resumes (NVIDIA's integer kimg gives runs under 1 kimg, and a final tick ending inside the previous tick's kimg,
    one name for several snapshots). `kimg_per_tick` is accepted for older callers and ignored.
    """
    del kimg_per_tick
    label = f"{cur_nimg // 1000:06d}"
    return f"{label}.{cur_nimg % 1000:03d}" if cur_nimg % 1000 else label


def snapshot_path(run_dir: str | os.PathLike[str], cur_nimg: int, kimg_per_tick: float | None = None) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"network-snapshot-{snapshot_label(cur_nimg)}.pt"


def find_latest_snapshot(run_dir: str | os.PathLike[str]) -> Path | None:
    """The snapshot in `run_dir/snapshots` with the most images shown, or None if there is none."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for path in folder.iterdir():
        match = _SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)) * 1000 + int(match.group(2) or 0), path))
    return max(found)[1] if found else None
