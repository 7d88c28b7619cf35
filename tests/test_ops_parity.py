"""Parity of every op with NVIDIA's stylegan2-ada-pytorch on the 86 cases of tests/fixtures/reference/ops.npz.

Each case checks the output and every stored input gradient, where ``grad_<name> = d sum(y * dy) / d <name>`` with
the stored upstream gradient ``dy``. Criterion (reference/README.md): ``max|ours - ref| <= 1e-5 * max|ref| + 1e-6``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import assert_close_to_scale

from stylegan_core import ops

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
CASES: dict[str, dict] = json.loads((REFERENCE / "ops.json").read_text())["cases"]
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def vectors(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "ops.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _without_filter_name(kwargs: dict) -> dict:
    """The json names the filter under "filter" / "resample_filter"; the tensor itself is stored as field f."""
    return {k: v for k, v in kwargs.items() if k not in ("filter", "resample_filter")}


def _run_bias_act(t: dict[str, torch.Tensor], kwargs: dict) -> torch.Tensor:
    return ops.bias_act(t["x"], t.get("b"), impl="ref", **kwargs)


def _run_resampler(op: Callable[..., torch.Tensor]) -> Callable[[dict, dict], torch.Tensor]:
    def run(t: dict[str, torch.Tensor], kwargs: dict) -> torch.Tensor:
        return op(t["x"], t.get("f"), **_without_filter_name(kwargs))

    return run


def _run_conv2d_resample(t: dict[str, torch.Tensor], kwargs: dict) -> torch.Tensor:
    return ops.conv2d_resample(t["x"], t["w"], f=t["f"], **_without_filter_name(kwargs))


def _run_modconv(t: dict[str, torch.Tensor], kwargs: dict) -> torch.Tensor:
    return ops.modulated_conv2d(
        t["x"],
        t["weight"],
        t["styles"],
        noise=t.get("noise"),
        resample_filter=t.get("f"),
        **_without_filter_name(kwargs),
    )


RUNNERS: dict[str, Callable[[dict, dict], torch.Tensor]] = {
    "bias_act": _run_bias_act,
    "upfirdn2d": _run_resampler(ops.upfirdn2d),
    "upsample2d": _run_resampler(ops.upsample2d),
    "downsample2d": _run_resampler(ops.downsample2d),
    "filter2d": _run_resampler(ops.filter2d),
    "conv2d_resample": _run_conv2d_resample,
    "modulated_conv2d": _run_modconv,
    "normalize_2nd_moment": lambda t, kwargs: ops.normalize_2nd_moment(t["x"], **kwargs),
    "MinibatchStdLayer": lambda t, kwargs: ops.minibatch_std(t["x"], **kwargs),
}


def assert_close(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    # NVIDIA's vectors came from other kernels (their op order, one ISA, one thread count): README criterion.
    assert_close_to_scale(ours, ref, RTOL, ATOL, what)


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference(case: str, vectors: dict[str, np.ndarray]) -> None:
    spec = CASES[case]
    field = lambda name: vectors[f"{case}/{name}"]  # noqa: E731
    if spec["op"] == "setup_filter":
        assert_close(ops.setup_filter(field("f_in"), **spec["kwargs"]), field("y"), f"{case}: y")
        return

    grad_names = [g.removeprefix("grad_") for g in spec["grads"]]
    tensors = {
        name: torch.tensor(field(name), requires_grad=name in grad_names)
        for name in [*spec["inputs"], "f"]
        if f"{case}/{name}" in vectors
    }
    assert set(spec["inputs"]) <= set(tensors), f"{case}: an input is missing from ops.npz"
    y = RUNNERS[spec["op"]](tensors, spec["kwargs"])
    assert_close(y, field("y"), f"{case}: y")

    grads = torch.autograd.grad((y * torch.tensor(field("dy"))).sum(), [tensors[n] for n in grad_names])
    for name, grad in zip(grad_names, grads, strict=True):
        assert_close(grad, field(f"grad_{name}"), f"{case}: grad_{name}")


def test_every_case_has_a_runner() -> None:
    assert len(CASES) == 86
    assert {spec["op"] for spec in CASES.values()} <= set(RUNNERS) | {"setup_filter"}
