"""Tensor storages and tensors inside NVIDIA pickles, rebuilt from plain bytes with every size checked first.

A pickled torch storage is ``torch.storage._load_from_bytes(blob)`` where ``blob`` is a legacy (non-zip)
``torch.save`` of the storage: five small pickles (magic number, protocol 1001, system info, the storage's
persistent id ``('storage', <dtype>Storage, key, location, numel, ...)``, the list of keys) followed by, per key, an
8-byte little-endian element count and the raw data. It is read here without ``torch.load``: the declared count
must match the data actually present in the blob before a storage of that size is created, so a short blob cannot
ask for a large allocation.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import torch

from stylegan_core.io.limits import MAX_TENSOR_DIMS, MAX_TENSOR_ELEMENTS, LimitError, UnsafePickleError
from stylegan_core.io.pickle_scan import scan_pickle

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128, "UntypedStorage": None,
}  # fmt: skip
TENSOR_DTYPES = frozenset(dtype for dtype in _STORAGE_DTYPES.values() if dtype is not None)


class _StorageType:
    """A storage class named in a blob, as data (never called)."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        self.dtype = dtype


class _BlobUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self.where = where
        self.declared: dict[str, tuple[torch.dtype | None, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafePickleError(f"{self.where}: a tensor storage references {module}.{name}; it is not plain data "
                                "(nothing was imported or run)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and type(pid[4]) is int and 0 <= pid[4]):  # fmt: skip
            raise ValueError(f"{self.where}: a tensor storage has a malformed header")
        self.declared[pid[2]] = (pid[1].dtype, pid[4])
        return pid[2]


def load_storage_blob(blob: Any, where: str, budget: list[int]) -> Any:
    """The storage in ``blob`` (TypedStorage, or UntypedStorage for torch >= 2 untyped saves).

    ``budget`` is a one-element list of bytes still allowed for all storages of the file; it is decreased.
    """
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError(f"{where}: a tensor storage is {type(blob).__name__}, expected bytes")
    file = io.BytesIO(blob)
    unpickler = _BlobUnpickler(file, where)
    header = [_load_one(file, unpickler, where) for _ in range(4)]
    magic, protocol, system, key = header
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"{where}: a tensor storage is not a torch storage (bad magic number or protocol)")
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise ValueError(f"{where}: a tensor storage is not little-endian, which this importer does not read")
    keys = _load_one(file, unpickler, where)
    if not isinstance(key, str) or keys != [key] or key not in unpickler.declared:
        raise ValueError(f"{where}: a tensor storage blob must hold exactly one storage")
    dtype, numel = unpickler.declared[key]
    itemsize = 1 if dtype is None else torch.empty((), dtype=dtype).element_size()
    nbytes = numel * itemsize
    if nbytes > budget[0] or numel > MAX_TENSOR_ELEMENTS * (4 if dtype is None else 1):
        raise LimitError(f"{where}: a tensor storage declares {numel} elements, more than the limits allow")
    count = file.read(8)
    if len(count) != 8 or struct.unpack("<q", count)[0] != numel or len(blob) - file.tell() < nbytes:
        raise ValueError(f"{where}: a tensor storage declares {numel} elements but holds less data (truncated or "
                         "corrupt)")  # fmt: skip
    budget[0] -= nbytes
    start = file.tell()
    untyped = torch.UntypedStorage(0)
    if nbytes:  # copies exactly the bytes present, which were counted above
        untyped = torch.UntypedStorage.from_buffer(blob, byte_order="little", dtype=torch.uint8, offset=start,
                                                   count=nbytes)  # fmt: skip
    if dtype is None:
        return untyped
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _load_one(file: io.BytesIO, unpickler: _BlobUnpickler, where: str) -> Any:
    start = file.tell()
    scan_pickle(file, where, persistent_ids=True)
    file.seek(start)
    try:
        return unpickler.load()
    except (ValueError, LimitError):
        raise
    except Exception as error:
        raise ValueError(f"{where}: a tensor storage is truncated or corrupt ({type(error).__name__})") from None


def tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None) -> torch.Tensor:
    """A tensor view of ``storage``; refuses views past its end, overlapping (stride-0) views and odd dtypes."""
    if isinstance(storage, torch.storage.TypedStorage):
        untyped, dtype = storage.untyped(), storage.dtype
    elif isinstance(storage, torch.UntypedStorage) and isinstance(dtype, torch.dtype):
        untyped = storage
    else:
        raise ValueError(f"tensor data is a {type(storage).__name__}, expected a torch storage")
    if dtype not in TENSOR_DTYPES:
        raise ValueError(f"tensor dtype {dtype} is not one a network holds")
    size, stride, offset = _int_tuple(size, "size"), _int_tuple(stride, "stride"), _int_tuple((offset,), "offset")[0]
    if len(size) != len(stride) or len(size) > MAX_TENSOR_DIMS:
        raise ValueError(f"tensor size {list(size)} and stride {list(stride)} do not fit together")
    itemsize = torch.empty((), dtype=dtype).element_size()
    available = untyped.nbytes() // itemsize - offset
    numel = 1
    for length in size:
        numel *= length
    if numel and (numel > available or any(st == 0 and n > 1 for n, st in zip(size, stride, strict=True))
                  or sum((n - 1) * st for n, st in zip(size, stride, strict=True)) >= available):  # fmt: skip
        raise ValueError(f"tensor of size {list(size)}, stride {list(stride)} at offset {offset} does not fit its "
                         f"storage of {max(available, 0)} elements without overlapping")  # fmt: skip
    return torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)


def _int_tuple(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list, torch.Size)) or len(values) > MAX_TENSOR_DIMS:
        raise ValueError(f"tensor {what} is not a short sequence of integers")
    if not all(type(value) is int and 0 <= value <= MAX_TENSOR_ELEMENTS * 8 for value in values):
        raise ValueError(f"tensor {what} {_brief(values)} holds negative, huge or non-integer values")
    return tuple(values)


def _brief(values: Any) -> str:
    return "[" + ", ".join(str(value)[:20] for value in list(values)[:MAX_TENSOR_DIMS]) + "]"
