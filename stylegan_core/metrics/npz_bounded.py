"""Arrays of the metric caches' .npz files, read as untrusted: a header is checked before anything is allocated.

`np.load` allocates whatever shape an array's header declares before reading a byte of it, so a damaged or
hostile cache file could ask for terabytes. Here each member's dtype and shape are checked against what the cache
key implies, its size against the file's, and then exactly that many bytes are read. Errors are ValueError (or the
zip module's), which the caches turn into one line naming the file.
"""

from __future__ import annotations

import zipfile
from typing import IO, NamedTuple

import numpy as np

MAX_FEATURE_DIM = 1 << 16
"""Largest feature size a cache file may declare (VGG16: 4096, Inception: 2048)."""
_MAX_KEY_CHARS = 256
_READ_CHUNK_BYTES = 16 << 20


class CacheKey(NamedTuple):
    """What a real-image cache entry was computed from, stored in the entry as well as hashed into its name."""

    content_hash: str
    detector_sha256: str
    num_items: int


def read_key(archive: zipfile.ZipFile) -> CacheKey:
    text = np.dtype(f"<U{_MAX_KEY_CHARS}")
    return CacheKey(
        str(read_member(archive, "content_hash", text, ()).item()),
        str(read_member(archive, "detector_sha256", text, ()).item()),
        int(read_member(archive, "num_items", np.dtype(np.int64), ()).item()),
    )


def read_member(
    archive: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple[int | None, ...], max_bytes: int | None = None
) -> np.ndarray:
    """Array `name` of an .npz, its header checked before anything is allocated: `dtype` (strings: at most its
    length), `shape` (None: any size from 1 to MAX_FEATURE_DIM), at most `max_bytes` of data (the file's size: a
    header may not promise more than the file holds); then exactly the bytes that header implies."""
    with archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"'{name}' has .npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found_shape, fortran_order, found_dtype = read_header(member)
        _check_header(name, found_shape, fortran_order, found_dtype, dtype, shape)
        nbytes = int(np.prod(found_shape, dtype=np.int64)) * found_dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise ValueError(f"'{name}' claims {nbytes} bytes, more than the file's {max_bytes}")
        array = np.empty(found_shape, dtype=found_dtype)
        filled = _read_into(member, memoryview(array.reshape(-1).view(np.uint8)))
        if filled != array.nbytes or member.read(1):
            raise ValueError(f"'{name}' holds {filled} bytes or more, its header says {array.nbytes}")
    return array


def _read_into(member: IO[bytes], buffer: memoryview) -> int:
    # In chunks: one read of the whole member would hold a second copy of it (1.6 GB at 200k x 4096 float16).
    filled = 0
    while filled < len(buffer):
        got = member.readinto(buffer[filled : filled + _READ_CHUNK_BYTES])
        if not got:
            break
        filled += got
    return filled


def _check_header(name, found_shape, fortran_order, found_dtype, dtype, shape) -> None:
    same_kind = found_dtype == dtype or (dtype.kind == "U" and found_dtype.kind == "U" and
                                          found_dtype.itemsize <= dtype.itemsize)  # fmt: skip
    fits = len(found_shape) == len(shape) and all(
        size == want if want is not None else 1 <= size <= MAX_FEATURE_DIM
        for size, want in zip(found_shape, shape, strict=True)
    )
    if not same_kind or not fits or fortran_order:
        expected = [size if size is not None else "D" for size in shape]
        raise ValueError(f"'{name}' is {found_dtype} {list(found_shape)}, expected {dtype} {expected}")


def describe_error(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"no member {error}"
    return str(error) or type(error).__name__
