"""A pickle reader for NVIDIA's network pickles that never imports or runs anything named in the file.

NVIDIA's ``network-snapshot-*.pkl`` is a plain ``pickle.dump`` of ``{G, D, G_ema, augment_pipe,
training_set_kwargs}``. Each network is a ``torch_utils.persistence`` object: it unpickles by calling
``_reconstruct_persistent_obj(meta)``, where ``meta = {type: 'class', version: 6, module_src, class_name, state}``:
``module_src`` is the *source text of the Python module* that defined the class and ``state`` the object's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs``, ...). NVIDIA's loader
``exec``s that source, so opening a pickle from the internet runs whatever code it carries.

:class:`RestrictedUnpickler` resolves only an allow-list of globals: the persistence hook (replaced by one that
records ``class_name`` and ``state`` as a :class:`ModuleRecord`; the source text is only searched for a marker of
StyleGAN3's file), torch's tensor rebuild functions (replaced by our own), tensor storages (read with
``torch.load(weights_only=True)``), ``dnnlib.util.EasyDict`` (read as dict), ``OrderedDict``, sets, torch dtypes,
``torch.Size``/``torch.device`` and numpy scalars and arrays. Anything else is refused with an error naming it.
"""

from __future__ import annotations

import mmap
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylegan_core.io import pickle_numpy
from stylegan_core.io.limits import (
    MAX_FILE_BYTES,
    MAX_TENSOR_DIMS,
    MAX_TOTAL_STORAGE_BYTES,
    LimitError,
    UnsafePickleError,
)
from stylegan_core.io.nvidia_storage import load_storage_blob, tensor_from_storage
from stylegan_core.io.pickle_scan import scan_pickle

# `torch.save(..., _use_new_zipfile_serialization=False)` files start with this pickled magic number.
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:-1]
# Only StyleGAN3's training/networks_stylegan2.py has this word (ADA's training/networks.py does not).
_SG3_SOURCE_MARKER = "fused_modconv_default"
# Protocol-2 pickles name Python 2 modules.
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_TORCH_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}


@dataclass
class ModuleRecord:
    """One persistent network object as the pickle describes it: class name and pickled ``__dict__``, no code."""

    class_name: str
    state: dict[str, Any]
    version: Any = None
    flavour: str = "ada"
    """'stylegan3' when the embedded source is StyleGAN3's networks_stylegan2.py, else 'ada'."""


def is_nvidia_pickle(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a plain pickle (protocol 2-5) as NVIDIA writes; False for torch.save files and others."""
    with open(path, "rb") as file:
        head = file.read(2 + len(_LEGACY_TORCH_MAGIC))
    return len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= 5 and head[2:] != _LEGACY_TORCH_MAGIC


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data, tensors and NVIDIA persistent objects (as ModuleRecord); refuses every other global."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source
        self._allowed = self._allowed_globals()
        self._storage_budget = [MAX_TOTAL_STORAGE_BYTES]

    def find_class(self, module: str, name: str) -> Any:
        module = _PYTHON2_MODULES.get(module, module)
        target = self._allowed.get((module, name))
        if target is None and module == "torch":
            target = _TORCH_DTYPES.get(name)
        if target is None:
            raise UnsafePickleError(
                f"refusing to load {self.source}: it references {module}.{name}, which a network pickle never needs "
                "(nothing was imported or run)"
            )
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refusing to load {self.source}: it uses pickle persistent IDs, so it is not a plain pickle as NVIDIA's "
            "network snapshots are"
        )

    def _allowed_globals(self) -> dict[tuple[str, str], Any]:
        # Classes that must only be *data* (torch.Tensor, Parameter, numpy.ndarray) map to markers that cannot be
        # called; everything callable here checks its arguments before allocating.
        table: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._record_persistent_object,
            ("dnnlib.util", "EasyDict"): dict,
            ("dnnlib", "EasyDict"): dict,
            ("collections", "OrderedDict"): OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "bytearray"): _bytearray,
            ("builtins", "complex"): _complex,
            ("_codecs", "encode"): _latin1_bytes,  # how protocol 2 writes `bytes`
            ("torch.storage", "_load_from_bytes"): self._load_storage_bytes,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
            ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,  # torch 1.x names, same arguments
            ("torch.tensor", "_rebuild_from_type"): _rebuild_from_type,
            ("torch", "Tensor"): _TENSOR,
            ("torch.nn.parameter", "Parameter"): _PARAMETER,
            ("torch", "Size"): _size,
            ("torch", "device"): _device,
            ("numpy", "dtype"): pickle_numpy.DtypeSpec,
            ("numpy", "ndarray"): pickle_numpy.NDARRAY,
        }
        for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 spellings
            table[(numpy_core, "scalar")] = pickle_numpy.scalar
            table[(numpy_core, "_reconstruct")] = pickle_numpy.reconstruct
        for numpy_numeric in ("numpy.core.numeric", "numpy._core.numeric"):
            table[(numpy_numeric, "_frombuffer")] = pickle_numpy.frombuffer
        return table

    def _record_persistent_object(self, meta: Any) -> ModuleRecord:
        # Stands in for torch_utils.persistence._reconstruct_persistent_obj: reads meta, never execs module_src.
        if not (isinstance(meta, Mapping) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
                and isinstance(meta.get("state"), Mapping)):  # fmt: skip
            raise ValueError(f"{self.source}: a persistent object lacks NVIDIA's metadata (type 'class', class_name, "
                             "state)")  # fmt: skip
        source = meta.get("module_src")
        flavour = "stylegan3" if isinstance(source, str) and _SG3_SOURCE_MARKER in source else "ada"
        return ModuleRecord(meta["class_name"], dict(meta["state"]), meta.get("version"), flavour)

    def _load_storage_bytes(self, data: Any) -> Any:
        return load_storage_blob(data, f"refusing to load {self.source}", self._storage_budget)


def _latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode is only accepted as protocol 2 uses it: encode(str, 'latin1')")
    return text.encode("latin1")


class _DataOnly:
    """A class a pickle may name as data (an argument of _rebuild_from_type), never call."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError(f"{self.name} is called directly; network pickles only name it as a tensor type")


_TENSOR, _PARAMETER = _DataOnly("torch.Tensor"), _DataOnly("torch.nn.Parameter")


def _bytearray(data: Any = b"", encoding: Any = None) -> bytearray:
    # Protocols 2-4 write bytearray(bytes) or bytearray(str, 'latin-1'); bytearray(n) would allocate n bytes.
    if isinstance(data, bytes) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data, "latin-1")
    raise UnsafePickleError(f"bytearray({type(data).__name__}) refused: only bytearray(bytes) is accepted")


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(part, (int, float)) and abs(part) < 1e308 for part in (real, imag)):
        raise ValueError("complex() refused: only two plain numbers are accepted")
    return complex(real, imag)


