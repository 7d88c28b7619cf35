"""numpy values inside NVIDIA pickles (scalars such as ``weight_gain``, rarely arrays), rebuilt from checked bytes.

numpy pickles a dtype as ``numpy.dtype(name, False, True)`` plus a state, a scalar as ``scalar(dtype, bytes)`` and
an array as ``_reconstruct(ndarray, (0,), b'b')`` plus the state ``(1, shape, dtype, is_fortran, raw bytes)`` (or
``_frombuffer`` with protocol 5). Only those paths exist here; ``ndarray`` itself is a marker, never a callable, so
a pickle cannot call ``ndarray(shape, dtype, buffer)``. Dtypes are plain numbers (no object, structured or
sub-array dtypes), and every array's bytes must match its declared shape before it is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stylegan_core.io.limits import MAX_TENSOR_DIMS, MAX_TENSOR_ELEMENTS, LimitError, UnsafePickleError

_PLAIN_KINDS = "biufc"


class NdarrayMarker:
    """Stands for ``numpy.ndarray`` in a pickle: accepted as ``_reconstruct``'s class argument, never called."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError("numpy.ndarray is called directly (buffer, dtype and strides chosen by the file); "
                                "arrays are only accepted through numpy's own _reconstruct")  # fmt: skip


NDARRAY = NdarrayMarker()


class DtypeSpec:
    """``numpy.dtype(name, ...)`` as a pickle builds it; becomes a real dtype once its state (byte order) is set."""

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(name, str) or len(name) > 8:
            raise ValueError("numpy dtype must be named by a short string")
        try:
            dtype = np.dtype(name)
        except TypeError:
            raise ValueError(f"numpy dtype {name!r} is unknown") from None
        self.dtype = _plain_dtype(dtype)

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4) and state[1] in "<>|="
                and state[2] is None and state[3] is None and state[4] is None):  # fmt: skip
            raise ValueError("numpy dtype state is not that of a plain number type (no fields, no sub-arrays)")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _plain_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, DtypeSpec):
        dtype = dtype.dtype
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in _PLAIN_KINDS or dtype.fields \
            or dtype.subdtype is not None:  # fmt: skip
        raise ValueError(f"numpy dtype {dtype!r} refused: only plain number dtypes are accepted (never objects)")
    return dtype


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > MAX_TENSOR_DIMS or not all(
        type(n) is int and 0 <= n <= MAX_TENSOR_ELEMENTS for n in shape
    ):
        raise ValueError("numpy array shape is not a short tuple of non-negative integers")
    count = 1
    for n in shape:
        count *= n
    if count > MAX_TENSOR_ELEMENTS:
        raise LimitError(f"numpy array of shape {list(shape)} exceeds {MAX_TENSOR_ELEMENTS} elements")
    return shape


def _from_bytes(data: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"numpy array data is a {type(data).__name__}, expected bytes")
    count = 1
    for n in shape:
        count *= n
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"numpy array of shape {list(shape)} {dtype} needs {count * dtype.itemsize} bytes, the "
                         f"pickle holds {len(data)}")  # fmt: skip
    return np.frombuffer(bytes(data), dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


class CheckedArray(np.ndarray):
    """What ``_reconstruct`` returns: an empty array whose pickled state is checked before numpy applies it."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 4:
            state = (1, *state)
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[3], bool)):
            raise ValueError("numpy array state is malformed")
        _version, shape, dtype, fortran, data = state
        array = _from_bytes(data, _plain_dtype(dtype), _shape(shape), fortran)
        super().__setstate__((1, array.shape, array.dtype, False, array.tobytes()))


def reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> CheckedArray:
    if cls is not NDARRAY:
        raise ValueError("numpy _reconstruct of anything but a plain ndarray is refused")
    return np.zeros(0, dtype=np.uint8).view(CheckedArray)


def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if order not in ("C", "F"):
        raise ValueError("numpy array order must be 'C' or 'F'")
    return _from_bytes(buffer, _plain_dtype(dtype), _shape(shape), order == "F")


def scalar(dtype: Any, data: Any) -> Any:
    dtype = _plain_dtype(dtype)
    return _from_bytes(data, dtype, (), False)[()]
