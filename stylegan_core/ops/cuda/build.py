"""Build the compiled ops on first use, once per source/torch/CUDA/GPU combination, and load them.

The extension is compiled by ``torch.utils.cpp_extension.load`` (ninja + nvcc) into a private temporary folder and
then renamed into place, so a finished build folder is always complete. An exclusive file lock (``fcntl.flock``,
released by the OS if its holder dies, so it never goes stale) makes the ranks of a multi-GPU run that start
together build once: the first compiles, the others wait and then load its result. The folder name is a hash of the
sources, the compiler flags, torch's and CUDA's versions, the Python ABI and the GPU architectures, under
``$TORCH_EXTENSIONS_DIR`` (default: torch's ``~/.cache/torch_extensions``); delete it to force a rebuild.

Anything that stops the build raises ``CudaOpsUnavailable`` with the cause and the fix in words; ``ops.dispatch``
turns that into one warning (``impl="auto"``) or an error (``impl="cuda"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import torch

EXTENSION_NAME = "stylegan_core_ops"
SOURCE_DIR = Path(__file__).resolve().parent
COMPILED_SOURCES = ("sg_ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("sg_ops.h", "sg_ops_math.h")
# No --use_fast_math: the kernels are bound by memory traffic, and exact expf/tanhf keep parity with the reference.
CXX_FLAGS = ("-O3",)
CUDA_FLAGS = ("-O3", "--expt-relaxed-constexpr")
LOG_LINES = 12
ENTRY_POINTS = ("bias_act", "upfirdn2d")
"""Functions the compiled module must export (bound in sg_ops.cpp, called by bias_act_fn.py / upfirdn2d_fn.py)."""


class CudaOpsUnavailable(RuntimeError):
    """The compiled ops cannot be used; ``cause`` and ``fix`` are one sentence each."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"compiled CUDA ops unavailable: {cause}\nFix: {fix}")
        self.cause = cause
        self.fix = fix


