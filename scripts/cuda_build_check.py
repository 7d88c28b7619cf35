"""Build the compiled CUDA ops against a CUDA build of torch, with or without a GPU (`make cuda-build-check`).

Checks the toolchain (a CUDA torch, ninja, an nvcc of torch's CUDA major version, a C++ compiler), then builds
`stylegan_core.ops.cuda` through the normal path (`ops/cuda/build.py`: ninja, the locked cache), imports the module,
checks that every entry point is registered, and prints the build time and the exact versions. Anything missing
stops it with one sentence saying what to install (exit 1). The Makefile runs it in its own virtualenv; without a GPU
it compiles for `TORCH_CUDA_ARCH_LIST` (default there: 9.0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def first_line(command: list[str]) -> str:
    """The first non-empty output line of ``command``, or "" when it cannot run."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[0] if lines else ""


def nvcc_release(nvcc: str | None) -> str:
    """nvcc's full release line, e.g. ``Cuda compilation tools, release 13.0, V13.0.88``."""
    if nvcc is None:
        return ""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return next((line.strip() for line in out.splitlines() if "release" in line), "")


def versions() -> dict[str, str]:
    import torch

    from stylegan_core.ops.cuda import build

    compiler = os.environ.get("CXX", "c++")
    ninja = shutil.which("ninja")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": str(torch.version.cuda),
        "nvcc": nvcc_release(build._find_nvcc()),
        "nvcc_path": str(build._find_nvcc()),
        "ninja": first_line([ninja, "--version"]) if ninja else "",
        "cxx": first_line([compiler, "--version"]),
        "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST", ""),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def check_toolchain(found: dict[str, str]) -> str | None:
    """One sentence saying what to install, or None when the toolchain is complete."""
    from stylegan_core.ops.cuda.build import CudaOpsUnavailable, diagnose_environment

    try:
        diagnose_environment(require_gpu=False)
    except CudaOpsUnavailable as error:
        return f"{error.cause}; {error.fix}."
    if not found["cxx"]:
        return f"no C++ compiler ({os.environ.get('CXX', 'c++')}) runs; install g++ (e.g. `apt-get install g++`)."
    return None


def build() -> dict[str, object]:
    from stylegan_core.ops.cuda.build import EXTENSION_NAME, build_without_gpu, cache_root, missing_entry_points

    before = {str(path) for path in cache_root().glob(f"{EXTENSION_NAME}_*/*.so")}
    start = time.perf_counter()
    module = build_without_gpu()
    seconds = time.perf_counter() - start
    library = str(Path(module.__file__).resolve())
    return {
        "build_s": round(seconds, 1),
        "cached": library in before,
        "module": module.__name__,
        "library": library,
        "cache_root": str(cache_root()),
        "missing_entry_points": missing_entry_points(module),
    }


def markdown(found: dict[str, str], result: dict[str, object], verdict: str) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return (
        f"\n### `make cuda-build-check` ({day}, GPU: {found['gpu']})\n\n"
        f"{verdict}. torch {found['torch']} (CUDA {found['torch_cuda']}), {found['nvcc']}, ninja {found['ninja']}, "
        f"{found['cxx']}, Python {found['python']}, sm {found['arch_list']}; build {result.get('build_s')} s"
        f"{' (cache hit)' if result.get('cached') else ''}, library `{Path(str(result.get('library'))).name}`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", type=Path, help="append a results paragraph to this file (RESULTS.md)")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("cuda-build-check: torch is not installed; install a CUDA build of torch (e.g. torch==2.14.1).")
        return 1
    found = versions()
    problem = check_toolchain(found)
    if problem is not None:
        print(f"cuda-build-check: {problem}")
        print(json.dumps(found, indent=2))
        return 1
    from stylegan_core.ops.cuda.build import CudaOpsUnavailable

    try:
        result = build()
    except CudaOpsUnavailable as error:
        print(f"cuda-build-check: {error.cause}\nFix: {error.fix}")
        return 1
    missing = result["missing_entry_points"]
    verdict = f"FAILED: entry points {missing} are not registered" if missing else "passed"
    print(json.dumps({**found, **result}, indent=2))
    print(f"cuda-build-check: {verdict}; built in {result['build_s']} s into {result['cache_root']}")
    if args.markdown is not None:
        with open(args.markdown, "a", encoding="utf-8") as handle:
            handle.write(markdown(found, result, verdict))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
