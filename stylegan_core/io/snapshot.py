"""Our training snapshot: one frozen :class:`Snapshot` type, written by :func:`save_snapshot` and read (strictly) by
:func:`load_snapshot`; nothing else touches the file layout.

On disk it is one ``torch.save`` dict, loaded with ``weights_only=True``. Keys (docs/architecture.md): ``format``,
``G_kwargs``, ``D_kwargs``, ``G``, ``D``, ``G_ema`` (state dicts), ``G_opt``, ``D_opt`` (optimiser state dicts),
``augment`` (``pipe``, ``p``, ``ada``), ``progress`` (``cur_nimg``, ``cur_tick``, ``batch_idx``), ``pl_mean`` (one
value per rank), ``rng`` (one dict per rank), ``world_size``, ``options`` (resolved TrainOptions as a plain dict),
``dataset`` (``content_hash``, ``resolution``, ``num_channels``, ``label_dim``, ``class_names``). A weights-only
state imported from an NVIDIA pickle has ``weights_only: True``, an empty ``progress`` and ``imported_from``. The
loader checks every key's type and bounds (stylegan_core.io.limits) before anything is built from it.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from stylegan_core.errors import InputError
from stylegan_core.io.atomic import atomic_file
from stylegan_core.io.limits import (
    MAX_BLOB_BYTES,
    MAX_C_DIM,
    MAX_FILE_BYTES,
    MAX_TENSOR_ELEMENTS,
    check_network_kwargs,
    check_network_size,
    stored_values,
)

if TYPE_CHECKING:
    from stylegan_core.networks import Generator

SNAPSHOT_FORMAT = "stylegan_core.snapshot/1"
SNAPSHOT_DIR = "snapshots"
REQUIRED_KEYS = ("format", "G_kwargs", "D_kwargs", "G", "D", "G_ema", "progress", "options")
FULL_STATE_KEYS = ("G_opt", "D_opt", "augment", "pl_mean", "rng", "world_size", "dataset")
NETWORKS = ("G", "D", "G_ema")
_G_REQUIRED = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_D_REQUIRED = ("c_dim", "img_resolution", "img_channels")
_MAX_WORLD_SIZE = 4096
_MAX_NIMG = 1 << 50
_ZIP_MAGIC = b"PK\x03\x04"
_SNAPSHOT_NAME = re.compile(r"^network-snapshot-(\d{6})(?:\.(\d{3}))?\.pt$")


@dataclass(frozen=True)
class Progress:
    cur_nimg: int
    cur_tick: int
    batch_idx: int


@dataclass(frozen=True)
class DatasetInfo:
    content_hash: str
    resolution: int
    num_channels: int
    label_dim: int
    class_names: tuple[str, ...] | None = None
    """From the dataset's manifest (sub-folder labels), so `--class NAME` works later; None if unknown."""


@dataclass(frozen=True)
class Snapshot:
    """A training state. ``progress is None`` means weights only (an imported pickle): resuming it fine-tunes."""

    G_kwargs: dict[str, Any]
    D_kwargs: dict[str, Any]
    G: dict[str, torch.Tensor]
    D: dict[str, torch.Tensor]
    G_ema: dict[str, torch.Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    G_opt: dict[str, Any] | None = None
    D_opt: dict[str, Any] | None = None
    augment_pipe: str | None = None
    augment_p: float | None = None
    ada: tuple[dict[str, float], ...] | None = None
    pl_mean: torch.Tensor | None = None
    """One value per rank, shape [world_size]."""
    rng: tuple[dict[str, Any], ...] | None = None
    world_size: int | None = None
    dataset: DatasetInfo | None = None
    imported_from: dict[str, Any] | None = None

    @property
    def weights_only(self) -> bool:
        return self.progress is None

    def to_dict(self) -> dict[str, Any]:
        """The on-disk layout (see the module docstring)."""
        p = None if self.augment_p is None else torch.tensor(self.augment_p)
        state: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT, "G_kwargs": self.G_kwargs, "D_kwargs": self.D_kwargs,
            "G": self.G, "D": self.D, "G_ema": self.G_ema,
            "augment": {"pipe": self.augment_pipe, "p": p, "ada": None if self.ada is None else list(self.ada)},
            "progress": {} if self.progress is None else vars(self.progress).copy(),
            "options": self.options,
        }  # fmt: skip
        if self.progress is None:
            state.update(weights_only=True, imported_from=self.imported_from)
            return state
        assert self.dataset is not None and self.rng is not None
        dataset = {**vars(self.dataset), "class_names": _names(self.dataset)}
        state.update(G_opt=self.G_opt, D_opt=self.D_opt, pl_mean=self.pl_mean, rng=list(self.rng),
                     world_size=self.world_size, dataset=dataset)  # fmt: skip
        return state

    @classmethod
    def from_dict(cls, state: Any, where: str) -> Snapshot:
        """Validate a loaded dict strictly (types, shapes, bounds); InputError names ``where`` and the key."""
        return _parse(state, where)


