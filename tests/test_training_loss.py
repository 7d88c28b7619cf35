"""The loss against NVIDIA's recorded StyleGAN2Loss (tests/fixtures/reference/loss.npz), and its pure penalties."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from numerics import as_float64, assert_close_to_scale

from stylegan_core.config import LossConfig
from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.training.loss import (
    StyleGAN2Loss,
    path_length_penalty,
    path_lengths,
    r1_penalty,
)

RTOL, ATOL = 1e-4, 1e-7  # reference/README.md: loss.npz gradients (the R1 path is a double backward)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(reference_dir):
    description = json.loads((reference_dir / "loss.json").read_text())
    models = json.loads((reference_dir / "networks" / "networks.json").read_text())["models"]
    arrays = dict(np.load(reference_dir / "loss.npz", allow_pickle=False))
    states = {tag: dict(np.load(reference_dir / "networks" / f"{tag}_state.npz", allow_pickle=False))
              for tag in (description["G"], description["D"])}  # fmt: skip
    return description, models, arrays, states


def _close(ours: torch.Tensor | np.ndarray, ref: np.ndarray, what: str) -> None:
    ours, ref = as_float64(ours), as_float64(ref)
    if ours.size == ref.size == 1:
        ours = ours.reshape(ref.shape)  # the reference stores scalar parameters (noise_strength) as [1]
    assert_close_to_scale(ours, ref, RTOL, ATOL, what)  # NVIDIA's kernels and op order vs ours: README criterion


def _run_phase(reference, phase: str):
    description, models, arrays, states = reference
    G = generator_from_nvidia(models[description["G"]]["kwargs"], states[description["G"]]).train()
    D = discriminator_from_nvidia(models[description["D"]]["kwargs"], states[description["D"]]).train()
    G.requires_grad_(False)
    D.requires_grad_(False)
    module = G if description["phases"][phase]["module"] == "G" else D
    module.requires_grad_(True)
    reports = defaultdict(list)
    kwargs = description["loss_kwargs"]
    config = LossConfig(style_mixing_prob=kwargs["style_mixing_prob"], r1_gamma=kwargs["r1_gamma"],
                        pl_weight=kwargs["pl_weight"], pl_batch_shrink=kwargs["pl_batch_shrink"],
                        pl_decay=kwargs["pl_decay"])  # fmt: skip
    loss = StyleGAN2Loss(G, D, config, augment_pipe=None, noise_mode=description["synthesis_noise_mode"],
                         report=lambda name, value: reports[name].append(value.detach().clone()))  # fmt: skip
    inputs = [torch.from_numpy(arrays[key]) for key in ("real_img", "real_c", "gen_z", "gen_c")]
    loss.accumulate_gradients(phase, *inputs, gain=description["gain"])
    return G, module, reports


@pytest.mark.parametrize("phase", ["Gmain", "Dmain", "Dreg"])
def test_phase_matches_nvidia(reference, phase):
    description, _, arrays, _ = reference
    G, module, reports = _run_phase(reference, phase)
    expected_reports = description["phases"][phase]["reports"]
    assert sorted(reports) == sorted(name for name, _ in expected_reports)
    for name, _ in expected_reports:
        assert len(reports[name]) == 1, f"{name} reported {len(reports[name])} times"
        _close(reports[name][0], arrays[f"{phase}/report/{name}"], f"{phase} report {name}")
    total_source = {"Gmain": "Loss/G/loss", "Dmain": "Loss/D/loss", "Dreg": "Loss/D/reg"}[phase]
    _close(reports[total_source][0].mean(), arrays[f"{phase}/total"], f"{phase} total")
    gradients = dict(module.named_parameters())
    grad_names = description["phases"][phase]["grads_for"]
    assert sorted(grad_names) == sorted(gradients)
    for name in grad_names:
        assert gradients[name].grad is not None, f"{phase}: no gradient for {name}"
        _close(gradients[name].grad, arrays[f"{phase}/grad/{name}"], f"{phase} grad {name}")
    _close(G.mapping.w_avg, arrays[f"{phase}/w_avg_after"], f"{phase} w_avg_after")


def test_gain_scales_gradients(reference):
    description, models, arrays, states = reference
    _, module, _ = _run_phase(reference, "Dreg")
    single = {name: param.grad.clone() for name, param in module.named_parameters()}
    description = {**description, "gain": 16}
    _, module16, _ = _run_phase((description, models, arrays, states), "Dreg")
    for name, param in module16.named_parameters():
        # The gain scales the loss before a double backward: float32 rounding at each gradient's scale.
        assert_close_to_scale(param.grad, single[name] * 16, 1e-5, what=name)


def test_r1_penalty_of_a_quadratic_critic():
    # D(x) = sum(a * x^2) per sample -> dD/dx = 2 a x -> penalty = sum((2 a x)^2); and it is differentiable again.
    a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64).requires_grad_(True)
    logits = (a * x.square()).sum(dim=[1, 2, 3]).unsqueeze(1)
    penalty = r1_penalty(logits, x)
    expected = (2 * a.detach() * x.detach()).square().sum(dim=[1, 2, 3])
    assert_close_to_scale(penalty, expected, 1e-12)  # float64 autograd vs the closed form
    (grad_a,) = torch.autograd.grad(penalty.sum(), [a])
    assert_close_to_scale(grad_a, (8 * a.detach() * x.detach().square()).sum(), 1e-12)  # d/da (4 a^2 x^2)


def test_path_lengths_of_a_linear_generator():
    # img = ws @ M per sample (ws [N, L, W]) -> J^T y = M y for every w -> length = ||M y||.
    torch.manual_seed(0)
    ws = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    matrix = torch.randn(4, 6, dtype=torch.float64)
    img = (ws @ matrix).sum(dim=1).view(5, 1, 2, 3)
    noise = torch.randn_like(img)
    lengths = path_lengths(img, ws, noise)
    expected = (matrix @ noise.view(5, 6, 1)).squeeze(2).norm(dim=1)
    assert_close_to_scale(lengths, expected, 1e-12)  # float64 autograd vs the closed form


def test_path_length_penalty_running_mean():
    lengths = torch.tensor([1.0, 3.0])
    penalty, new_mean = path_length_penalty(lengths, torch.tensor(0.0), pl_decay=0.01)
    assert new_mean.item() == pytest.approx(0.02)  # lerp(0, mean 2, 0.01)
    assert_close_to_scale(penalty, (lengths - 0.02).square(), 1e-6)  # float32 lerp vs the formula
    _, second = path_length_penalty(lengths, new_mean, pl_decay=0.5)
    assert second.item() == pytest.approx(0.02 + 0.5 * (2 - 0.02))


def test_greg_updates_pl_mean_and_reaches_every_synthesis_parameter(reference):
    description, models, arrays, states = reference
    G = generator_from_nvidia(models[description["G"]]["kwargs"], states[description["G"]]).train()
    D = discriminator_from_nvidia(models[description["D"]]["kwargs"], states[description["D"]]).train()
    D.requires_grad_(False)
    G.requires_grad_(True)
    loss = StyleGAN2Loss(G, D, LossConfig(pl_weight=2.0, style_mixing_prob=0.9))
    z, c = torch.from_numpy(arrays["gen_z"]), torch.from_numpy(arrays["gen_c"])
    loss.accumulate_gradients("Greg", torch.zeros(4, 3, 32, 32), c, z, c, gain=4)
    assert loss.pl_mean.item() > 0
    missing = [name for name, p in G.named_parameters() if name.startswith("synthesis") and p.grad is None]
    assert not missing, f"parameters outside the graph: {missing}"


def test_unknown_phase_is_rejected(reference):
    description, models, _, states = reference
    G = generator_from_nvidia(models[description["G"]]["kwargs"], states[description["G"]])
    D = discriminator_from_nvidia(models[description["D"]]["kwargs"], states[description["D"]])
    loss = StyleGAN2Loss(G, D, LossConfig())
    x, c, z = torch.zeros(4, 3, 32, 32), torch.zeros(4, 4), torch.zeros(4, 32)
    with pytest.raises(ValueError, match="unknown loss phase 'Gmix'"):
        loss.accumulate_gradients("Gmix", x, c, z, c, gain=1)
