"""Size limits for untrusted files (NVIDIA pickles, our snapshots, metric detectors) and the kwargs of networks.

Every network limit is derived from the largest NVIDIA StyleGAN2 networks (docs/architecture.md, "Untrusted files"):
the 1024 px FFHQ/MetFaces pickles (channel_base 32768, channel_max 512, 8 mapping layers) hold G, D and G_ema with
about 30 M, 29 M and 30 M float32 values, 364 MB in all. The limits leave room for StyleGAN3's larger capacity
(channel_max 1024, channel_base 65536: about 4x the values) and for class-conditional networks up to ``MAX_C_DIM``
classes (each conditional network adds a c_dim x 512 embedding). Anything beyond is refused before it is
allocated, with one line naming the file and the limit.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from stylegan_core.errors import InputError

MAX_C_DIM = 10_000
"""Most classes (label dimension) a network or a conditional dataset may have."""
MAX_RESOLUTION = 1024
MAX_CHANNELS = 1024
"""channel_max, cmap_dim and the like: StyleGAN3-R at 1024 px uses 1024."""
MAX_LATENT_DIM = 1024
"""z_dim and w_dim (NVIDIA: 512)."""
MAX_CHANNEL_BASE = 1 << 17
MAX_LAYERS = 32
MAX_IMG_CHANNELS = 4

MAX_FILE_BYTES = 2 << 30
"""A network pickle or snapshot: 1024 px at channel_max 1024 with 10 000 classes is about 1.5 GB."""
MAX_BLOB_BYTES = 256 << 20
"""One bytes/str/bytearray value in a pickle; the largest tensor (D's 16384 x 1024 fc at channel_max 1024) is 64 MiB."""
MAX_TENSOR_ELEMENTS = MAX_BLOB_BYTES // 4
MAX_TENSOR_DIMS = 8
MAX_TOTAL_STORAGE_BYTES = MAX_FILE_BYTES
"""Sum of all tensor storages a pickle declares; they are stored in the file, so never more than the file."""
MAX_DEPTH = 100
"""Nesting depth of pickled values, as the opcode scan counts it (a real network pickle: 32 at any resolution)."""
MAX_TREE_NODES = 2_000_000
"""Values in a pickle counted with repetition (memo entries each time they are used); a 256 px pickle has 34 000."""
MAX_KWARGS_VALUES = 10_000
"""Values in one network's constructor kwargs or a pickle's training_set_kwargs."""
MAX_KWARGS_ARRAY = 4096
"""Elements of one array inside constructor kwargs (NVIDIA's are resample filters of 4 values)."""
MAX_DETECTOR_BYTES = 1 << 30
"""A metric detector's TorchScript file, on disk and as its zip directory declares it uncompressed. One limit for all
detectors: it only has to keep a file from exhausting memory (signature and probe checks identify the file), and
NVIDIA's vgg16.pt (0.53 GB) and inception-2015-12-05.pt (0.10 GB) both fit it. A tighter Inception-only limit
(say 256 MiB) would spare at most 0.75 GiB on a hostile file: not worth a second constant to keep in step."""
MAX_DETECTOR_DIRECTORY_BYTES = 4 << 20
"""A detector's zip central directory, bounded before zipfile parses it: zipfile keeps ~560 bytes per entry (measured,
Python 3.11), so a 1 GiB file of bare directory entries would cost ~10 GB. A TorchScript detector lists a few hundred
members of ~100 bytes; 4 MiB allows ~40 000 and at most ~50 MB of parsed entries."""

_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "z_dim": (0, MAX_LATENT_DIM),
    "w_dim": (1, MAX_LATENT_DIM),
    "c_dim": (0, MAX_C_DIM),
    "img_resolution": (4, MAX_RESOLUTION),
    "img_channels": (1, MAX_IMG_CHANNELS),
    "channel_base": (1, MAX_CHANNEL_BASE),
    "channel_max": (1, MAX_CHANNELS),
    "cmap_dim": (0, MAX_CHANNELS),
    "embed_features": (0, MAX_CHANNELS),
    "layer_features": (0, MAX_CHANNELS),
    "num_layers": (0, MAX_LAYERS),
    "num_ws": (0, MAX_LAYERS),
    "num_fp16_res": (0, 16),
    "mbstd_group_size": (0, 1024),
    "mbstd_num_channels": (0, 64),
    "freeze_layers": (0, MAX_LAYERS),
}
_DEFAULT_INT_BOUND = 1 << 20
_NESTED_KWARGS = ("mapping_kwargs", "synthesis_kwargs", "block_kwargs", "epilogue_kwargs")