def save_snapshot(path: str | os.PathLike[str], snapshot: Snapshot) -> Path:
    """Write ``snapshot`` atomically: to a temporary file in the same folder, then renamed over ``path``.

    On failure (disk full, ...) the temporary file is removed, an earlier file at ``path`` stays as it was, and an
    OSError names ``path``.
    """
    path = Path(path)
    try:
        with atomic_file(path) as file:
            torch.save(snapshot.to_dict(), file)
    except BaseException as error:
        if isinstance(error, OSError) or "PytorchStreamWriter failed" in str(error):
            reason = error.strerror if isinstance(error, OSError) and error.strerror else _first_line(error)
            raise OSError(getattr(error, "errno", None) or 0, f"cannot write snapshot {path}: {reason} "
                          "(the previous snapshot, if any, is unchanged)") from None  # fmt: skip
        raise
    return path


def is_snapshot_file(path: str | os.PathLike[str]) -> bool:
    """True for files that start like a zip archive, as `torch.save` writes (complete or not); NVIDIA's .pkl
    snapshots are plain pickles."""
    try:
        with open(path, "rb") as file:
            return file.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot written by `save_snapshot` (tensors on the CPU), or raise InputError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"snapshot {path} does not exist")
    if not is_snapshot_file(path):
        raise InputError(
            f"{path} is not a stylegan_core snapshot (not a torch.save archive); NVIDIA .pkl files are read with "
            "stylegan_core.io.nvidia"
        )
    _check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt or foreign archives
        raise InputError(f"{path}: cannot read snapshot ({type(error).__name__}: {_first_line(error)})") from None
    return Snapshot.from_dict(state, str(path))


def _check_archive(path: Path) -> None:
    # Bounded before torch reads it: torch allocates each record at the size the archive declares.
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: {size} bytes is more than any snapshot (limit {MAX_FILE_BYTES})")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: truncated or corrupt snapshot ({_first_line(error)})") from None
    if not any(entry.filename.endswith("/data.pkl") and entry.filename.count("/") == 1 for entry in entries):
        # Any zip starts with the same magic: a dataset zip (or another archive) handed to --network or --resume.
        raise InputError(f"{path}: a zip archive but not a snapshot (no <name>/data.pkl record, as torch.save "
                         "writes); datasets go to --data, networks to --network/--resume")  # fmt: skip
    declared = sum(entry.file_size for entry in entries)
    if declared > size or any(entry.file_size > max(MAX_BLOB_BYTES, entry.compress_size) for entry in entries):
        raise InputError(f"{path}: truncated or corrupt snapshot (its records declare {declared} bytes in a file "
                         f"of {size})")  # fmt: skip


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + (" ..." if len(text) > 300 else "")


# ---------------------------------------------------------------------------------------------------------------
# The strict reader.


