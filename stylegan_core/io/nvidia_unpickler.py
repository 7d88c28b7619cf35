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

import io
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# `torch.save(..., _use_new_zipfile_serialization=False)` files start with this pickled magic number.
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:-1]
# Only StyleGAN3's training/networks_stylegan2.py has this word (ADA's training/networks.py does not).
_SG3_SOURCE_MARKER = "fused_modconv_default"
# Protocol-2 pickles name Python 2 modules.
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_TORCH_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}


class UnsafePickleError(ValueError):
    """The pickle asks for something a network pickle never needs; nothing it names was imported or run."""


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

    def _allowed_globals(self) -> dict[tuple[str, str], Callable[..., Any]]:
        numpy_scalar = np.float64(0).__reduce__()[0]
        numpy_reconstruct = np.zeros(1).__reduce__()[0]
        numpy_frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # arrays pickled with protocol 5
        table: dict[tuple[str, str], Callable[..., Any]] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._record_persistent_object,
            ("dnnlib.util", "EasyDict"): dict,
            ("dnnlib", "EasyDict"): dict,
            ("collections", "OrderedDict"): OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "bytearray"): bytearray,
            ("builtins", "complex"): complex,
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
            ("torch", "Tensor"): torch.Tensor,
            ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
            ("torch", "Size"): torch.Size,
            ("torch", "device"): torch.device,
            ("numpy", "dtype"): np.dtype,
            ("numpy", "ndarray"): np.ndarray,
        }
        for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 spellings
            table[(numpy_core, "scalar")] = numpy_scalar
            table[(numpy_core, "_reconstruct")] = lambda cls, *args: _numpy_reconstruct(numpy_reconstruct, cls, *args)
        for numpy_numeric in ("numpy.core.numeric", "numpy._core.numeric"):
            table[(numpy_numeric, "_frombuffer")] = numpy_frombuffer
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
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{self.source}: a tensor storage is {type(data).__name__}, expected bytes")
        try:
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafePickleError(
                f"refusing to load {self.source}: a tensor storage in it is not plain data ({error})"
            ) from None
        if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
            raise ValueError(f"{self.source}: a tensor storage holds a {type(storage).__name__}, expected a storage")
        return storage


def _latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode is only accepted as protocol 2 uses it: encode(str, 'latin1')")
    return text.encode("latin1")


def _numpy_reconstruct(reconstruct: Callable[..., Any], cls: Any, *args: Any) -> Any:
    if cls is not np.ndarray:
        raise ValueError(f"numpy _reconstruct of {cls!r} refused: only plain arrays are accepted")
    return reconstruct(cls, *args)


def _tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None) -> torch.Tensor:
    if isinstance(storage, torch.storage.TypedStorage):
        untyped, dtype = storage.untyped(), storage.dtype
    elif isinstance(storage, torch.UntypedStorage) and isinstance(dtype, torch.dtype):
        untyped = storage
    else:
        raise ValueError(f"tensor data is a {type(storage).__name__}, expected a torch storage")
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    return torch.empty((0,), dtype=dtype).set_(untyped, int(offset), size, stride)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _tensor_from_storage(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None) -> torch.Tensor:
    # requires_grad and (always empty) backward hooks do not matter for weights that are copied into our modules.
    if metadata:
        raise ValueError(f"tensor metadata {metadata!r} (conjugate/negative views) is not supported")
    return _tensor_from_storage(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None) -> torch.Tensor:
    if metadata:
        raise ValueError(f"tensor metadata {metadata!r} (conjugate/negative views) is not supported")
    return _tensor_from_storage(storage, offset, size, stride, dtype)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> torch.Tensor:
    if not torch.is_tensor(data):
        raise ValueError(f"a parameter holds a {type(data).__name__}, expected a tensor")
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    # Tensors carrying Python attributes; the attributes are dropped, the values kept.
    if func not in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3) or new_type not in (
        torch.Tensor, torch.nn.Parameter,
    ):  # fmt: skip
        raise ValueError(f"tensor subclass {new_type!r} rebuilt by {func!r} is not supported")
    return func(*args)


def read_nvidia_pickle(path: str | os.PathLike[str]) -> Any:
    """The unpickled top-level object of ``path`` (persistent objects as ModuleRecord); nothing in it is run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle {path} does not exist")
    if zipfile.is_zipfile(path):
        raise ValueError(f"{path} is a torch.save archive (one of our snapshots?), not an NVIDIA network pickle")
    if not is_nvidia_pickle(path):
        raise ValueError(f"{path} is not an NVIDIA network pickle (no pickle protocol 2-5 header, or a legacy "
                         "torch.save file)")  # fmt: skip
    try:
        with open(path, "rb") as file, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated")
            return RestrictedUnpickler(file, str(path)).load()
    except ValueError as error:
        if str(path) in str(error):  # ours, naming the file already (refusals included)
            raise
        raise ValueError(f"{path}: cannot read network pickle ({error})") from None
    except Exception as error:  # corrupt or truncated files raise many unrelated types
        raise ValueError(f"{path}: cannot read network pickle ({type(error).__name__}: {error})") from None