def cache_key(
    sources: Sequence[Path], torch_version: str, cuda_version: str | None, arch_list: str, extra: Sequence[str] = ()
) -> str:
    """16 hex digits identifying one build: the sources' names and bytes, versions, architectures and flags."""
    digest = hashlib.sha256()
    for path in sorted(sources, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for part in (torch_version, str(cuda_version), arch_list, *extra):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """Where built extensions live: ``$TORCH_EXTENSIONS_DIR`` if set, else torch's default folder."""
    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes (and threads: each call opens its own descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the atomic rename in build_once still keeps builds whole
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def build_once(final_dir: Path, artifact: str, build: Callable[[Path], None]) -> Path:
    """Return ``final_dir / artifact``, calling ``build(temp_dir)`` to make it unless some process already has.

    ``build`` must write ``artifact`` into the folder it is given. Concurrent callers (threads or processes) wait for
    the one building; a failed build leaves nothing behind, so the next call tries again.
    """
    target = final_dir / artifact
    if target.exists():
        return target
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(final_dir.parent / f"{final_dir.name}.lock"):
        if target.exists():  # built by another process while this one waited
            return target
        temp_dir = Path(tempfile.mkdtemp(prefix=f"{final_dir.name}.tmp-", dir=final_dir.parent))
        try:
            build(temp_dir)
            if not (temp_dir / artifact).exists():
                raise RuntimeError(f"the build finished without producing {temp_dir / artifact}")
            if final_dir.exists():  # an incomplete folder (e.g. copied by hand): replace it
                shutil.rmtree(final_dir)
            try:
                os.rename(temp_dir, final_dir)
            except OSError:
                if not target.exists():  # only a racing builder on a platform without locks may get here first
                    raise
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return target


def _find_nvcc() -> str | None:
    from torch.utils.cpp_extension import CUDA_HOME

    for home in (CUDA_HOME, os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _toolkit_problem() -> str | None:
    """Why torch's CUDA_HOME cannot build an extension, or None. torch compiles and links against CUDA_HOME's
    ``include`` and ``lib64``; when CUDA_HOME is unset it guesses it from the nvcc on PATH, which is wrong if that nvcc
    is a wrapper script (e.g. /usr/local/bin/nvcc gives /usr/local): the build then fails at link time."""
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "torch found no CUDA toolkit (CUDA_HOME unset and no nvcc on PATH)"
    if not (Path(CUDA_HOME) / "include" / "cuda_runtime.h").is_file():
        return f"CUDA_HOME={CUDA_HOME} is not a CUDA toolkit (no include/cuda_runtime.h; guessed from a wrapper nvcc?)"
    return None


def _nvcc_version(nvcc: str) -> str:
    """``"13.0"`` from ``nvcc --version``, or ``""`` when it cannot be read."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else ""


def diagnose_environment(require_gpu: bool = True) -> str:
    """Check what a build needs before starting one; return nvcc's version or raise ``CudaOpsUnavailable``.

    ``require_gpu=False`` checks only the toolchain (a CUDA torch, ninja, a matching nvcc): enough to compile, as
    ``scripts/cuda_build_check.py`` does on a machine without a GPU.
    """
    if torch.version.cuda is None:
        raise CudaOpsUnavailable(
            f"this PyTorch ({torch.__version__}) was built without CUDA",
            "install a CUDA build of PyTorch (https://pytorch.org/get-started/locally/)",
        )
    if require_gpu and not torch.cuda.is_available():
        raise CudaOpsUnavailable(
            "torch.cuda.is_available() is False: no usable GPU or driver",
            "check `nvidia-smi` and CUDA_VISIBLE_DEVICES",
        )
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        raise CudaOpsUnavailable("ninja is not installed (torch builds extensions with it)", "`pip install ninja`")
    nvcc = _find_nvcc()
    if nvcc is None:
        raise CudaOpsUnavailable(
            "no CUDA compiler: nvcc is not under CUDA_HOME and not on PATH",
            f"install the CUDA toolkit {torch.version.cuda} (conda's cudatoolkit has no nvcc: use the cuda-nvcc "
            "package or NVIDIA's installer) and set CUDA_HOME to it",
        )
    problem = _toolkit_problem()
    if problem is not None:
        raise CudaOpsUnavailable(problem, "set CUDA_HOME to the CUDA toolkit folder, e.g. /usr/local/cuda")
    version = _nvcc_version(nvcc)
    if version and version.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise CudaOpsUnavailable(
            f"nvcc {version} ({nvcc}) does not match the CUDA {torch.version.cuda} PyTorch was built with",
            f"point CUDA_HOME at a CUDA {torch.version.cuda.split('.')[0]}.x toolkit",
        )
    return version


def gpu_arch_list() -> str:
    """``$TORCH_CUDA_ARCH_LIST`` if set, else the compute capabilities of the visible GPUs, e.g. ``"9.0"``."""
    configured = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if configured:
        return configured
    if not torch.cuda.is_available():
        raise CudaOpsUnavailable(
            "no GPU is visible, so the GPU architectures to compile for are unknown",
            "set TORCH_CUDA_ARCH_LIST, e.g. 9.0 for H100/H200 or 8.0 for A100",
        )
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def _is_build_noise(line: str) -> bool:
    """torch's prefix, ninja's progress and FAILED lines, and the (very long) compiler command lines."""
    stripped = line.lstrip()
    return stripped.startswith(("Error building extension", "[", "FAILED:", "ninja:")) or (
        " -c " in stripped and " -o " in stripped
    )


def summarize_build_log(log: str, max_lines: int = LOG_LINES) -> str:
    """The compiler's distinct error lines (or, failing that, the first lines) of a build log."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip() and not _is_build_noise(line)]
    errors = [line for line in lines if re.search(r"\berror\b|fatal|cannot find -l", line, re.IGNORECASE)]
    return "\n".join(list(dict.fromkeys(errors or lines))[:max_lines])


def _compile_into(build_dir: Path, module_name: str, arch_list: str) -> None:
    from torch.utils.cpp_extension import load

    saved_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list  # only this machine's GPUs: a shorter build
    try:
        # is_python_module=False builds and dlopens without running the module's init; it is imported from its
        # final folder afterwards (same file, so the same loaded library).
        load(
            name=module_name,
            sources=[str(SOURCE_DIR / name) for name in COMPILED_SOURCES],
            extra_cflags=list(CXX_FLAGS),
            extra_cuda_cflags=list(CUDA_FLAGS),
            extra_include_paths=[str(SOURCE_DIR)],
            build_directory=str(build_dir),
            with_cuda=True,
            is_python_module=False,
            verbose=False,
        )
    finally:
        if saved_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch


def _import_from(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_and_import(require_gpu: bool = True) -> ModuleType:
    nvcc_version = diagnose_environment(require_gpu)
    arch_list = gpu_arch_list()
    sources = [SOURCE_DIR / name for name in (*COMPILED_SOURCES, *HEADERS)]
    extra = (sys.implementation.cache_tag or "", nvcc_version, *CXX_FLAGS, *CUDA_FLAGS)
    module_name = f"{EXTENSION_NAME}_{cache_key(sources, torch.__version__, torch.version.cuda, arch_list, extra)}"
    final_dir = cache_root() / module_name
    artifact = f"{module_name}.pyd" if os.name == "nt" else f"{module_name}.so"
    log_path = final_dir.parent / f"{module_name}.log"

    def build(temp_dir: Path) -> None:
        print(f"stylegan_core: compiling CUDA ops for sm {arch_list} into {final_dir} (once)", file=sys.stderr)
        try:
            _compile_into(temp_dir, module_name, arch_list)
        except Exception as error:
            log_path.write_text(str(error))
            fix = (
                "a library is missing at link time: set CUDA_HOME to the CUDA toolkit folder"
                if "cannot find -l" in str(error)
                else "a gcc/g++ newer than this nvcc supports is the usual cause (set CC and CXX to a supported one)"
            )
            raise CudaOpsUnavailable(
                "compiling the CUDA ops failed:\n" + summarize_build_log(str(error)), f"{fix}; full log: {log_path}"
            ) from error

    library = build_once(final_dir, artifact, build)
    try:
        return _import_from(library, module_name)
    except ImportError as error:
        raise CudaOpsUnavailable(
            f"the compiled ops at {library} could not be loaded: {error}", f"delete {final_dir} to rebuild"
        ) from error


def build_without_gpu() -> ModuleType:
    """Compile (or find in the cache) and import the module through the normal path, without needing a GPU.

    For build checks on GPU-less machines: the architectures come from ``TORCH_CUDA_ARCH_LIST``. The module is not
    remembered by ``load_extension``; nothing here launches a kernel.
    """
    return _build_and_import(require_gpu=False)


def missing_entry_points(module: ModuleType) -> list[str]:
    """The names of ``ENTRY_POINTS`` the module does not export (empty when the build is complete)."""
    return [name for name in ENTRY_POINTS if not callable(getattr(module, name, None))]


_lock = threading.Lock()
_result: ModuleType | CudaOpsUnavailable | None = None


def load_extension() -> ModuleType:
    """The compiled module (built on the first call in this process); raises ``CudaOpsUnavailable`` otherwise.

    The outcome, success or failure, is remembered for the life of the process.
    """
    global _result
    with _lock:
        if _result is None:
            try:
                _result = _build_and_import()
            except CudaOpsUnavailable as error:
                _result = error
            except OSError as error:  # e.g. a cache folder that cannot be written
                _result = CudaOpsUnavailable(
                    f"the build folder under {cache_root()} is not usable: {error}",
                    "set TORCH_EXTENSIONS_DIR to a writable folder",
                )
        if isinstance(_result, CudaOpsUnavailable):
            raise CudaOpsUnavailable(_result.cause, _result.fix)  # a fresh exception: no traceback piles up
        return _result
