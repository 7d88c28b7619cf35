"""The CUDA kernels' arithmetic and autograd wiring, checked on CPU.

``tests/ops_cuda_host_harness.cpp`` compiles the kernels' per-element code (``ops/cuda/sg_ops_math.h``) with g++ and
runs it in plain loops; ``HostBackend`` gives it the compiled module's Python signature and asserts the launchers'
preconditions. The real autograd Functions of ``ops/cuda`` run on top, so everything but the CUDA thread mapping is
tested here: against NVIDIA's vectors (float32) and against the reference ops in float64, up to second order.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_core.ops.bias_act import bias_act_ref, resolve_activation
from stylegan_core.ops.cuda.bias_act_fn import bias_act_with_backend
from stylegan_core.ops.cuda.upfirdn2d_fn import upfirdn2d_with_backend
from stylegan_core.ops.upfirdn2d import parse_padding, parse_scaling, upfirdn2d_ref

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("ops_cuda_host_harness.cpp")
CUDA_SOURCES = REPO / "stylegan_core" / "ops" / "cuda"
CASES: dict[str, dict] = json.loads((REPO / "tests/fixtures/reference/ops.json").read_text())["cases"]
ACTIVATIONS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]
I64, I32, F64 = ctypes.c_int64, ctypes.c_int, ctypes.c_double
SIMULATED_THREADS = 37


def _ptr(t: torch.Tensor) -> ctypes.c_void_p | None:
    return ctypes.c_void_p(t.data_ptr()) if t.numel() else None


class HostBackend:
    """The compiled module's interface (``bias_act``, ``upfirdn2d``) on the CPU harness."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        for suffix in ("f32", "f64"):
            bias_act_args = [ctypes.c_void_p] * 6 + [I64] * 3 + [I32] * 3 + [F64] * 3 + [I64]
            getattr(lib, f"sg_host_bias_act_{suffix}").argtypes = bias_act_args
            upfirdn2d_args = [ctypes.c_void_p] * 3 + [I64] + [I32] * 14 + [F64]
            getattr(lib, f"sg_host_upfirdn2d_{suffix}").argtypes = upfirdn2d_args
        lib.sg_host_upfirdn_out_size.argtypes = [I64] + [I32] * 5
        lib.sg_host_upfirdn_out_size.restype = I64

    def _suffix(self, x: torch.Tensor) -> str:
        assert x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64), (x.device, x.dtype)
        return "f32" if x.dtype == torch.float32 else "f64"

    def bias_act(self, x, b, xref, yref, dy, mode, dim, act, ref_is_x, alpha, gain, clamp):  # noqa: ANN001, ANN201
        # The preconditions bias_act.cu checks, so the Python wiring is held to them here.
        assert x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        for t in (xref, yref, dy):
            assert not t.numel() or (t.shape == x.shape and t.stride() == x.stride() and t.dtype == x.dtype)
        assert not b.numel() or (
            b.ndim == 1 and b.shape[0] == x.shape[dim] and b.is_contiguous() and b.dtype == x.dtype
        )
        assert mode == 0 or act == 0 or (xref if ref_is_x else yref).numel(), "gradient mode without its reference"
        assert clamp < 0 or mode == 0 or yref.numel(), "clamped gradient without yref"
        assert mode != 2 or dy.numel(), "mode 2 without dy"
        out = torch.empty_like(x)
        fn = getattr(self.lib, f"sg_host_bias_act_{self._suffix(x)}")
        bias_stride, bias_size = max(x.stride(dim), 1), max(x.shape[dim], 1)
        args = [_ptr(t) for t in (x, b, xref, yref, dy)] + [_ptr(out), x.numel(), bias_stride, bias_size]
        # An odd number of simulated threads, so the grid-stride steps cross rows and channels unevenly.
        assert fn(*args, mode, act, int(ref_is_x), alpha, gain, clamp, SIMULATED_THREADS) == 0
        return out

    def upfirdn2d(self, x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):  # noqa: ANN001, ANN201
        assert x.ndim == 4 and x.is_contiguous() and f.ndim in (1, 2) and f.is_contiguous()
        assert f.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
        n, c, h, w = x.shape
        taps_h, taps_w = f.shape[0], f.shape[-1]
        out_h = self.lib.sg_host_upfirdn_out_size(h, upy, pady0, pady1, taps_h, downy)
        out_w = self.lib.sg_host_upfirdn_out_size(w, upx, padx0, padx1, taps_w, downx)
        y = torch.empty([n, c, out_h, out_w], dtype=x.dtype)
        fn = getattr(self.lib, f"sg_host_upfirdn2d_{self._suffix(x)}")
        factors_and_padding = (upx, upy, downx, downy, padx0, padx1, pady0, pady1)
        fn(_ptr(x), _ptr(f), _ptr(y), n * c, h, w, taps_h, taps_w, *factors_and_padding, f.ndim == 1, flip_filter, gain)
        return y


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> HostBackend:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++) to build the kernels' host harness")
    library = tmp_path_factory.mktemp("harness") / "sg_ops_host.so"
    command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{CUDA_SOURCES}", str(HARNESS), "-o", str(library)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, f"host harness did not compile:\n{built.stderr}"
    return HostBackend(ctypes.CDLL(str(library)))