class UnsafePickleError(InputError):
    """The pickle asks for something a network pickle never needs; nothing it names was imported or run."""


class LimitError(InputError):
    """A file declares more than the limits of stylegan_core.io.limits allow; nothing that large was allocated."""


def check_detector_archive(path: Path, expected: str) -> int:
    """A detector file's size in bytes, once it and the members its zip directory declares fit MAX_DETECTOR_BYTES.

    Reads only the zip directory (no torch, no weights), so it can run before anything hashes or loads the file:
    torch.jit.load allocates each member at the size the directory declares. `expected` names the right file.
    """
    num_bytes = path.stat().st_size
    limit = f"limit for a detector file (expected {expected})"
    if num_bytes > MAX_DETECTOR_BYTES:
        raise LimitError(f"{path}: {num_bytes} bytes, over the {MAX_DETECTOR_BYTES}-byte {limit}")
    try:
        declared = _declared_bytes(path)
    except _DirectoryTooLarge as error:
        raise LimitError(f"{path}: its zip directory is {error.args[0]} bytes, over the "
                         f"{MAX_DETECTOR_DIRECTORY_BYTES}-byte {limit}") from None  # fmt: skip
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise InputError(f"{path} is not a TorchScript file (not a zip archive); expected {expected}") from None
    if declared > MAX_DETECTOR_BYTES:
        raise LimitError(f"{path}: its zip directory declares {declared} uncompressed bytes, over the "
                         f"{MAX_DETECTOR_BYTES}-byte {limit}")  # fmt: skip
    return num_bytes


def _declared_bytes(path: Path) -> int:
    with path.open("rb") as file, zipfile.ZipFile(_CappedReads(file, MAX_DETECTOR_DIRECTORY_BYTES)) as archive:
        return sum(member.file_size for member in archive.infolist())


class _DirectoryTooLarge(Exception):
    """zipfile asked for more bytes at once than a zip directory may have (args[0]: how many)."""


