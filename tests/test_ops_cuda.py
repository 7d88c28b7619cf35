"""Parity of the compiled CUDA ops with the reference ops, on a GPU (skipped without one).

Each check draws fresh random inputs and compares the output, the first-order gradients and the second-order
gradients (through ``torch.autograd.grad(..., create_graph=True)``, as R1 does) against the reference. float64 and
float32 are held to round-off; float16 and bfloat16 results are compared with the reference evaluated in float32 on
the same inputs, and must be about as close to it as the reference computed in the same precision is. On a machine
whose build fails these tests fail rather than skip: the build is part of what they check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_core import ops
from stylegan_core.ops.bias_act import bias_act_ref
from stylegan_core.ops.cuda import bias_act_cuda, load_extension, upfirdn2d_cuda
from stylegan_core.ops.dispatch import choose_impl
from stylegan_core.ops.upfirdn2d import parse_padding, parse_scaling, upfirdn2d_ref

pytestmark = pytest.mark.gpu

ACTIVATIONS = ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
REDUCED = (torch.float16, torch.bfloat16)
CASES: dict[str, dict] = json.loads((Path(__file__).parent / "fixtures/reference/ops.json").read_text())["cases"]


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    load_extension()  # raises CudaOpsUnavailable with the cause: a failed build is a failed test here


@pytest.fixture(autouse=True)
def no_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 reference convolves with cuDNN, which rounds to TF32 by default: ~1e-3, not float32 round-off."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _orders(fn, inputs: list[torch.Tensor], seed: int, dtype: torch.dtype) -> list[torch.Tensor]:  # noqa: ANN001
    """y, d sum(y*dy)/d inputs, and d(random projection of those)/d (inputs, dy).

    dy is drawn in float32 and rounded to ``dtype`` (the inputs' precision), so that a float32 evaluation of the
    reference on upcast inputs sees exactly the same numbers as the reduced-precision runs.
    """
    g = torch.Generator(device=inputs[0].device).manual_seed(seed)
    y = fn(*inputs)
    dy = torch.randn(y.shape, generator=g, device=y.device).to(dtype).to(y.dtype).requires_grad_(True)
    first = torch.autograd.grad(y, inputs, grad_outputs=dy, create_graph=True)
    projection = sum((f.float() * torch.randn(f.shape, generator=g, device=f.device)).sum() for f in first)
    second = torch.autograd.grad(projection, [*inputs, dy], allow_unused=True)
    return [y, *first, *(s if s is not None else torch.zeros((), device=y.device) for s in second)]


def _upcast(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().float().requires_grad_(t.requires_grad) for t in tensors]


def _rel_errors(ours: list[torch.Tensor], truth: list[torch.Tensor]) -> list[float]:
    errors = []
    for a, b in zip(ours, truth, strict=True):
        a, b = torch.broadcast_tensors(a.detach().double(), b.detach().double())
        assert torch.isfinite(a).all(), "non-finite result"
        errors.append(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if a.numel() else 0.0)
    return errors


def _check(fn_cuda, fn_ref, inputs: list[torch.Tensor], seed: int) -> None:  # noqa: ANN001
    """fp64/fp32: round-off of the reference; fp16/bf16: no worse than twice the same-precision reference's error
    (with a floor of 2 machine epsilons), both measured against the reference in float32 on the same inputs."""
    dtype = inputs[0].dtype
    ours = _orders(fn_cuda, inputs, seed, dtype)
    if dtype in REDUCED:
        truth = _orders(fn_ref, _upcast(inputs), seed, dtype)
        ref16 = _rel_errors(_orders(fn_ref, inputs, seed, dtype), truth)
        for i, (err, err16) in enumerate(zip(_rel_errors(ours, truth), ref16, strict=True)):
            bound = max(2 * err16, 2 * torch.finfo(dtype).eps)
            assert err <= bound, f"result {i}: relative error {err:.2e} ({dtype} reference {err16:.2e})"
        return
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for i, err in enumerate(_rel_errors(ours, _orders(fn_ref, inputs, seed, dtype))):
        assert err <= tol, f"result {i}: relative error {err:.2e} > {tol:.0e}"


BIAS_VARIANTS = {
    "nchw": dict(shape=[4, 32, 9, 7], dim=1, clamp=None, layout="nchw"),
    "clamp": dict(shape=[4, 32, 9, 7], dim=1, clamp=0.9, layout="nchw"),
    "channels_last_clamp": dict(shape=[3, 16, 8, 8], dim=1, clamp=1.1, layout="channels_last"),
    "fc_2d": dict(shape=[37, 513], dim=1, clamp=None, layout="nchw"),
    "dim3_sliced": dict(shape=[2, 5, 6, 22], dim=3, clamp=None, layout="sliced"),
    "large_grid_stride": dict(shape=[8, 64, 64, 64], dim=1, clamp=256.0, layout="nchw"),
}


@pytest.mark.parametrize("variant", sorted(BIAS_VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bias_act_cuda_matches_reference(act: str, dtype: torch.dtype, variant: str) -> None:
    v = BIAS_VARIANTS[variant]
    g = torch.Generator(device="cuda").manual_seed(ACTIVATIONS.index(act) * 100 + sorted(BIAS_VARIANTS).index(variant))
    x = torch.randn(v["shape"], generator=g, device="cuda", dtype=torch.float32).to(dtype) * 1.5
    if v["layout"] == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif v["layout"] == "sliced":
        x = x[..., ::2]
    b = torch.randn([x.shape[v["dim"]]], generator=g, device="cuda").to(dtype)
    kwargs = dict(dim=v["dim"], act=act, clamp=v["clamp"])
    if v["clamp"] is not None:
        # An output within rounding of the threshold may be clamped in one precision and not in the other, which
        # flips its gradient: move those inputs to x = -b (pre-activation 0, output f(0), far from any threshold).
        shape = [-1 if i == v["dim"] else 1 for i in range(x.ndim)]
        y32 = bias_act_ref(x.float(), b.float(), **kwargs)
        window = 4 * torch.finfo(dtype).eps * v["clamp"]
        x = torch.where((y32.abs() - v["clamp"]).abs() < window, -b.reshape(shape), x)
    x.requires_grad_(True)
    b.requires_grad_(True)
    _check(lambda x, b: bias_act_cuda(x, b, **kwargs), lambda x, b: bias_act_ref(x, b, **kwargs), [x, b], 1)


def test_bias_act_cuda_gradcheck_and_public_entry() -> None:
    x = torch.randn([2, 3, 4, 5], device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn([3], device="cuda", dtype=torch.float64, requires_grad=True)
    for act in ("tanh", "lrelu", "swish"):
        fn = lambda x, b: bias_act_cuda(x, b, 1, act, None, 1.3, 0.8)  # noqa: B023, E731
        assert torch.autograd.gradcheck(fn, (x, b)) and torch.autograd.gradgradcheck(fn, (x, b))
    assert choose_impl("bias_act", "auto", x) == "cuda"
    y = ops.bias_act(x.float(), b.float(), act="lrelu", clamp=256, impl="cuda")
    torch.testing.assert_close(y, ops.bias_act(x.float(), b.float(), act="lrelu", clamp=256, impl="ref"))
    (gx,) = torch.autograd.grad(bias_act_cuda(x, b, 1, "tanh").sum(), x, create_graph=True)
    (gxx,) = torch.autograd.grad(gx.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(gxx.sum(), x)


UPFIRDN_VARIANTS = {
    # up, down, padding (x0, x1, y0, y1), flip_filter, gain, filter shape, input shape
    "up2_f1331_separable": ((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, [4], [4, 8, 17, 16]),
    "up2_f1331_2d": ((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, [4, 4], [4, 8, 16, 16]),
    "down2_2d": ((1, 1), (2, 2), (1, 1, 1, 1), False, 1.0, [4, 4], [4, 8, 33, 32]),
    "crop_flip_rect": ((1, 1), (1, 1), (-1, 2, 1, -2), True, 1.0, [3, 4], [2, 5, 13, 11]),
    "aniso": ((2, 1), (1, 2), (2, 2, 1, 3), False, 2.0, [5], [2, 5, 12, 9]),
    "up3_down2_flip": ((3, 3), (2, 2), (1, 1, 2, 0), True, 9.0, [4, 3], [2, 3, 10, 12]),
    "augment_12tap": ((2, 2), (1, 1), (6, 5, 6, 5), False, 4.0, [12], [2, 3, 20, 20]),
    "identity": ((1, 1), (1, 1), (0, 0, 0, 0), False, 1.0, [1, 1], [2, 3, 5, 6]),
    "many_planes": ((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, [4], [70000, 1, 3, 3]),  # grid z loop
}


@pytest.mark.parametrize("variant", sorted(UPFIRDN_VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upfirdn2d_cuda_matches_reference(variant: str, dtype: torch.dtype) -> None:
    up, down, padding, flip, gain, fshape, xshape = UPFIRDN_VARIANTS[variant]
    g = torch.Generator(device="cuda").manual_seed(len(variant))
    x = torch.randn(xshape, generator=g, device="cuda").to(dtype).requires_grad_(True)
    f = torch.rand(fshape, generator=g, device="cuda") + 0.1
    f = f / f.sum()
    _check(
        lambda x: upfirdn2d_cuda(x, f, up, down, padding, flip, gain),
        lambda x: upfirdn2d_ref(x, f, list(up), list(down), list(padding), flip, gain),
        [x],
        2,
    )


def test_upfirdn2d_cuda_public_helpers_gradgradcheck_and_determinism() -> None:
    f = ops.setup_filter([1, 3, 3, 1], device=torch.device("cuda"))
    x = torch.randn([2, 4, 16, 16], device="cuda", requires_grad=True)
    for helper in (ops.upsample2d, ops.downsample2d, ops.filter2d):
        torch.testing.assert_close(helper(x, f, impl="cuda"), helper(x, f, impl="ref"), rtol=1e-5, atol=1e-6)
    x64 = torch.randn([1, 2, 5, 6], device="cuda", dtype=torch.float64, requires_grad=True)
    fn = lambda x: upfirdn2d_cuda(x, f.double(), (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x64,))
    big = torch.randn([16, 64, 128, 128], device="cuda", dtype=torch.float16)
    first = upfirdn2d_cuda(big, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
    assert torch.equal(first, upfirdn2d_cuda(big, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)), "results move: a race"


@pytest.mark.parametrize("case", sorted(c for c, s in CASES.items() if s["op"] in ("bias_act", "upfirdn2d")))
def test_cuda_matches_nvidia_vectors(case: str, reference_dir: Path) -> None:
    spec = CASES[case]
    with np.load(reference_dir / "ops.npz", allow_pickle=False) as npz:
        field = {k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(f"{case}/")}
    grad_names = [n.removeprefix("grad_") for n in spec["grads"]]
    t = {n: torch.tensor(field[n], device="cuda", requires_grad=n in grad_names) for n in spec["inputs"]}
    kwargs = {k: v for k, v in spec["kwargs"].items() if k != "filter"}
    if spec["op"] == "bias_act":
        y = ops.bias_act(t["x"], t.get("b"), impl="cuda", **kwargs)
    else:
        f = torch.tensor(field["f"], device="cuda") if "f" in field else None
        up, down = parse_scaling(kwargs.get("up", 1)), parse_scaling(kwargs.get("down", 1))
        y = ops.upfirdn2d(
            t["x"],
            f,
            up,
            down,
            parse_padding(kwargs.get("padding", 0)),
            kwargs.get("flip_filter", False),
            kwargs.get("gain", 1),
            impl="cuda",
        )
    grads = torch.autograd.grad((y * torch.tensor(field["dy"], device="cuda")).sum(), [t[n] for n in grad_names])
    for name, ours in [("y", y), *((f"grad_{n}", gr) for n, gr in zip(grad_names, grads, strict=True))]:
        err = float(np.abs(ours.detach().double().cpu().numpy() - field[name]).max())
        assert err <= 1e-5 * float(np.abs(field[name]).max()) + 1e-6, f"{case}: {name} max abs error {err:.3e}"
