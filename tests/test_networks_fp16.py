"""NVIDIA's mixed-precision path: float16 blocks, conv_clamp and channels_last, on the CPU and (marked) on CUDA.

Reference: tests/fixtures/reference/networks/fp16 (README section 2b), NVIDIA's own outputs with ``num_fp16_res=4``.
Criterion from that README: ours must land at most half the fp16-vs-fp32 distance from NVIDIA's float16 output
(distances as ``max|a - b| / max|b|``), so a float32 run of the same layers fails it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan_core.config import NetworkConfig, TrainOptions
from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.networks import Discriminator, Generator
from stylegan_core.presets import resolve_options, resolve_precision

NETWORKS = Path(__file__).parent / "fixtures" / "reference" / "networks"
FP16 = NETWORKS / "fp16"
MODELS = json.loads((FP16 / "networks.json").read_text())["models"]
G_TAGS = [tag for tag in MODELS if tag.startswith("G")]
D_TAGS = [tag for tag in MODELS if tag.startswith("D")]
G_CALLS = {
    "img_const": dict(noise_mode="const"),
    "img_none": dict(noise_mode="none"),
    "img_const_unfused": dict(noise_mode="const", fused_modconv=False),
}


def relative(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def assert_on_fp16_path(ours: torch.Tensor, io: dict[str, np.ndarray], key: str, what: str) -> None:
    ours_np = ours.detach().float().cpu().numpy()
    fp16, fp32 = io[f"{key}_fp16"], io[f"{key}_fp32"]
    assert ours_np.shape == fp16.shape, what
    bound = 0.5 * relative(fp16, fp32)
    error = relative(ours_np, fp16)
    assert error <= bound, f"{what}: {error:.2e} from NVIDIA's float16 output, allowed {bound:.2e}"


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return dict(data)


def generator(tag: str, device: str = "cpu") -> Generator:
    return generator_from_nvidia(MODELS[tag]["kwargs"], load(NETWORKS / f"{tag}_state.npz")).eval().to(device)


def discriminator(tag: str, device: str = "cpu") -> Discriminator:
    return discriminator_from_nvidia(MODELS[tag]["kwargs"], load(NETWORKS / f"{tag}_state.npz")).to(device)


def check_generator(tag: str, device: str) -> None:
    G, io = generator(tag, device), load(FP16 / f"{tag}_io.npz")
    ws = torch.from_numpy(io["ws"]).to(device)
    with torch.no_grad():
        for key, kwargs in G_CALLS.items():
            assert_on_fp16_path(G.synthesis(ws, **kwargs), io, key, f"{tag} {key} on {device}")
        z, c = (torch.from_numpy(io[name]).to(device) for name in ("z", "c"))
        img = G(z, c, noise_mode="const").cpu().numpy()
    bound = 0.5 * relative(io["img_const_fp16"], io["img_const_fp32"])
    assert relative(img, io["img_G_psi1_const_fp16"]) <= bound, f"{tag} G(z, c) on {device}"


def check_discriminator(tag: str, device: str) -> None:
    D, io = discriminator(tag, device), load(FP16 / f"{tag}_io.npz")
    img = torch.from_numpy(io["img"]).to(device).requires_grad_(True)
    logits = D(img, torch.from_numpy(io["c"]).to(device))
    (grad,) = torch.autograd.grad(logits.sum(), img)
    assert logits.dtype == torch.float32
    assert_on_fp16_path(logits, io, "logits", f"{tag} logits on {device}")
    assert_on_fp16_path(grad, io, "grad_img", f"{tag} d(logits)/d(img) on {device}")


@pytest.mark.parametrize("tag", G_TAGS)
def test_generator_matches_nvidia_fp16_on_cpu(tag: str) -> None:
    check_generator(tag, "cpu")


@pytest.mark.parametrize("tag", D_TAGS)
def test_discriminator_matches_nvidia_fp16_on_cpu(tag: str) -> None:
    check_discriminator(tag, "cpu")


def test_float32_layers_fail_the_fp16_criterion() -> None:
    """The criterion tells the paths apart: the same network with force_fp32 is rejected."""
    tag = G_TAGS[0]
    G, io = generator(tag), load(FP16 / f"{tag}_io.npz")
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(io["ws"]), noise_mode="const", force_fp32=True)
    with pytest.raises(AssertionError, match="from NVIDIA's float16 output"):
        assert_on_fp16_path(img, io, "img_const", tag)


def _tiny(fp16_channels_last: bool = False, conv_clamp: float | None = 256) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    synthesis = dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=conv_clamp,
                     fp16_channels_last=fp16_channels_last)  # fmt: skip
    G = Generator(8, 0, 8, 16, 3, dict(num_layers=2), synthesis)
    D = Discriminator(0, 16, 3, channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=conv_clamp,
                      block_kwargs=dict(fp16_channels_last=fp16_channels_last))  # fmt: skip
    return G, D


def _record_block_outputs(network: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for name in names:
        module = network.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, n=name: seen.update({n: o[0] if isinstance(o, tuple) else o}))
    return seen


@pytest.mark.parametrize("channels_last", [False, True])
def test_fp16_blocks_run_float16_on_cpu_with_nvidia_memory_format(channels_last: bool) -> None:
    G, D = _tiny(fp16_channels_last=channels_last)
    g_out = _record_block_outputs(G, ["synthesis.b4", "synthesis.b8", "synthesis.b16"])
    d_out = _record_block_outputs(D, ["b16", "b8"])
    z = torch.randn([2, 8])
    img = G(z, None, noise_mode="const")
    logits = D(img, None)
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    assert {n: t.dtype for n, t in g_out.items()} == {
        "synthesis.b4": torch.float32, "synthesis.b8": torch.float16, "synthesis.b16": torch.float16,
    }  # fmt: skip
    assert {n: t.dtype for n, t in d_out.items()} == {"b16": torch.float16, "b8": torch.float16}
    for out in (g_out["synthesis.b16"], d_out["b16"]):
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    if channels_last:  # NVIDIA stores the weights of float16 layers channels_last too
        assert G.synthesis.b16.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        forced = G.synthesis(G.mapping(z, None), noise_mode="const", force_fp32=True)
    assert forced.dtype == torch.float32 and not torch.equal(forced, G(z, None, noise_mode="const"))


def test_conv_clamp_bounds_float16_activations() -> None:
    G, D = _tiny(conv_clamp=0.25)
    layers = ["synthesis.b16.conv0", "synthesis.b16.conv1", "synthesis.b8.conv1"]
    seen = _record_block_outputs(G, layers)
    with torch.no_grad():
        G(torch.randn([2, 8]), None, noise_mode="const")
    for name in layers:
        assert seen[name].dtype == torch.float16
        assert seen[name].abs().max().item() == pytest.approx(0.25, rel=1e-3), f"{name} is not clamped at 0.25"


def test_precision_policy_lives_in_option_resolution() -> None:
    cpu = resolve_options("auto", 32, device="cpu")
    assert cpu.network.num_fp16_res == 0 and cpu.network.conv_clamp == 256 and not cpu.network.fp16_on_cpu
    assert resolve_options("auto", 32, device="cuda").network.num_fp16_res == 4
    kept = resolve_options("auto", 32, overrides={"fp16-on-cpu": "true"}, device="cpu")
    assert kept.network.num_fp16_res == 4 and kept.network.fp16_on_cpu
    assert resolve_options("auto", 32).network.num_fp16_res == 4  # no device: the preset's value, untouched
    recorded = TrainOptions.from_dict(json.loads(cpu.to_json()))
    assert recorded == cpu and resolve_precision(recorded, "cpu") == recorded
    with pytest.raises(ValueError, match="device must be"):
        resolve_precision(TrainOptions(network=NetworkConfig()), "tpu")


@pytest.mark.gpu
@pytest.mark.parametrize("tag", G_TAGS + D_TAGS)
def test_fp16_parity_on_cuda(tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same criterion on the GPU: NVIDIA's float16 path is device-independent up to float16 rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    (check_generator if tag.startswith("G") else check_discriminator)(tag, "cuda")
