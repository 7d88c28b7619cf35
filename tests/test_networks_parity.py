"""Parity of our Generator and Discriminator with NVIDIA's StyleGAN2-ADA (tests/fixtures/reference/networks).

Criterion (reference README): ``max|ours - ref| <= 1e-5 * max|ref| + 1e-6`` for outputs and input gradients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import assert_close_to_scale

from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.networks import Discriminator, Generator

RTOL, ATOL = 1e-5, 1e-6
# Seeded initialisation (test_seeded_initialisation_equals_nvidia): torch's normal sampler rounds differently per ISA
# (ATEN_CPU_CAPABILITY=default vs avx2/avx512). Measured: |sum diff| <= 1.0e-7 * sum|tensor| and per element
# max|diff| <= 5.0e-7 * max|tensor| (benchmarks/cpu_spread.py, family "init"); bounds are 10x that. A wrong RNG
# order, distribution or gain moves both by O(1).
INIT_SUM_RTOL, INIT_SAMPLE_RTOL = 1e-6, 5e-6
NETWORKS = Path(__file__).parent / "fixtures" / "reference" / "networks"
MODELS = json.loads((NETWORKS / "networks.json").read_text())["models"]
G_TAGS = [tag for tag in MODELS if tag.startswith("G")]
D_TAGS = [tag for tag in MODELS if tag.startswith("D")]


def assert_matches(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    # Other kernels than the reference's (ISA, threads, our op order): rounding at the array's scale, README criterion.
    assert_close_to_scale(ours, ref, RTOL, ATOL, what)


def load_io(tag: str) -> dict[str, np.ndarray]:
    with np.load(NETWORKS / f"{tag}_io.npz", allow_pickle=False) as data:
        return dict(data)


def load_state(tag: str) -> dict[str, np.ndarray]:
    with np.load(NETWORKS / f"{tag}_state.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module", params=G_TAGS)
def generator_case(request: pytest.FixtureRequest) -> tuple[str, Generator, dict[str, np.ndarray]]:
    tag = request.param
    return tag, generator_from_nvidia(MODELS[tag]["kwargs"], load_state(tag)).eval(), load_io(tag)


@pytest.fixture(scope="module", params=D_TAGS)
def discriminator_case(request: pytest.FixtureRequest) -> tuple[str, Discriminator, dict[str, np.ndarray]]:
    tag = request.param
    return tag, discriminator_from_nvidia(MODELS[tag]["kwargs"], load_state(tag)), load_io(tag)


def tensors(io: dict[str, np.ndarray], *keys: str) -> list[torch.Tensor]:
    return [torch.from_numpy(io[key]) for key in keys]


@pytest.mark.parametrize("tag", list(MODELS))
def test_names_order_and_shapes_equal_nvidia(tag: str) -> None:
    model = MODELS[tag]
    network = (Generator if tag.startswith("G") else Discriminator)(**model["kwargs"])
    assert [(n, list(p.shape)) for n, p in network.named_parameters()] == [(n, s) for n, s in model["parameters"]]
    assert [(n, list(b.shape)) for n, b in network.named_buffers()] == [(n, s) for n, s in model["buffers"]]
    assert list(network.state_dict()) == model["state_dict_order"]


@pytest.mark.parametrize("tag", list(MODELS))
def test_seeded_initialisation_equals_nvidia(tag: str) -> None:
    """Same constructor RNG order and init distributions: NVIDIA's fingerprint of every fresh tensor is reproduced."""
    model = MODELS[tag]
    torch.manual_seed(model["construct_seed"])
    network = (Generator if tag.startswith("G") else Discriminator)(**model["kwargs"])
    fingerprints = model["constructor_fingerprint_sum_first3"]
    assert set(fingerprints) == set(network.state_dict())
    for name, value in network.state_dict().items():
        total, first3 = fingerprints[name]
        # Not bit-exact across CPUs: the sampler's rounding depends on the ISA (see INIT_SUM_RTOL).
        value = value.double()
        scale = float(value.abs().max()) if value.numel() else 0.0
        assert_close_to_scale(value.sum(), total, INIT_SUM_RTOL, scale=float(value.abs().sum()), what=f"{name} sum")
        assert_close_to_scale(value.flatten()[:3], first3, INIT_SAMPLE_RTOL, scale=scale, what=f"{name} first3")


@pytest.mark.parametrize("tag", list(MODELS))
def test_module_gains_equal_nvidia(tag: str) -> None:
    """Every weight/bias/activation gain, clamp, padding and resampling factor of NVIDIA's module table."""
    model = MODELS[tag]
    network = (Generator if tag.startswith("G") else Discriminator)(**model["kwargs"])
    modules = dict(network.named_modules())
    for row in model["modules"]:
        module = modules[row["name"]]
        assert type(module).__name__ == row["type"], row["name"]
        for field in ("weight_gain", "bias_gain", "act_gain", "conv_clamp", "padding", "up", "down", "activation",
                      "resolution", "num_ws", "w_avg_beta", "z_dim", "c_dim", "w_dim", "num_conv", "num_torgb",
                      "is_last", "use_fp16", "in_channels", "architecture", "cmap_dim", "group_size", "num_channels",
                      "num_layers", "first_layer_idx", "use_noise"):  # fmt: skip
            if field not in row:
                continue
            expected = row[field]
            if isinstance(expected, float):
                expected = pytest.approx(expected, rel=1e-12)
            assert getattr(module, field) == expected, f"{row['name']}.{field}"
        if "weight_shape" in row:
            assert list(module.weight.shape) == row["weight_shape"], row["name"]


