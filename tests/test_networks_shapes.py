"""Shapes and invariants of the networks beyond what NVIDIA's vectors cover (tiny configs, CPU unless marked gpu)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from numerics import assert_close_to_scale

from stylegan_core.config import NetworkConfig
from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.networks import Discriminator, Generator, build_discriminator, build_generator

Z_DIM = W_DIM = 16


def tiny_generator(res: int = 16, c_dim: int = 0, img_channels: int = 3, **synthesis: object) -> Generator:
    synthesis_kwargs = dict(channel_base=256, channel_max=16, conv_clamp=256, **synthesis)
    return Generator(Z_DIM, c_dim, W_DIM, res, img_channels, dict(num_layers=2), synthesis_kwargs)


def tiny_discriminator(res: int = 16, c_dim: int = 0, img_channels: int = 3, **kwargs: object) -> Discriminator:
    kwargs = dict(channel_base=256, channel_max=16, conv_clamp=256, **kwargs)
    kwargs.setdefault("epilogue_kwargs", dict(mbstd_group_size=2))
    return Discriminator(c_dim, res, img_channels, **kwargs)


def inputs(batch: int, c_dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn([batch, Z_DIM], generator=generator)
    c = torch.nn.functional.one_hot(torch.arange(batch) % max(c_dim, 1), max(c_dim, 1)).float()[:, :c_dim]
    return z, c


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("res", [16, 32, 64])
def test_generator_output_shape_and_num_ws(architecture: str, res: int) -> None:
    torch.manual_seed(0)
    G = tiny_generator(res, architecture=architecture).eval()
    assert G.num_ws == G.mapping.num_ws == 2 * int(np.log2(res)) - 2
    with torch.no_grad():
        img = G(*inputs(2, 0), noise_mode="const")
    assert img.shape == (2, 3, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.std() > 0


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("img_channels, c_dim", [(3, 0), (1, 0), (3, 5), (1, 2)])
def test_discriminator_output_shape(architecture: str, img_channels: int, c_dim: int) -> None:
    torch.manual_seed(0)
    D = tiny_discriminator(16, c_dim, img_channels, architecture=architecture)
    img = torch.rand([4, img_channels, 16, 16], requires_grad=True)
    logits = D(img, inputs(4, c_dim)[1])
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.sum(), img)
    assert grad.abs().sum() > 0
    assert hasattr(D, "mapping") == (c_dim > 0)
    assert hasattr(D.b16, "fromrgb") and hasattr(D.b8, "fromrgb") == (architecture == "skip")


def test_grayscale_conditional_generator() -> None:
    torch.manual_seed(0)
    G = tiny_generator(16, c_dim=3, img_channels=1).eval()
    z, _ = inputs(3, 3)
    labels = torch.eye(3)
    with torch.no_grad():
        img = G(z, labels, noise_mode="const")
        other = G(z, labels.roll(1, dims=0), noise_mode="const")
    assert img.shape == (3, 1, 16, 16)
    assert not torch.allclose(img, other), "the label must change the image"
    with pytest.raises(ValueError, match=r"c must have shape \[N, 3\]"):
        G(z, torch.zeros([3, 2]))


def test_truncation() -> None:
    torch.manual_seed(0)
    G = tiny_generator(16).eval()
    G.mapping.w_avg.normal_()
    z, c = inputs(4, 0)
    with torch.no_grad():
        ws = G.mapping(z, c)
        assert torch.equal(G.mapping(z, c, truncation_psi=1, truncation_cutoff=2), ws)  # same kernels: bit-exact
        # lerp inside the mapping vs the formula written out: float32 rounding at the scale of w.
        assert_close_to_scale(G.mapping(z, c, truncation_psi=0), G.mapping.w_avg.expand_as(ws), 1e-6)
        cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.equal(cut[:, 2:], ws[:, 2:])  # untouched layers: the same kernels computed them, bit-exact
    assert_close_to_scale(cut[:, :2], G.mapping.w_avg + 0.5 * (ws[:, :2] - G.mapping.w_avg), 1e-6)  # lerp vs formula


def test_w_avg_tracking_rules() -> None:
    torch.manual_seed(0)
    G = tiny_generator(16)
    z, c = inputs(4, 0)
    w_avg = G.mapping.w_avg.clone()
    with torch.no_grad():
        G.eval()
        G.mapping(z, c)
        assert torch.equal(G.mapping.w_avg, w_avg), "eval mode must not update w_avg"
        G.mapping(z, c, update_emas=True)
        assert not torch.equal(G.mapping.w_avg, w_avg), "update_emas=True updates in any mode"
        G.train()
        w_avg = G.mapping.w_avg.clone()
        G.mapping(z, c, skip_w_avg_update=True)
        assert torch.equal(G.mapping.w_avg, w_avg)
        w = G.mapping(z, c)[:, 0]
    assert_close_to_scale(G.mapping.w_avg, w.mean(dim=0).lerp(w_avg, 0.995), 1e-6)  # batch mean may reduce otherwise


def test_noise_modes() -> None:
    torch.manual_seed(0)
    G = tiny_generator(16).eval()
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    ws = G.mapping(*inputs(2, 0)).detach()
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(G.synthesis(ws, noise_mode="const"), const)
        assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
        none = G.synthesis(ws, noise_mode="none")
        assert not torch.allclose(none, const)
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.data.zero_()
        # Zero-strength noise is added as 0 * noise: within float32 rounding of the image scale.
        assert_close_to_scale(G.synthesis(ws, noise_mode="const"), none, 1e-6)
        with pytest.raises(ValueError, match="noise_mode"):
            G.synthesis(ws, noise_mode="fixed")


def test_fused_modconv_default_rule() -> None:
    """Default: grouped (fused) convolution in eval mode, shared (non-fused) convolution in train mode."""
    torch.manual_seed(0)
    G = tiny_generator(16)
    ws = G.mapping(*inputs(3, 0)).detach()
    with torch.no_grad():
        G.eval()
        # Default and explicit fused run the same kernels: bit-exact (likewise unfused below).
        assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const", fused_modconv=True))
        G.train()
        unfused = G.synthesis(ws, noise_mode="const", fused_modconv=False)
        assert torch.equal(G.synthesis(ws, noise_mode="const"), unfused)
        # Grouped vs shared convolution: other kernels; reference README saw 4.2e-6 abs on images of scale ~5.
        assert_close_to_scale(G.synthesis(ws, noise_mode="const", fused_modconv=True), unfused, 1e-5)


def test_freeze_d_layers_are_buffers_without_gradient() -> None:
    torch.manual_seed(0)
    plain = tiny_discriminator(16, architecture="resnet")
    # b16 holds layers 0-3 (fromrgb, conv0, conv1, skip); 5 frozen layers reach into b8 (conv0 is layer 4).
    frozen = tiny_discriminator(16, architecture="resnet", block_kwargs=dict(freeze_layers=5))
    frozen_layers = ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip", "b8.conv0"]
    params = dict(frozen.named_parameters())
    buffers = dict(frozen.named_buffers())
    for layer in frozen_layers:
        assert f"{layer}.weight" in buffers and f"{layer}.weight" not in params
    assert "b8.conv1.weight" in params and "b8.conv1.bias" in params
    assert set(frozen.state_dict()) == set(plain.state_dict())
    frozen.load_state_dict(plain.state_dict(), strict=True)
    frozen(torch.rand([2, 3, 16, 16]), torch.zeros([2, 0])).sum().backward()
    assert all(p.grad is not None for p in frozen.parameters())
    assert all(not b.requires_grad and b.grad is None for b in buffers.values())


def test_init_kwargs_round_trip() -> None:
    torch.manual_seed(0)
    G = tiny_generator(16, c_dim=2, architecture="resnet", resample_filter=(1, 2, 1)).eval()
    D = tiny_discriminator(16, c_dim=2, architecture="skip", cmap_dim=8, block_kwargs=dict(freeze_layers=1)).eval()
    z, c = inputs(2, 2)
    img = torch.rand([2, 3, 16, 16])
    for network, args in ((G, (z, c)), (D, (img, c))):
        kwargs = json.loads(json.dumps(network.init_kwargs))
        rebuilt = type(network)(**kwargs).eval()
        assert rebuilt.init_kwargs == kwargs
        rebuilt.load_state_dict(network.state_dict(), strict=True)
        with torch.no_grad():
            assert torch.equal(rebuilt(*args), network(*args))  # same weights, same kernels: bit-exact
    assert G.init_kwargs["synthesis_kwargs"]["resample_filter"] == [1, 2, 1]


def test_build_from_network_config() -> None:
    net = NetworkConfig(
        z_dim=8, w_dim=8, mapping_layers=3, channel_base=128, channel_max=8, num_fp16_res=2, conv_clamp=None,
        g_architecture="orig", d_architecture="skip", mbstd_group=2, mbstd_num_channels=2, freezed=2, cmap_dim=4,
    )  # fmt: skip
    G = build_generator(net, resolution=16, img_channels=1, c_dim=3)
    D = build_discriminator(net, resolution=16, img_channels=1, c_dim=3)
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.img_channels, G.num_ws) == (8, 8, 3, 16, 1, 6)
    assert G.mapping.num_layers == 3 and G.synthesis.b16.architecture == "orig"
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    assert G.synthesis.b16.conv1.conv_clamp is None
    assert D.b16.architecture == "skip" and D.b4.cmap_dim == 4 and D.b4.mbstd.group_size == 2
    assert D.b4.conv.weight.shape[1] == 8 + 2
    assert "b16.conv0.weight" in dict(D.named_buffers()) and "b16.conv1.weight" in dict(D.named_parameters())
    images = G(torch.randn([2, 8]), torch.eye(3)[:2])
    assert images.shape == (2, 1, 16, 16)
    assert D(images, torch.eye(3)[:2]).shape == (2, 1)


def test_minibatch_std_groups() -> None:
    torch.manual_seed(0)
    D = tiny_discriminator(16, epilogue_kwargs=dict(mbstd_group_size=2))
    img = torch.rand([6, 3, 16, 16])
    assert D(img, torch.zeros([6, 0])).shape == (6, 1)
    with pytest.raises(ValueError, match="cannot be split into groups"):
        D(img[:5], torch.zeros([5, 0]))


def test_constructor_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"unknown synthesis_kwargs \['channels_base'\]"):
        Generator(8, 0, 8, 16, 3, synthesis_kwargs=dict(channels_base=64))
    with pytest.raises(ValueError, match="power of two"):
        Generator(8, 0, 8, 24, 3)
    with pytest.raises(ValueError, match="architecture"):
        Discriminator(0, 16, 3, architecture="skipp")
    with pytest.raises(ValueError, match=r"unknown epilogue_kwargs \['mbstd_group'\]"):
        Discriminator(0, 16, 3, epilogue_kwargs=dict(mbstd_group=2))


def test_nvidia_loader_checks_kwargs_and_keys() -> None:
    torch.manual_seed(0)
    G = tiny_generator(8)
    kwargs = dict(G.init_kwargs)
    state = {name: value.numpy() for name, value in G.state_dict().items()}
    state["synthesis.b4.conv1.noise_strength"] = np.array([0.25], dtype=np.float32)  # scalar stored as [1]
    loaded = generator_from_nvidia({**kwargs, "class_name": "training.networks.Generator"}, state)
    noise_strength = loaded.synthesis.b4.conv1.noise_strength
    assert noise_strength.shape == () and noise_strength.item() == 0.25
    with pytest.raises(ValueError, match=r"unknown NVIDIA Generator kwargs \['fmaps'\]"):
        generator_from_nvidia({**kwargs, "fmaps": 1}, state)
    with pytest.raises(ValueError, match="expected NVIDIA's training.networks.Generator"):
        generator_from_nvidia({**kwargs, "class_name": "training.networks.Discriminator"}, state)
    broken = dict(state)
    del broken["mapping.fc0.bias"]
    broken["mapping.fc9.weight"] = np.zeros([2, 2], np.float32)
    broken["synthesis.b4.const"] = np.zeros([1, 4, 4], np.float32)
    with pytest.raises(ValueError) as error:
        generator_from_nvidia(kwargs, broken)
    message = str(error.value)
    assert "'mapping.fc0.bias'" in message and "'mapping.fc9.weight'" in message
    assert "synthesis.b4.const: got [1, 4, 4], expected [16, 4, 4]" in message
    D = tiny_discriminator(16)
    with pytest.raises(ValueError, match=r"unknown NVIDIA Discriminator kwargs \['z_dim'\]"):
        discriminator_from_nvidia({**D.init_kwargs, "z_dim": 3}, D.state_dict())
    assert discriminator_from_nvidia(D.init_kwargs, D.state_dict()).b16.conv0.weight.shape == (16, 16, 3, 3)


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp16_path_on_cuda(channels_last: bool) -> None:
    """fp16 blocks run float16 on CUDA, stay close to float32, and train without overflow."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    G = Generator(Z_DIM, 0, W_DIM, 32, 3, dict(num_layers=2), dict(
        channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256, fp16_channels_last=channels_last,
    )).to(device).eval()  # fmt: skip
    D = Discriminator(0, 32, 3, channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256,
                      block_kwargs=dict(fp16_channels_last=channels_last)).to(device)  # fmt: skip
    dtypes = {}
    for name in ("b8", "b16", "b32"):
        getattr(G.synthesis, name).register_forward_hook(lambda m, i, o, n=name: dtypes.update({n: o[0].dtype}))
    ws = G.mapping(torch.randn([4, Z_DIM], device=device), None).detach()
    with torch.no_grad():
        img16 = G.synthesis(ws, noise_mode="const")
        assert dtypes == {"b8": torch.float32, "b16": torch.float16, "b32": torch.float16}
        img32 = G.synthesis(ws, noise_mode="const", force_fp32=True)
    assert img16.dtype == torch.float32 and torch.isfinite(img16).all()
    assert (img16 - img32).abs().max() <= 0.05 * img32.abs().max()
    logits16 = D(img32, None)
    logits32 = D(img32, None, force_fp32=True)
    assert logits16.dtype == torch.float32 and (logits16 - logits32).abs().max() <= 0.05 * logits32.abs().max() + 1e-3
    G.train()
    img = G.synthesis(ws, noise_mode="random")  # train mode with fp16 and batch 4: non-fused modconv
    D(img, None).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


@pytest.mark.gpu
def test_cuda_float32_matches_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions round to ~1e-3
    torch.manual_seed(0)
    G = tiny_generator(32).eval()
    D = tiny_discriminator(32)
    z, c = inputs(4, 0)
    with torch.no_grad():
        img = G(z, c, noise_mode="const")
        img_cuda = G.cuda()(z.cuda(), c.cuda(), noise_mode="const").cpu()
        logits = D(img, c)
        logits_cuda = D.cuda()(img.cuda(), c.cuda()).cpu()
    assert (img_cuda - img).abs().max() <= 1e-4 * img.abs().max()
    assert (logits_cuda - logits).abs().max() <= 1e-4 * logits.abs().max() + 1e-5