def _parse(state: Any, where: str) -> Snapshot:
    if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        found = repr(found)[:80] if isinstance(found, (str, type(None))) else type(found).__name__
        raise InputError(f"{where} is not a stylegan_core snapshot: format is {found}, expected "
                         f"{SNAPSHOT_FORMAT!r}")  # fmt: skip
    missing = [key for key in REQUIRED_KEYS if key not in state]
    weights_only = state.get("weights_only", False) is True
    if not weights_only:
        missing += [key for key in FULL_STATE_KEYS if key not in state]
    if missing:
        raise InputError(f"{where}: snapshot is missing {missing}")
    kwargs = {name: _network_kwargs(state[name], name, where) for name in ("G_kwargs", "D_kwargs")}
    networks = {name: _state_dict(state[name], name, where) for name in NETWORKS}
    for name, owner in (("G", "Generator"), ("G_ema", "Generator"), ("D", "Discriminator")):
        stored = stored_values(networks[name].values())
        check_network_size(owner, kwargs["D_kwargs" if name == "D" else "G_kwargs"], stored, f"{where} [{name}]")
    augment = _mapping(state.get("augment") or {}, "augment", where)
    common = dict(**kwargs, **networks, options=dict(_mapping(state["options"], "options", where)),
                  augment_pipe=_optional(augment.get("pipe"), str, "augment.pipe", where),
                  augment_p=_probability(augment.get("p"), where))  # fmt: skip
    if weights_only:
        imported = state.get("imported_from")
        return Snapshot(**common, imported_from=dict(imported) if isinstance(imported, Mapping) else None)
    world_size = _integer(state["world_size"], "world_size", where, 1, _MAX_WORLD_SIZE)
    return Snapshot(
        **common, progress=_progress(state["progress"], where),
        G_opt=_optimizer(state["G_opt"], "G_opt", where), D_opt=_optimizer(state["D_opt"], "D_opt", where),
        ada=_ada(augment.get("ada"), where), pl_mean=_pl_mean(state["pl_mean"], world_size, where),
        rng=_rng(state["rng"], world_size, where), world_size=world_size, dataset=_dataset(state["dataset"], where),
    )  # fmt: skip