def _size(dims: Any = ()) -> torch.Size:
    return torch.Size(_ints(dims, "torch.Size"))


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > MAX_TENSOR_DIMS or not all(
        type(value) is int for value in values
    ):
        raise ValueError(f"{what} is not a short sequence of integers")
    return tuple(values)


def _device(kind: Any, index: Any = None) -> torch.device:
    if not isinstance(kind, str) or len(kind) > 16 or not (index is None or type(index) is int):
        raise ValueError("torch.device refused: expected a short device name")
    return torch.device(kind) if index is None else torch.device(kind, index)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return tensor_from_storage(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None) -> torch.Tensor:
    # requires_grad and (always empty) backward hooks do not matter for weights that are copied into our modules.
    if metadata:
        raise ValueError("tensor metadata (conjugate/negative views) is not supported")
    return tensor_from_storage(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None) -> torch.Tensor:
    if metadata:
        raise ValueError("tensor metadata (conjugate/negative views) is not supported")
    return tensor_from_storage(storage, offset, size, stride, dtype)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> torch.Tensor:
    if not torch.is_tensor(data):
        raise ValueError(f"a parameter holds a {type(data).__name__}, expected a tensor")
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    # Tensors carrying Python attributes; the attributes are dropped, the values kept.
    if func not in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3) or new_type not in (_TENSOR, _PARAMETER):
        raise ValueError("a tensor subclass or rebuild function that networks never use")
    if not isinstance(args, tuple):
        raise ValueError("tensor rebuild arguments are not a tuple")
    return func(*args)


def read_nvidia_pickle(path: str | os.PathLike[str]) -> Any:
    """The unpickled top-level object of ``path`` (persistent objects as ModuleRecord); nothing in it is run.

    The file's opcodes are checked against stylegan_core.io.limits first (declared lengths, memo indices, nesting
    depth, value count), so nothing larger than the file itself is allocated; every refusal is a ValueError whose
    one-line message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle {path} does not exist")
    if zipfile.is_zipfile(path):
        raise ValueError(f"{path} is a torch.save archive (one of our snapshots?), not an NVIDIA network pickle")
    if not is_nvidia_pickle(path):
        raise ValueError(f"{path} is not an NVIDIA network pickle (no pickle protocol 2-5 header, or a legacy "
                         "torch.save file)")  # fmt: skip
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LimitError(f"refusing to load {path}: {size} bytes is more than any real network pickle "
                         f"(limit {MAX_FILE_BYTES})")  # fmt: skip
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            scan_pickle(data, f"refusing to load {path}")
            if data.tell() != size:
                raise ValueError(f"{path}: {size - data.tell()} bytes follow the pickle (corrupt file)")
            data.seek(0)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated")
                return RestrictedUnpickler(data, str(path)).load()
    except ValueError as error:
        if str(path) in str(error):  # ours, naming the file already (refusals included)
            raise
        raise ValueError(f"{path}: cannot read network pickle ({_one_line(error)})") from None
    except RecursionError:
        raise LimitError(f"refusing to load {path}: values nested too deeply") from None
    except Exception as error:  # corrupt or truncated files raise many unrelated types
        raise ValueError(f"{path}: truncated or corrupt network pickle ({type(error).__name__}: "
                         f"{_one_line(error)})") from None  # fmt: skip


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:300] + " ..."