@pytest.fixture(scope="module")
def vectors(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "ops.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _assert_nvidia_close(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    """The fixtures' criterion: max|ours - ref| <= 1e-5 * max|ref| + 1e-6."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {ref.shape}"
    err = float(np.abs(ours.detach().double().numpy() - ref).max())
    assert err <= 1e-5 * float(np.abs(ref).max()) + 1e-6, f"{what}: max abs error {err:.3e}"


def _run_nvidia_case(case: str, vectors: dict[str, np.ndarray], forward) -> None:  # noqa: ANN001
    spec = CASES[case]
    field = lambda name: vectors[f"{case}/{name}"]  # noqa: E731
    grad_names = [g.removeprefix("grad_") for g in spec["grads"]]
    tensors = {n: torch.tensor(field(n), requires_grad=n in grad_names) for n in spec["inputs"]}
    y = forward(tensors, spec["kwargs"], vectors.get(f"{case}/f"))
    _assert_nvidia_close(y, field("y"), f"{case}: y")
    grads = torch.autograd.grad((y * torch.tensor(field("dy"))).sum(), [tensors[n] for n in grad_names])
    for name, grad in zip(grad_names, grads, strict=True):
        _assert_nvidia_close(grad, field(f"grad_{name}"), f"{case}: grad_{name}")


@pytest.mark.parametrize("case", sorted(c for c, s in CASES.items() if s["op"] == "bias_act"))
def test_bias_act_kernel_math_matches_nvidia_vectors(case: str, host: HostBackend, vectors: dict) -> None:
    def forward(t: dict, kwargs: dict, f: np.ndarray | None) -> torch.Tensor:
        kwargs = dict(kwargs)
        _, alpha, gain, clamp = resolve_activation(
            kwargs["act"], kwargs.get("alpha"), kwargs.get("gain"), kwargs.get("clamp")
        )
        return bias_act_with_backend(host, t["x"], t.get("b"), kwargs.get("dim", 1), kwargs["act"], alpha, gain, clamp)

    _run_nvidia_case(case, vectors, forward)


@pytest.mark.parametrize("case", sorted(c for c, s in CASES.items() if s["op"] == "upfirdn2d"))
def test_upfirdn2d_kernel_math_matches_nvidia_vectors(case: str, host: HostBackend, vectors: dict) -> None:
    def forward(t: dict, kwargs: dict, f: np.ndarray | None) -> torch.Tensor:
        taps = torch.ones([1, 1]) if f is None else torch.tensor(f)
        up, down = parse_scaling(kwargs.get("up", 1)), parse_scaling(kwargs.get("down", 1))
        padding = parse_padding(kwargs.get("padding", 0))
        return upfirdn2d_with_backend(
            host, t["x"], taps, up, down, padding, kwargs.get("flip_filter", False), kwargs.get("gain", 1)
        )

    _run_nvidia_case(case, vectors, forward)


def _first_and_second_order(fn, inputs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:  # noqa: ANN001
    """y, the gradients of sum(y * dy) and the gradients of a random projection of those (w.r.t. inputs and dy)."""
    g = torch.Generator().manual_seed(seed)
    y = fn(*inputs)
    dy = torch.randn(y.shape, generator=g, dtype=y.dtype).requires_grad_(True)
    first = torch.autograd.grad(y, inputs, grad_outputs=dy, create_graph=True)
    projection = sum((grad * torch.randn(grad.shape, generator=g, dtype=grad.dtype)).sum() for grad in first)
    second = torch.autograd.grad(projection, [*inputs, dy], allow_unused=True)
    return [y, *first, *(s if s is not None else torch.zeros(()) for s in second)]


def _assert_all_close(ours: list[torch.Tensor], ref: list[torch.Tensor], tol: float) -> None:
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        a, b = torch.broadcast_tensors(a.detach(), b.detach())
        err = float((a - b).abs().max()) if a.numel() else 0.0
        assert err <= tol * (1 + float(b.abs().max())), f"result {i}: max abs error {err:.3e}"


BIAS_ACT_VARIANTS = [
    pytest.param(dict(dim=1, clamp=None, layout="nchw"), id="nchw"),
    pytest.param(dict(dim=1, clamp=0.7, layout="nchw"), id="clamp"),
    pytest.param(dict(dim=1, clamp=None, layout="channels_last"), id="channels_last"),
    pytest.param(dict(dim=3, clamp=None, layout="nchw"), id="dim3"),
    pytest.param(dict(dim=0, clamp=0.5, layout="strided"), id="dim0_strided_clamp"),
]


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("variant", BIAS_ACT_VARIANTS)
def test_bias_act_first_and_second_order_match_reference(act: str, variant: dict, host: HostBackend) -> None:
    g = torch.Generator().manual_seed(ACTIVATIONS.index(act))
    x = torch.randn([3, 4, 5, 6], generator=g, dtype=torch.float64)
    if variant["layout"] == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif variant["layout"] == "strided":
        x = x[:, :, :, ::2]  # not dense: the wrapper must copy it without cutting the graph
    x.requires_grad_(True)
    b = torch.randn([x.shape[variant["dim"]]], generator=g, dtype=torch.float64, requires_grad=True)
    gain = 1.3 if act != "relu" else None
    kwargs = dict(dim=variant["dim"], act=act, alpha=None, gain=gain, clamp=variant["clamp"])
    _, alpha, gain_value, clamp = resolve_activation(act, None, gain, variant["clamp"])

    def ours(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return bias_act_with_backend(host, x, b, variant["dim"], act, alpha, gain_value, clamp)

    expected = _first_and_second_order(lambda x, b: bias_act_ref(x, b, **kwargs), [x, b], seed=1)
    _assert_all_close(_first_and_second_order(ours, [x, b], seed=1), expected, tol=1e-10)


def test_bias_act_without_bias_and_lrelu_with_negative_slope(host: HostBackend) -> None:
    x = torch.randn([5, 7], dtype=torch.float64, requires_grad=True)
    b = torch.randn([7], dtype=torch.float64, requires_grad=True)
    ours = _first_and_second_order(lambda x: bias_act_with_backend(host, x, None, 1, "lrelu", 0.2, 1.4, None), [x], 2)
    ref = _first_and_second_order(lambda x: bias_act_ref(x, None, act="lrelu", alpha=0.2, gain=1.4), [x], 2)
    _assert_all_close(ours, ref, tol=1e-12)
    # A negative slope: the output no longer tells the sign of the input, so the backward reads x.
    ours = _first_and_second_order(
        lambda x, b: bias_act_with_backend(host, x, b, 1, "lrelu", -0.3, 1.4, None), [x, b], 2
    )
    ref = _first_and_second_order(lambda x, b: bias_act_ref(x, b, act="lrelu", alpha=-0.3, gain=1.4), [x, b], 2)
    _assert_all_close(ours, ref, tol=1e-12)


def test_bias_act_gradcheck_and_third_order_refused(host: HostBackend) -> None:
    x = torch.randn([2, 3, 2, 2], dtype=torch.float64, requires_grad=True)
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act_with_backend(host, x, b, 1, "swish", 0.0, 1.2, None)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    (gx,) = torch.autograd.grad(fn(x, b).sum(), x, create_graph=True)
    (gxx,) = torch.autograd.grad(gx.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(gxx.sum(), x)


UPFIRDN_VARIANTS = [
    # up, down, padding (x0, x1, y0, y1), flip_filter, gain, filter shape
    ((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, [4]),
    ((1, 1), (2, 2), (1, 1, 1, 1), False, 1.0, [4, 4]),
    ((1, 1), (1, 1), (-1, 2, 1, -2), True, 1.0, [3, 4]),
    ((2, 1), (1, 2), (2, 2, 1, 3), False, 2.0, [5]),
    ((3, 3), (2, 2), (1, 1, 2, 0), True, 9.0, [4, 3]),
    ((1, 2), (3, 1), (0, 3, -1, 1), False, 0.5, [2, 5]),
    ((1, 1), (1, 1), (0, 0, 0, 0), False, 1.0, [1, 1]),
]


@pytest.mark.parametrize("up, down, padding, flip, gain, fshape", UPFIRDN_VARIANTS)
def test_upfirdn2d_first_and_second_order_match_reference(up, down, padding, flip, gain, fshape, host) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(len(fshape) * 10 + sum(padding))
    x = torch.randn([2, 3, 7, 9], generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.rand(fshape, generator=g, dtype=torch.float64) + 0.1

    def ours(x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d_with_backend(host, x, f, up, down, padding, flip, gain)

    ref = _first_and_second_order(
        lambda x: upfirdn2d_ref(x, f, list(up), list(down), list(padding), flip, gain), [x], 3
    )
    _assert_all_close(_first_and_second_order(ours, [x], 3), ref, tol=1e-12)
    small = x.detach()[:1, :1, :5, :6].clone().requires_grad_(True)  # finite differences: keep it tiny
    assert torch.autograd.gradgradcheck(ours, small)


def test_upfirdn2d_float32_and_bad_arguments(host: HostBackend) -> None:
    x = torch.randn([1, 2, 16, 16])
    f = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    ours = upfirdn2d_with_backend(host, x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
    torch.testing.assert_close(ours, upfirdn2d_ref(x, f, 2, 1, [2, 1, 2, 1], False, 4.0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="empty output"):
        upfirdn2d_with_backend(host, x, f, (1, 1), (1, 1), (-8, -8, 0, 0), False, 1.0)
    with pytest.raises(ValueError, match="must not require grad"):
        upfirdn2d_with_backend(host, x, f.requires_grad_(True), (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0)
