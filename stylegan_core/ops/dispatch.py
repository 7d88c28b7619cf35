"""Choice between the readable reference implementation of an op and its compiled CUDA kernel.

``choose_impl(op_name, impl, x)`` returns ``"ref"`` or ``"cuda"``:

- ``impl="ref"``: always the reference.
- ``impl="cuda"``: the compiled kernel, or an error that names the cause (no CUDA tensor, PyTorch without CUDA,
  no nvcc or CUDA_HOME, no ninja, a compiler error with the first lines of its log) and the fix.
- ``impl="auto"``: the environment variable ``STYLEGAN_OPS_IMPL`` (``ref`` | ``cuda`` | ``auto``) takes its place
  when set. Then a CPU tensor gets the reference, silently; a CUDA tensor gets the kernel, built on first use (see
  ``ops/cuda/build.py``). If the build fails the reference is used and ONE warning per process says why and how to
  fix it: it never silently makes training several times slower.

``STYLEGAN_OPS_IMPL=ref`` skips the build and the warning; ``STYLEGAN_OPS_IMPL=cuda`` turns a failed build into an
error for every CUDA tensor (CPU tensors still use the reference, which is the only implementation they have).
The outcome of the build is remembered for the life of the process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Literal

import torch

ENV_VAR = "STYLEGAN_OPS_IMPL"
IMPLS = ("auto", "ref", "cuda")

_warned = False
_warn_lock = threading.Lock()
_process_impl: str | None = None


def set_process_impl(impl: str | None) -> None:
    """What ``impl="auto"`` means in this process from now on (training sets its `ops_impl` option here);
    None goes back to ``STYLEGAN_OPS_IMPL``."""
    global _process_impl
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"ops implementation must be one of {', '.join(IMPLS)}, got {impl!r}")
    _process_impl = impl


@contextlib.contextmanager
def process_impl(impl: str | None) -> Iterator[None]:
    """`set_process_impl(impl)` for the block, then the previous choice again: a training run called in a process that
    goes on (a test, a notebook, a second run) must not leave its `ops_impl` behind for later callers."""
    previous = _process_impl
    set_process_impl(impl)
    try:
        yield
    finally:
        set_process_impl(previous)


def env_impl() -> str:
    """The process's choice (`set_process_impl`), else ``STYLEGAN_OPS_IMPL`` ("auto" when unset); a value outside
    ref|cuda|auto is an error."""
    if _process_impl is not None:
        return _process_impl
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "auto"
    if value not in IMPLS:
        raise ValueError(f"environment variable {ENV_VAR}={value!r}: expected one of ref, cuda, auto")
    return value


def choose_impl(op_name: str, impl: str, x: torch.Tensor) -> Literal["ref", "cuda"]:
    """Return "ref" or "cuda" for ``op_name`` applied to ``x`` (see the module docstring for the rules)."""
    if impl not in IMPLS:
        raise ValueError(f"{op_name}: impl must be 'auto', 'ref' or 'cuda', got {impl!r}")
    if impl == "auto":
        impl = env_impl()
        if not x.is_cuda:
            return "ref"  # the only implementation a CPU tensor has, whatever the environment asks for
    if impl == "ref":
        return "ref"
    if not x.is_cuda:
        _raise_for_cpu_tensor(op_name, x)

    from stylegan_core.ops.cuda.build import CudaOpsUnavailable, load_extension

    try:
        load_extension()
    except CudaOpsUnavailable as error:
        if impl == "cuda":
            raise CudaOpsUnavailable(f"{op_name} (impl='cuda'): {error.cause}", error.fix) from None
        _warn_once(op_name, error)
        return "ref"
    return "cuda"


def _raise_for_cpu_tensor(op_name: str, x: torch.Tensor) -> None:
    """impl='cuda' with a tensor not on a GPU: say whether the environment could have run it at all."""
    from stylegan_core.ops.cuda.build import CudaOpsUnavailable, diagnose_environment

    try:
        diagnose_environment()
    except CudaOpsUnavailable as error:
        raise CudaOpsUnavailable(
            f"{op_name}: impl='cuda' was requested for a tensor on {x.device}, and {error.cause}", error.fix
        ) from None
    raise ValueError(f"{op_name}: impl='cuda' needs a CUDA tensor, got one on {x.device}; move it with .cuda()")


def _warn_once(op_name: str, error: Exception) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    cause = getattr(error, "cause", str(error))
    fix = getattr(error, "fix", "")
    warnings.warn(
        f"{op_name} and the other fused ops fall back to their slow reference implementation (training will be "
        f"several times slower) because {cause}\nFix: {fix}\n"
        f"Set {ENV_VAR}=ref to choose the reference without this warning, or {ENV_VAR}=cuda to make it an error.",
        RuntimeWarning,
        stacklevel=3,
    )