def _mapping(value: Any, key: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: snapshot {key} is a {type(value).__name__}, expected a dict")
    return value


def _optional(value: Any, kind: type, key: str, where: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise InputError(f"{where}: snapshot {key} is a {type(value).__name__}, expected {kind.__name__} or None")
    return value


def _integer(value: Any, key: str, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InputError(f"{where}: snapshot {key} = {str(value)[:40]} is not an integer in [{low}, {high}]")
    return value


def _network_kwargs(value: Any, key: str, where: str) -> dict[str, Any]:
    kwargs = dict(_mapping(value, key, where))
    required = _G_REQUIRED if key == "G_kwargs" else _D_REQUIRED
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise InputError(f"{where}: snapshot {key} lacks {missing}")
    check_network_kwargs(kwargs, f"{where} [{key}]")
    return kwargs


def _state_dict(value: Any, key: str, where: str) -> dict[str, torch.Tensor]:
    tensors = _mapping(value, key, where)
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not torch.is_tensor(tensor) or tensor.numel() > MAX_TENSOR_ELEMENTS:
            raise InputError(f"{where}: snapshot {key} entry {str(name)[:80]!r} is not a tensor of bounded size")
    return dict(tensors)


def _probability(value: Any, where: str) -> float | None:
    if value is None:
        return None
    p = float(value) if torch.is_tensor(value) and value.numel() == 1 else value
    if type(p) not in (int, float) or not 0.0 <= p <= 1.0:
        raise InputError(f"{where}: snapshot augment.p is not a probability in [0, 1]")
    return float(p)


def _progress(value: Any, where: str) -> Progress:
    progress = _mapping(value, "progress", where)
    return Progress(**{name: _integer(progress.get(name), f"progress.{name}", where, 0, _MAX_NIMG)
                       for name in ("cur_nimg", "cur_tick", "batch_idx")})  # fmt: skip


def _optimizer(value: Any, key: str, where: str) -> dict[str, Any]:
    optimizer = _mapping(value, key, where)
    if not isinstance(optimizer.get("state"), Mapping) or not isinstance(optimizer.get("param_groups"), list):
        raise InputError(f"{where}: snapshot {key} is not an optimiser state (state, param_groups)")
    return dict(optimizer)


def _ada(value: Any, where: str) -> tuple[dict[str, float], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(rank, Mapping) and all(isinstance(rank.get(key), (int, float)) and math.isfinite(rank[key])
                                          for key in ("sign_sum", "sign_count")) for rank in value
    ):  # fmt: skip
        raise InputError(f"{where}: snapshot augment.ada is not a list of {{sign_sum, sign_count}} numbers")
    return tuple(dict(rank) for rank in value)


def _pl_mean(value: Any, world_size: int, where: str) -> torch.Tensor:
    if not torch.is_tensor(value) or tuple(value.shape) != (world_size,) or not value.is_floating_point() \
            or not bool(torch.isfinite(value).all()):  # fmt: skip
        raise InputError(f"{where}: snapshot pl_mean must be {world_size} finite number(s), one per rank")
    return value


def _rng(value: Any, world_size: int, where: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or len(value) != world_size or not all(
        isinstance(rank, Mapping) and torch.is_tensor(rank.get("torch")) and isinstance(rank.get("numpy"), Mapping)
        and isinstance(rank.get("python"), list) for rank in value
    ):  # fmt: skip
        raise InputError(f"{where}: snapshot rng must hold one {{torch, numpy, python}} state per rank")
    return tuple(dict(rank) for rank in value)


def _dataset(value: Any, where: str) -> DatasetInfo:
    dataset = _mapping(value, "dataset", where)
    content_hash = dataset.get("content_hash")
    if not isinstance(content_hash, str) or len(content_hash) > 128:
        raise InputError(f"{where}: snapshot dataset.content_hash is not a hash string")
    names = dataset.get("class_names")
    if names is not None and not (isinstance(names, (list, tuple)) and len(names) <= MAX_C_DIM
                                  and all(isinstance(name, str) and len(name) <= 256 for name in names)):  # fmt: skip
        raise InputError(f"{where}: snapshot dataset.class_names is not a list of class name strings")
    sizes = (_integer(dataset.get(name), f"dataset.{name}", where, 0, 1 << 20)
             for name in ("resolution", "num_channels", "label_dim"))  # fmt: skip
    return DatasetInfo(content_hash, *sizes, tuple(names) if names is not None else None)


def _names(dataset: DatasetInfo) -> list[str] | None:
    return None if dataset.class_names is None else list(dataset.class_names)


def load_generator(path: str | os.PathLike[str], which: str = "G_ema", device: torch.device | str = "cpu") -> Generator:
    """Rebuild a Generator (`which` = "G_ema" or "G") from our snapshot or an NVIDIA .pkl, in eval mode, no grads.

    Off CUDA its float16 blocks compute in float32 (``networks.layers.float32_off_cuda``).
    """
    from stylegan_core.networks import Generator

    if which not in ("G", "G_ema"):
        raise ValueError(f"which must be 'G' or 'G_ema', got {which!r}")
    path = Path(path)
    if path.is_file() and not is_snapshot_file(path):
        return _load_nvidia_generator(path, which, device)
    snapshot = load_snapshot(path)
    try:
        generator = Generator(**snapshot.G_kwargs)
    except Exception as error:  # kwargs within bounds that the constructor still rejects
        raise InputError(f"{path}: cannot build G from G_kwargs ({type(error).__name__}: "
                         f"{_first_line(error)})") from None  # fmt: skip
    _load_state(generator, getattr(snapshot, which), f"{path} [{which}]")
    return _for_inference(generator, device)


def _load_nvidia_generator(path: Path, which: str, device: torch.device | str) -> Generator:
    from stylegan_core.io.nvidia import is_nvidia_pickle, load_nvidia_pickle

    if not is_nvidia_pickle(path):
        raise ValueError(f"{path} is neither a stylegan_core snapshot nor an NVIDIA network pickle")
    return _for_inference(load_nvidia_pickle(path)[which], device)


def _for_inference(generator: Generator, device: torch.device | str) -> Generator:
    from stylegan_core.networks.layers import float32_off_cuda

    return float32_off_cuda(generator.eval().requires_grad_(False).to(device), device)


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