class _CappedReads:
    """A read-only file whose single reads are capped. zipfile reads the whole central directory in one call (and
    the end records in small ones), so the cap bounds the directory exactly as zipfile sees it, with no second zip
    parser that a crafted file could make disagree with zipfile's."""

    def __init__(self, file: BinaryIO, cap: int) -> None:
        self._file = file
        self._cap = cap

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > self._cap:
            raise _DirectoryTooLarge(size)
        data = self._file.read(self._cap + 1 if size is None or size < 0 else size)
        if len(data) > self._cap:  # a read to the end of the file: zipfile's for the end record and its comment
            raise _DirectoryTooLarge(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def check_network_kwargs(kwargs: Any, where: str) -> None:
    """Refuse constructor kwargs that would build an oversized network (LimitError) before anything is built.

    Known size keys have their own bounds (``_INT_BOUNDS``), every other integer must stay within 2**20, floats must
    be finite, and the whole structure must hold at most ``MAX_KWARGS_VALUES`` values, nested at most 8 deep.
    """
    budget = [MAX_KWARGS_VALUES]
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}: constructor kwargs are a {type(kwargs).__name__}, expected a dict")
    for name in _NESTED_KWARGS:
        if not isinstance(kwargs.get(name) or {}, Mapping):
            raise ValueError(f"{where}: {name} is a {type(kwargs[name]).__name__}, expected a dict")

    def visit(value: Any, key: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > 8:
            raise LimitError(f"{where}: constructor kwargs are larger or deeper than any network's")
        if isinstance(value, Mapping):
            for name, item in value.items():
                visit(item, str(name), depth + 1)
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_KWARGS_ARRAY:
                raise LimitError(f"{where}: {key} holds {len(value)} values (at most {MAX_KWARGS_ARRAY})")
            for item in value:
                visit(item, key, depth + 1)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            return
        elif isinstance(value, int):
            low, high = _INT_BOUNDS.get(key, (-_DEFAULT_INT_BOUND, _DEFAULT_INT_BOUND))
            if not low <= value <= high:
                raise LimitError(f"{where}: {key} = {_short(value)} is outside [{low}, {high}]")
        elif isinstance(value, float):
            if not math.isfinite(value) or abs(value) > 1e12:
                raise LimitError(f"{where}: {key} = {value!r} is not a finite number of sensible size")
        else:
            raise ValueError(f"{where}: {key} is a {type(value).__name__}; constructor kwargs hold plain values only")

    visit(kwargs, "kwargs", 0)


def _short(value: int) -> str:
    return str(value) if value.bit_length() < 200 else f"a {value.bit_length()}-bit integer"


def estimated_values(owner: str, kwargs: Mapping[str, Any]) -> int:
    """A lower estimate of the tensor values a Generator or Discriminator built from ``kwargs`` holds.

    Counts the convolution, affine, mapping and epilogue weights (over 90 % of every StyleGAN2 network), from
    kwargs that already passed :func:`check_network_kwargs`; defaults are NVIDIA's.
    """
    synthesis = kwargs.get("synthesis_kwargs") or {} if owner == "Generator" else kwargs
    mapping = kwargs.get("mapping_kwargs") or {}
    resolution = _int(kwargs.get("img_resolution"), 4)
    base, most = _int(synthesis.get("channel_base"), 32768), _int(synthesis.get("channel_max"), 512)
    image_channels, c_dim = _int(kwargs.get("img_channels"), 3), _int(kwargs.get("c_dim"), 0)

    def channels(r: int) -> int:
        return min(base // r, most) if r else 0

    sizes = [4 << i for i in range(max(resolution.bit_length() - 2, 1))]
    if owner == "Generator":
        w_dim = _int(kwargs.get("w_dim"), 512)
        features = _int(mapping.get("layer_features"), w_dim) or w_dim
        total = _int(mapping.get("num_layers"), 8) * features * max(features, _int(kwargs.get("z_dim"), 512))
        total += c_dim * (_int(mapping.get("embed_features"), w_dim) or w_dim)
        for r in sizes:
            c, c_in = channels(r), channels(r // 2) if r > 4 else 0
            total += 9 * (c_in * c + c * c) + w_dim * (c_in + 2 * c) + c * image_channels
        return total
    cmap = _int(kwargs.get("cmap_dim"), channels(4)) or channels(4)
    total = c_dim * cmap + (_int(mapping.get("num_layers"), 8) * cmap * cmap if c_dim else 0)
    for r in sizes[1:]:
        c, c_next = channels(r), channels(r // 2)
        total += 9 * (c * c + c * c_next) + c * c_next + image_channels * c
    c4 = channels(4)
    return total + 9 * c4 * c4 + 16 * c4 * c4 + c4 * cmap


def check_network_size(owner: str, kwargs: Mapping[str, Any], stored_values: int, where: str) -> None:
    """Refuse kwargs describing a network far larger than the tensors stored for it (checked before building)."""
    expected = estimated_values(owner, kwargs)
    if expected > 1.5 * stored_values + 100_000:
        raise LimitError(f"{where}: the {owner} kwargs describe about {expected} values but the file stores "
                         f"{stored_values}; refusing to build it")  # fmt: skip


def stored_values(tensors: Any) -> int:
    """float32 values a set of tensors really holds: each distinct storage counted once, however many views share
    it (so views of one storage cannot make a file look larger than it is)."""
    storages: dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(storages.values()) // 4


def _int(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default
