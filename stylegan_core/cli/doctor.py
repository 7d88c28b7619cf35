"""`stylegan doctor`: what works on this machine, and what to install when something a training run needs does not.

Prints torch / CUDA / driver / nvcc / ninja / compiler versions, the GPUs with their memory, whether the compiled ops
build (time, cache folder) and which ops implementation training will use. On a GPU it also runs a few-second parity
check of the compiled bias_act and upfirdn2d against the reference, a float16 G/D forward against float32, and an
NCCL initialisation; without one it says those parts are untested. Exit status 1 when something is broken, with the
fix on the line below it; 0 otherwise (missing optional pieces are warnings).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

STATUSES = ("ok", "info", "warn", "untested", "error")


@dataclass(frozen=True)
class Check:
    """One finding: ``error`` breaks training (exit 1), ``warn`` makes it slower or less complete."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _run(command: list[str]) -> tuple[int, str]:
    """Exit code and combined output of ``command`` (127 when it cannot be started)."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return 127, str(error)
    return result.returncode, (result.stdout + result.stderr).strip()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def check_torch() -> list[Check]:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    detail = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU-only build)'}, cuDNN {cudnn}"
    found = [Check("torch", "ok", detail)]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            memory = f"{props.total_memory / 2**30:.1f} GiB"
            found.append(Check(f"gpu{index}", "ok", f"{props.name}, {memory}, sm {props.major}.{props.minor}"))
        code, out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        driver = _first_line(out) if code == 0 else "unknown (nvidia-smi not available)"
        found.append(Check("driver", "ok" if code == 0 else "info", f"NVIDIA driver {driver}"))
    else:
        reason = "this torch has no CUDA" if torch.version.cuda is None else "torch.cuda.is_available() is False"
        found.append(Check("gpu", "untested", f"no CUDA GPU visible ({reason})"))
    return found


def check_toolchain(cuda_torch: bool) -> list[Check]:
    """nvcc, ninja and the C++ compiler: absent is a warning where compiled ops could be used, broken is an error."""
    import torch

    from stylegan_core.ops.cuda.build import _find_nvcc, _toolkit_problem

    missing = "warn" if cuda_torch else "info"  # absent tools matter only where compiled ops could run
    found = [_check_nvcc(_find_nvcc(), torch.version.cuda, missing)]
    problem = _toolkit_problem() if cuda_torch and found[0].status == "ok" else None
    if problem is not None:  # nvcc runs, but torch would compile and link against the wrong folder
        found.append(Check("cuda_home", "error", problem, "set CUDA_HOME to the toolkit folder, e.g. /usr/local/cuda"))
    ninja = shutil.which("ninja")
    describe_ninja = lambda out: f"{_first_line(out)} at {ninja}"  # noqa: E731
    found.append(_check_tool("ninja", ninja, missing, "`pip install ninja`", describe_ninja))
    compiler = os.environ.get("CXX", "c++")
    found.append(_check_tool("compiler", shutil.which(compiler), missing, f"install g++ or set CXX (tried {compiler})",
                             _first_line))  # fmt: skip
    return found


def _check_tool(name: str, path: str | None, missing: str, fix: str, describe: Any) -> Check:
    if path is None:
        return Check(name, missing, "not found on PATH", fix if missing == "warn" else "")
    code, out = _run([path, "--version"])
    if code != 0:
        return Check(name, "error", f"{path} does not run (exit {code}: {_first_line(out)[:120]!r})", fix)
    return Check(name, "ok", describe(out))


def _check_nvcc(nvcc: str | None, torch_cuda: str | None, missing: str) -> Check:
    if nvcc is None:
        fix = f"install the CUDA toolkit {torch_cuda} (nvcc) and set CUDA_HOME" if missing == "warn" else ""
        return Check("nvcc", missing, "not found (CUDA_HOME, PATH): compiled ops cannot be built", fix)
    code, out = _run([nvcc, "--version"])
    match = re.search(r"release (\d+)\.(\d+), (V[\d.]+)", out)
    if code != 0 or match is None:
        detail = f"{nvcc} does not run (exit {code}: {_first_line(out)[:120]!r})"
        return Check("nvcc", "error", detail, f"reinstall the CUDA toolkit or take {os.path.dirname(nvcc)} off PATH")
    if torch_cuda is not None and match.group(1) != torch_cuda.split(".")[0]:
        detail = f"nvcc {match.group(3)} ({nvcc}), but torch is built for CUDA {torch_cuda}: compiled ops cannot build"
        return Check("nvcc", "error", detail, f"point CUDA_HOME at a CUDA {torch_cuda.split('.')[0]}.x toolkit")
    return Check("nvcc", "ok", f"{match.group(3)} at {nvcc}")


def check_compiled_ops(build: bool) -> tuple[list[Check], str]:
    """Whether the compiled ops build and load here, and the implementation training will use."""
    import torch

    from stylegan_core.ops.cuda.build import CudaOpsUnavailable, cache_root, load_extension
    from stylegan_core.ops.dispatch import env_impl

    wanted = env_impl()
    if wanted == "ref":
        return [Check("ops", "info", "STYLEGAN_OPS_IMPL=ref: the compiled ops are not used")], "ref"
    if not torch.cuda.is_available():
        return [Check("ops", "untested", "compiled ops not built: no CUDA GPU here; training uses impl ref")], "ref"
    if not build:
        return [Check("ops", "untested", f"compiled ops not built by this summary (cache: {cache_root()})")], "cuda?"
    start = time.perf_counter()
    try:
        module = load_extension()
    except CudaOpsUnavailable as error:
        status = "error" if wanted == "cuda" else "warn"
        return [Check("ops", status, f"compiled ops unavailable: {error.cause}; training falls back to impl ref "
                      "(several times slower)" if status == "warn" else error.cause, error.fix)], "ref"  # fmt: skip
    seconds = time.perf_counter() - start
    detail = f"compiled ops {module.__name__} ready in {seconds:.1f} s (cache: {cache_root()})"
    return [Check("ops", "ok", detail)], "cuda"


def _relative(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


def _tiny_networks(device: str) -> tuple[Any, Any]:
    import torch

    from stylegan_core.networks import Discriminator, Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        synthesis = dict(channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256)
        G = Generator(32, 0, 32, 32, 3, dict(num_layers=2), synthesis).eval().to(device)
        D = Discriminator(0, 32, 3, channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256).to(device)
    return G, D


def check_fp16_forward(device: str) -> Check:
    """A float16 G/D forward against float32 on ``device``: finite and within float16's reach of float32."""
    import torch

    try:
        G, D = _tiny_networks(device)
        with torch.no_grad():
            ws = G.mapping(torch.randn([4, 32], generator=torch.Generator().manual_seed(1)).to(device), None)
            img16, img32 = (G.synthesis(ws, noise_mode="const", force_fp32=f) for f in (False, True))
            logits16, logits32 = (D(img32, None, force_fp32=f) for f in (False, True))
    except RuntimeError as error:  # e.g. a torch build without float16 kernels on this device
        return Check(f"fp16 {device}", "warn", f"float16 forward failed: {_first_line(str(error))[:160]}")
    errors = (_relative(img16, img32), _relative(logits16, logits32))
    finite = bool(torch.isfinite(img16).all() and torch.isfinite(logits16).all())
    ok = finite and max(errors) < 0.05  # float16 keeps ~3 digits; a real fault (overflow, wrong dtype) is far larger
    detail = f"float16 vs float32 forward: G {errors[0]:.1e}, D {errors[1]:.1e} (relative)"
    fix = "" if ok else "train with --fp32 and report this with `stylegan doctor --json`"
    return Check(f"fp16 {device}", "ok" if ok else "error", detail, fix)