def test_mapping_every_truncation_case(generator_case) -> None:
    tag, G, io = generator_case
    z, c = tensors(io, "z", "c")
    assert_matches(G.mapping.w_avg, io["w_avg"], f"{tag} w_avg")
    with torch.no_grad():
        assert_matches(G.mapping(z, c, truncation_psi=1), io["ws_psi1"], f"{tag} ws_psi1")
        assert_matches(G.mapping(z, c, truncation_psi=0.7), io["ws_psi0.7"], f"{tag} ws_psi0.7")
        ws = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2)
        assert_matches(ws, io["ws_psi0.7_cutoff2"], f"{tag} ws_psi0.7_cutoff2")


@pytest.mark.parametrize(
    "key, kwargs",
    [
        ("img_const", dict(noise_mode="const")),
        ("img_none", dict(noise_mode="none")),
        ("img_const_unfused", dict(noise_mode="const", fused_modconv=False)),
    ],
)
def test_synthesis_images(generator_case, key: str, kwargs: dict) -> None:
    tag, G, io = generator_case
    (ws,) = tensors(io, "ws_psi1")
    with torch.no_grad():
        assert_matches(G.synthesis(ws, **kwargs), io[key], f"{tag} {key}")


def test_full_generator(generator_case) -> None:
    tag, G, io = generator_case
    z, c = tensors(io, "z", "c")
    with torch.no_grad():
        assert_matches(G(z, c, noise_mode="const"), io["img_G_psi1_const"], f"{tag} G psi 1")
        img = G(z, c, truncation_psi=0.7, truncation_cutoff=2, noise_mode="const")
        assert_matches(img, io["img_G_psi0.7_cutoff2_const"], f"{tag} G psi 0.7 cutoff 2")


def test_generator_intermediates(generator_case) -> None:
    """Each mapping layer and each synthesis block's (x, img) during the full G pass (NVIDIA's debug outputs)."""
    tag, G, io = generator_case
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in G.named_modules():
        if f"debug/{name}.out" in io:
            hooks.append(module.register_forward_hook(lambda m, i, o, n=name: captured.update({f"{n}.out": o})))
        elif f"debug/{name}.out0" in io:
            hooks.append(module.register_forward_hook(
                lambda m, i, o, n=name: captured.update({f"{n}.out0": o[0], f"{n}.out1": o[1]})
            ))  # fmt: skip
    z, c = tensors(io, "z", "c")
    try:
        with torch.no_grad():
            G(z, c, noise_mode="const")
    finally:
        for hook in hooks:
            hook.remove()
    expected = sorted(key.removeprefix("debug/") for key in io if key.startswith("debug/"))
    assert sorted(captured) == expected
    for name, value in captured.items():
        assert_matches(value, io[f"debug/{name}"], f"{tag} {name}")


def test_w_avg_after_train_mode_forward(generator_case) -> None:
    tag, G, io = generator_case
    z, c = tensors(io, "z", "c")
    saved = G.mapping.w_avg.clone()
    try:
        G.train()
        with torch.no_grad():
            G.mapping(z, c, skip_w_avg_update=True)
            assert torch.equal(G.mapping.w_avg, saved), "skip_w_avg_update must leave w_avg alone"
            G.mapping(z, c)
        assert_matches(G.mapping.w_avg, io["w_avg_after_train_forward"], f"{tag} w_avg after train forward")
    finally:
        G.eval()
        G.mapping.w_avg.copy_(saved)


def test_discriminator_logits_gradient_and_intermediates(discriminator_case) -> None:
    tag, D, io = discriminator_case
    img, c = tensors(io, "img", "c")
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(D, name).register_forward_hook(lambda m, i, o, n=name: captured.update({n: o}))
        for name in ["mapping", "b4", *(f"b{res}" for res in D.block_resolutions)]
        if hasattr(D, name)
    ]
    img.requires_grad_(True)
    try:
        logits = D(img, c)
    finally:
        for hook in hooks:
            hook.remove()
    assert_matches(logits, io["logits"], f"{tag} logits")
    (grad_img,) = torch.autograd.grad(logits.sum(), img)
    assert_matches(grad_img, io["grad_img_of_logits_sum"], f"{tag} d(logits)/d(img)")
    for key in (k for k in io if k.startswith("debug/")):
        name, field = key.removeprefix("debug/").split(".")
        value = captured[name][0] if field == "out0" else captured[name]
        assert_matches(value, io[key], f"{tag} {key}")
