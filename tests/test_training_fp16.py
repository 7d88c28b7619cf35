"""Training on NVIDIA's float16 path on the CPU: the loss against NVIDIA's own fp16 loss, and a tiny fp16 run.

Reference: tests/fixtures/reference/loss_fp16.{npz,json}, made with NVIDIA's StyleGAN2Loss on its fp16 networks (same
models, inputs and phases as loss.npz). NVIDIA's fp16 loss is chaotic at float16 resolution: moving its latents by one
float32 ulp, or changing the thread count, moves its reports by up to ~1e-3 and its gradients by up to ~7 % (relative
to each tensor's max). Our networks differ from NVIDIA's only in float32 rounding (the demodulation sum is a matrix
product), a perturbation of the same size, so the tolerance is that measured spread (``loss_fp16.json``, "tolerance").
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from training_support import tiny_options, write_tiny_dataset

from stylegan_core.config import LossConfig, TrainOptions
from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.training import train
from stylegan_core.training.loss import StyleGAN2Loss
from stylegan_core.training.report import SnapshotGrid

pytestmark = pytest.mark.usefixtures("one_thread")
TOTAL_REPORT = {"Gmain": "Loss/G/loss", "Dmain": "Loss/D/loss", "Dreg": "Loss/D/reg"}
ATOL = 1e-9  # for tensors that are exactly zero in NVIDIA's float16 run (R1 gradients of float16 biases underflow)


@pytest.fixture(scope="module")
def reference(reference_dir: Path):
    description = json.loads((reference_dir / "loss.json").read_text())
    fp16 = json.loads((reference_dir / "loss_fp16.json").read_text())
    arrays = dict(np.load(reference_dir / "loss.npz", allow_pickle=False))
    expected = dict(np.load(reference_dir / "loss_fp16.npz", allow_pickle=False))
    states = {tag: dict(np.load(reference_dir / "networks" / f"{tag}_state.npz", allow_pickle=False))
              for tag in (description["G"], description["D"])}  # fmt: skip
    kwargs = {
        "fp16": json.loads((reference_dir / "networks" / "fp16" / "networks.json").read_text())["models"],
        "fp32": json.loads((reference_dir / "networks" / "networks.json").read_text())["models"],
    }
    return description, fp16, arrays, expected, states, kwargs


def run_phase(reference, phase: str, precision: str = "fp16"):
    description, _, arrays, _, states, kwargs = reference
    G = generator_from_nvidia(kwargs[precision][description["G"]]["kwargs"], states[description["G"]])
    D = discriminator_from_nvidia(kwargs[precision][description["D"]]["kwargs"], states[description["D"]])
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    module = G if description["phases"][phase]["module"] == "G" else D
    module.requires_grad_(True)
    reports: dict[str, list[torch.Tensor]] = defaultdict(list)
    settings = description["loss_kwargs"]
    config = LossConfig(style_mixing_prob=settings["style_mixing_prob"], r1_gamma=settings["r1_gamma"],
                        pl_weight=settings["pl_weight"], pl_batch_shrink=settings["pl_batch_shrink"],
                        pl_decay=settings["pl_decay"])  # fmt: skip
    loss = StyleGAN2Loss(G, D, config, augment_pipe=None, noise_mode=description["synthesis_noise_mode"],
                         report=lambda name, value: reports[name].append(value.detach().clone()))  # fmt: skip
    inputs = [torch.from_numpy(arrays[key]) for key in ("real_img", "real_c", "gen_z", "gen_c")]
    loss.accumulate_gradients(phase, *inputs, gain=description["gain"])
    return G, module, reports


def within(ours: np.ndarray, ref: np.ndarray, scale: float, tolerance: float, what: str) -> None:
    error = float(np.abs(np.asarray(ours, np.float64).reshape(np.shape(ref)) - ref).max(initial=0.0))
    limit = tolerance * scale + ATOL
    assert error <= limit, f"{what}: {error:.3g} > {limit:.3g} ({tolerance:g} x {scale:.3g})"


def gradient_errors(module: torch.nn.Module, expected: dict, phase: str, tolerance: float) -> list[str]:
    """Every gradient's sampled elements and L2 norm against NVIDIA's; the names of those out of tolerance."""
    failures = []
    for name, param in module.named_parameters():
        key = f"{phase}/grad/{name}"
        grad = param.grad.detach().double().flatten().numpy()
        scale = float(expected[f"{key}@absmax"])
        sampled_error = np.abs(grad[expected[f"{key}@idx"]] - expected[f"{key}@values"]).max()
        norm_error = abs(np.linalg.norm(grad) - float(expected[f"{key}@norm"]))
        if max(sampled_error, norm_error) > tolerance * scale + ATOL:
            failures.append(name)
    return failures


@pytest.mark.parametrize("phase", ["Gmain", "Dmain", "Dreg"])
def test_fp16_loss_and_gradients_match_nvidia_fp16(reference, phase: str) -> None:
    _, fp16, _, expected, _, _ = reference
    tolerance = fp16["tolerance"]
    G, module, reports = run_phase(reference, phase)
    for key in (k for k in expected if k.startswith(f"{phase}/report/")):
        name = key.removeprefix(f"{phase}/report/")
        ours = reports[name][0].float().numpy()
        if "signs" in name:  # signs of near-zero scores may flip within the tolerance of the scores themselves
            continue
        within(ours, expected[key], float(np.abs(expected[key]).max()), tolerance["report"], f"{phase} {name}")
    total = expected[f"{phase}/total"]
    within(reports[TOTAL_REPORT[phase]][0].mean().numpy(), total, abs(float(total)), tolerance["total"], "total")
    assert all(param.grad is not None for param in module.parameters())
    assert gradient_errors(module, expected, phase, tolerance["grad"]) == []
    within(G.mapping.w_avg.numpy(), expected[f"{phase}/w_avg_after"], 1.0, 1e-6, "w_avg")


def test_fp32_gradients_fail_the_fp16_tolerance(reference) -> None:
    """The tolerance still tells float16 from float32: the same phase on float32 networks is out of it."""
    _, fp16, _, expected, _, _ = reference
    _, module, _ = run_phase(reference, "Gmain", precision="fp32")
    assert gradient_errors(module, expected, "Gmain", fp16["tolerance"]["grad"]) != []


def test_tiny_fp16_run_on_cpu_trains_with_finite_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    data = write_tiny_dataset(tmp_path / "tiny.zip")
    fp16 = dict(fp32=False, num_fp16_res=2, conv_clamp=256, aug="noaug", kimg=0.016, tick=0.004, snap="none")
    options = tiny_options(data, fp16_on_cpu=True, **fp16)
    result = train(options, tmp_path / "fp16")
    recorded = json.loads((tmp_path / "fp16" / "training_options.json").read_text())["network"]
    assert recorded["num_fp16_res"] == 2 and recorded["fp16_on_cpu"] is True
    lines = [json.loads(line) for line in (tmp_path / "fp16" / "stats.jsonl").read_text().splitlines()]
    assert result.ticks >= 3 and len(lines) >= 4
    for line in lines:
        losses = {name: value["mean"] for name, value in line.items() if name.startswith("Loss/")}
        assert {"Loss/G/loss", "Loss/D/loss"} <= set(losses)
        assert all(math.isfinite(value) for value in losses.values()), line
    # Without the flag the same options train in float32 on the CPU, and training_options.json says so.
    policy = train(tiny_options(data, **{**fp16, "kimg": 0.004}), tmp_path / "policy")
    written = TrainOptions.from_dict(json.loads((policy.run_dir / "training_options.json").read_text()))
    assert written.network.num_fp16_res == 0 and written.network.conv_clamp == 256