def check_ops_parity() -> Check:
    import torch

    from stylegan_core.ops import bias_act, setup_filter, upfirdn2d

    x = torch.randn([4, 32, 33, 35], device="cuda")
    b = torch.randn([32], device="cuda")
    f = setup_filter([1, 3, 3, 1], device=x.device)
    pairs = {
        "bias_act": [bias_act(x, b, act="lrelu", clamp=0.5, impl=impl) for impl in ("cuda", "ref")],
        "upfirdn2d": [upfirdn2d(x, f, up=2, padding=1, impl=impl) for impl in ("cuda", "ref")],
    }
    errors = {name: _relative(*pair) for name, pair in pairs.items()}
    ok = max(errors.values()) <= 1e-5
    detail = ", ".join(f"{name} {error:.1e}" for name, error in errors.items()) + " (compiled vs reference, float32)"
    return Check("ops parity", "ok" if ok else "error", detail, "" if ok else "set STYLEGAN_OPS_IMPL=ref and report it")


def check_nccl() -> Check:
    import torch.distributed as dist

    if not dist.is_nccl_available():
        return Check("nccl", "warn", "this torch has no NCCL: no multi-GPU training", "install a CUDA build of torch")
    import torch

    try:
        store = dist.HashStore()
        dist.init_process_group("nccl", store=store, rank=0, world_size=1)
        value = torch.ones([1], device="cuda")
        dist.all_reduce(value)
        torch.cuda.synchronize()
        dist.destroy_process_group()
    except Exception as error:  # any failure here is the answer: NCCL does not work on this machine
        return Check("nccl", "error", f"NCCL failed to initialise: {_first_line(str(error))[:160]}",
                     "check the driver and NCCL_* environment variables (NCCL_DEBUG=INFO shows why)")  # fmt: skip
    return Check("nccl", "ok", f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))} initialised (1 rank)")


def collect(build: bool = True, gpu_checks: bool = True) -> dict[str, Any]:
    """All findings as plain data: ``checks`` (list of dicts), ``impl``, ``ok``."""
    import torch

    checks = check_torch()
    checks += check_toolchain(torch.version.cuda is not None)
    ops, impl = check_compiled_ops(build)
    checks += ops
    checks.append(check_fp16_forward("cpu"))
    if torch.cuda.is_available() and gpu_checks:
        if impl == "cuda":
            checks.append(check_ops_parity())
        checks.append(check_fp16_forward("cuda"))
        checks.append(check_nccl())
    elif not torch.cuda.is_available():
        checks.append(Check("gpu checks", "untested", "compiled-vs-reference ops parity, float16 on the GPU and NCCL "
                            "were not run: no CUDA GPU (run `stylegan doctor` on the GPU machine)"))  # fmt: skip
    checks.append(Check("training impl", "info", f"training will use impl {impl}"))
    return {"ok": all(check.status != "error" for check in checks), "impl": impl,
            "checks": [asdict(check) for check in checks]}  # fmt: skip


def machine_summary() -> dict[str, Any]:
    """A quick summary for run metadata (no build, no GPU checks): status and detail per check."""
    report = collect(build=False, gpu_checks=False)
    return {check["name"]: f"{check['status']}: {check['detail']}" for check in report["checks"]}


def register(subparsers: argparse._SubParsersAction) -> None:
    description = __doc__.split("\n\n")[0]
    parser = subparsers.add_parser("doctor", help="check this machine for training", description=description)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--no-build", action="store_true", help="do not build the compiled ops")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = collect(build=not args.no_build)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for check in report["checks"]:
            print(f"[{check['status']:>8}] {check['name']}: {check['detail']}")
            if check["fix"] and check["status"] in ("error", "warn"):
                print(f"{'':11}fix: {check['fix']}")
        broken = [check["name"] for check in report["checks"] if check["status"] == "error"]
        print("doctor: " + (f"BROKEN: {', '.join(broken)}" if broken else "nothing a training run needs is broken"))
    return 0 if report["ok"] else 1
