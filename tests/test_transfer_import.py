"""NVIDIA network pickles: faithful import, no code execution, refusal of foreign globals, CLI conversion."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from transfer_support import load_like_nvidia, perturbed, write_nvidia_pickle

from stylegan_core.io.nvidia import load_state_dict_strict
from stylegan_core.io.nvidia_pickle import (
    RestrictedUnpickler,
    UnsafePickleError,
    is_nvidia_pickle,
    load_nvidia_pickle,
    snapshot_state_from_nvidia,
)
from stylegan_core.io.snapshot import load_generator, load_snapshot
from stylegan_core.networks import Discriminator, Generator

Z_DIM = 32
TINY_G = dict(z_dim=Z_DIM, c_dim=3, w_dim=32, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=2, conv_clamp=256))  # fmt: skip
TINY_D = dict(c_dim=3, img_resolution=16, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=2,
              conv_clamp=256, block_kwargs=dict(freeze_layers=1), epilogue_kwargs=dict(mbstd_group_size=2))  # fmt: skip


@pytest.fixture(scope="module")
def tiny_networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    G = perturbed(Generator(**TINY_G), seed=1)
    return {"G": G, "D": perturbed(Discriminator(**TINY_D), seed=2), "G_ema": perturbed(G, seed=3)}


def _inputs(seed: int = 0, batch: int = 4, c_dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.eye(c_dim)[torch.arange(batch) % c_dim] if c_dim else torch.zeros([batch, 0])
    return torch.randn([batch, Z_DIM], generator=generator), labels


@torch.no_grad()
def _generate(G: torch.nn.Module, **kwargs) -> torch.Tensor:
    z, c = _inputs(c_dim=G.c_dim)
    return G.eval()(z, c, noise_mode="const", **kwargs)


def _assert_same_state(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert list(got) == list(want)
    different = [key for key in want if not torch.equal(want[key], got[key])]
    assert not different, f"tensors differ after import: {different}"


def test_import_reproduces_network_outputs_exactly(tmp_path, tiny_networks):
    path = write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks, augment_p=0.375)
    assert is_nvidia_pickle(path)
    imported = load_nvidia_pickle(path)
    for name in ("G", "D", "G_ema"):
        _assert_same_state(tiny_networks[name], imported[name])
        assert imported[name].init_kwargs == tiny_networks[name].init_kwargs
    # Identical weights through identical kernels in one process: bit-exact on any CPU.
    assert torch.equal(_generate(imported.G_ema), _generate(tiny_networks["G_ema"]))
    assert torch.equal(_generate(imported.G, truncation_psi=0.7), _generate(tiny_networks["G"], truncation_psi=0.7))
    image, c = _generate(tiny_networks["G"]), _inputs()[1]
    assert torch.equal(imported.D.eval()(image, c), tiny_networks["D"].eval()(image, c))
    assert imported.augment_p == 0.375
    assert imported.training_set_kwargs["path"] == "/data/x.zip"


@pytest.mark.parametrize(("protocol", "legacy_tensors"), [(2, False), (5, False), (2, True)])
def test_pickle_protocols_and_tensor_layouts(tmp_path, tiny_networks, protocol, legacy_tensors):
    # Protocol 2 (bytes via _codecs.encode), 5 (Python 3.14's default), and torch < 1.0's _rebuild_tensor.
    path = write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks, protocol=protocol, legacy_tensors=legacy_tensors)
    imported = load_nvidia_pickle(path)
    for name in ("G", "D", "G_ema"):
        _assert_same_state(tiny_networks[name], imported[name])


def test_other_layouts_and_entries(tmp_path, tiny_networks):
    # A tensor carrying a Python attribute pickles through torch._tensor._rebuild_from_type_v2; numpy arrays through
    # numpy's _reconstruct; entries other than NVIDIA's are ignored with a note.
    G_ema = perturbed(tiny_networks["G_ema"], seed=0, scale=0)
    G_ema.mapping.w_avg.note = "python attribute"
    training_set = dict(path="/data/x.zip", label_shape=np.array([3]), max_size=np.int64(12))
    path = write_nvidia_pickle(tmp_path / "net.pkl", {**tiny_networks, "G_ema": G_ema},
                               extra={"training_set_kwargs": training_set, "progress": {"cur_nimg": 5}})  # fmt: skip
    imported = load_nvidia_pickle(path)
    _assert_same_state(tiny_networks["G_ema"], imported.G_ema)
    assert imported.training_set_kwargs == {"path": "/data/x.zip", "label_shape": [3], "max_size": 12}
    assert "ignored entries ['progress']" in imported.notes


def test_missing_networks(tmp_path, tiny_networks):
    only_ema = load_nvidia_pickle(write_nvidia_pickle(tmp_path / "ema.pkl", {**tiny_networks, "G": None}))
    state = snapshot_state_from_nvidia(only_ema)
    assert all(torch.equal(state.G[key], value) for key, value in tiny_networks["G_ema"].state_dict().items())
    assert "G missing: copied from G_ema" in state.imported_from["notes"]
    with pytest.raises(ValueError, match="holds no G network"):
        only_ema["G"]
    no_D = load_nvidia_pickle(write_nvidia_pickle(tmp_path / "nod.pkl", {**tiny_networks, "D": None}))
    with pytest.raises(ValueError, match="nod.pkl holds no D network, which a training snapshot needs"):
        snapshot_state_from_nvidia(no_D)


def test_globals_of_older_pickles_resolve():
    # NVIDIA's 2021 pickles were written with numpy 1 and Python 3.7 spellings.
    unpickler = RestrictedUnpickler(io.BytesIO(b""), "old.pkl")
    assert unpickler.find_class("numpy.core.multiarray", "scalar")(np.dtype("f8"), np.float64(1.5).tobytes()) == 1.5
    assert unpickler.find_class("__builtin__", "set") is set
    assert unpickler.find_class("torch", "float16") is torch.float16
    refused = (("torch", "load"), ("torch", "FloatStorage"), ("numpy", "load"), ("copyreg", "_reconstructor"))
    for module, name in refused:
        with pytest.raises(UnsafePickleError, match=f"old.pkl: it references {module}.{name}"):
            unpickler.find_class(module, name)


def test_frozen_discriminator_layers_arrive_as_buffers(tmp_path, tiny_networks):
    # NVIDIA stores Freeze-D layers' weights as buffers: same state-dict names, no gradient.
    imported = load_nvidia_pickle(write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks))
    buffers = dict(imported.D.named_buffers())
    assert "b16.fromrgb.weight" in buffers and "b16.conv0.weight" in dict(imported.D.named_parameters())


PAYLOAD = """
import pathlib
pathlib.Path({marker!r}).write_text("the embedded source ran")
class Generator:
    pass
"""


def test_embedded_source_never_runs(tmp_path, tiny_networks):
    marker = tmp_path / "payload_ran.txt"
    path = write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks, module_src=PAYLOAD.format(marker=str(marker)))
    load_like_nvidia(path)  # NVIDIA's own loader executes the source: the payload is live
    assert marker.exists()
    marker.unlink()
    imported = load_nvidia_pickle(path)
    assert not marker.exists()
    _assert_same_state(tiny_networks["G_ema"], imported.G_ema)


class _Call:
    """Pickles as a call of `function(*args)`, as a malicious pickle would embed it."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _hand_made_os_system(command: str) -> bytes:
    # {'G': os.system(command)} written opcode by opcode, naming the global "os system" as old pickles do.
    text = command.encode()
    return (b"\x80\x02}q\x00X\x01\x00\x00\x00Gq\x01cos\nsystem\nq\x02X" + len(text).to_bytes(4, "little") + text
            + b"q\x03\x85q\x04Rq\x05s.")  # fmt: skip


def _malicious_pickle(case: str, command: str) -> tuple[bytes, str]:
    """(pickle bytes, expected error text) for each way a pickle may try to run `command`."""
    system = f"{os.system.__module__}.system"  # posix.system on Linux: pickle writes the defining module
    if case == "os.system":
        return pickle.dumps({"G": _Call(os.system, command)}, protocol=4), f"references {system}"
    if case == "os.system by name":
        return _hand_made_os_system(command), "references os.system"
    if case == "builtins.eval":
        return pickle.dumps({"G": _Call(eval, f"__import__('os').system({command!r})")}, protocol=2), "builtins.eval"
    if case == "builtins.getattr":
        lookup = _Call(getattr, _Call(__import__, "os"), "system")
        return pickle.dumps({"x": lookup}, protocol=4), "references builtins.getattr"
    # A payload hidden where a tensor storage belongs: torch's weights-only loader must reject it.
    inner = pickle.dumps(_Call(os.system, command))
    return pickle.dumps({"G": _Call(torch.storage._load_from_bytes, inner)}, protocol=4), "not plain data"


@pytest.mark.parametrize("case", ["os.system", "os.system by name", "builtins.eval", "builtins.getattr", "storage"])
def test_foreign_globals_are_refused(tmp_path, case):
    marker = tmp_path / "ran.txt"
    data, expected = _malicious_pickle(case, f"echo ran > {marker}")
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=f"refusing to load {path}") as error:
        load_nvidia_pickle(path)
    assert expected in str(error.value)
    assert not marker.exists()


def test_reference_generator_reproduces_nvidia_images(tmp_path, reference_dir):
    networks = json.loads((reference_dir / "networks" / "networks.json").read_text())["models"]
    spec = networks["G32_skip_c4"]
    assert spec["class_name"] == "training.networks.Generator"
    G = Generator(**spec["kwargs"])
    with np.load(reference_dir / "networks" / "G32_skip_c4_state.npz") as state:
        load_state_dict_strict(G, {key: state[key] for key in state.files}, "G32_skip_c4")
    path = write_nvidia_pickle(tmp_path / "ref.pkl", {"G": G, "D": None, "G_ema": G}, init_kwargs={"G": spec["kwargs"],
                               "G_ema": spec["kwargs"]})  # fmt: skip
    imported = load_nvidia_pickle(path)
    with np.load(reference_dir / "networks" / "G32_skip_c4_io.npz") as io_data:
        z, c, expected = (torch.from_numpy(io_data[key]) for key in ("z", "c", "img_G_psi1_const"))
    with torch.no_grad():
        image = imported.G_ema(z, c, noise_mode="const")
    error = (image - expected).abs().max().item()
    assert error <= 1e-5 * expected.abs().max().item() + 1e-6, f"max |ours - NVIDIA| = {error}"
    assert "no D in the pickle" in imported.notes


SG3_SOURCE = "# training/networks_stylegan2.py (StyleGAN3 repository)\nfused_modconv_default = 'inference_only'\n"


def test_stylegan3_stylegan2_config_kwargs(tmp_path):
    # StyleGAN3's Generator takes synthesis kwargs flat and defaults to fp16 in 4 blocks, clamp 256, w_avg_beta 0.998.
    sg3_G = dict(z_dim=Z_DIM, w_dim=32, mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=32,
                 fused_modconv_default="inference_only", c_dim=0, img_resolution=16, img_channels=3)  # fmt: skip
    sg3_D = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32, mapping_kwargs={},
                 block_kwargs=dict(freeze_layers=0), epilogue_kwargs=dict(mbstd_group_size=4))  # fmt: skip
    ours_G = dict(z_dim=Z_DIM, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2, w_avg_beta=0.998),
                  synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256))  # fmt: skip
    ours_D = {**sg3_D, "num_fp16_res": 4, "conv_clamp": 256}
    G = perturbed(Generator(**ours_G), seed=4)
    D = perturbed(Discriminator(**ours_D), seed=5)
    path = write_nvidia_pickle(tmp_path / "sg3.pkl", {"G": G, "D": D, "G_ema": G}, module_src=SG3_SOURCE,
                               init_kwargs={"G": sg3_G, "G_ema": sg3_G, "D": sg3_D})  # fmt: skip
    imported = load_nvidia_pickle(path)
    assert imported.G_ema.init_kwargs == Generator(**ours_G).init_kwargs
    assert imported.D.init_kwargs == Discriminator(**ours_D).init_kwargs
    assert torch.equal(_generate(imported.G_ema), _generate(G))
    assert any("fused_modconv_default" in note for note in imported.notes)


def test_stylegan3_alias_free_generator_is_refused(tmp_path, tiny_networks):
    class SynthesisInput(torch.nn.Module):
        pass

    G = perturbed(tiny_networks["G"], seed=0)
    G.synthesis.input = SynthesisInput()
    path = write_nvidia_pickle(tmp_path / "sg3t.pkl", {**tiny_networks, "G": G})
    with pytest.raises(ValueError, match=r"\[G\]: a StyleGAN3 \(config T or R\) network"):
        load_nvidia_pickle(path)


def test_bad_files_get_clear_errors(tmp_path, tiny_networks):
    good = write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks).read_bytes()
    cases = {
        "truncated.pkl": (good[: len(good) // 2], "truncated or corrupt"),
        "text.pkl": (b"hello", "not an NVIDIA network pickle"),
        "list.pkl": (pickle.dumps([1, 2], protocol=4), "holds a list"),
        "nog.pkl": (pickle.dumps({"D": None}, protocol=4), "holds no generator"),
    }
    buffer = io.BytesIO()
    torch.save({"G": {}}, buffer)
    cases["zip.pkl"] = (buffer.getvalue(), "torch.save archive")
    legacy = io.BytesIO()
    torch.save({"G": {}}, legacy, _use_new_zipfile_serialization=False)
    cases["legacy.pkl"] = (legacy.getvalue(), "legacy torch.save")
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message) as error:
            load_nvidia_pickle(path)
        assert str(path) in str(error.value)


def _cli(*argv: str) -> int:
    from stylegan_core.cli import generate, import_nvidia

    parser = argparse.ArgumentParser(prog="stylegan")
    subparsers = parser.add_subparsers(required=True)
    import_nvidia.register(subparsers)
    generate.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def _nvidia_seed_image(G: torch.nn.Module, seed: int, class_idx: int) -> np.ndarray:
    # NVIDIA's generate.py: z from RandomState(seed), one-hot label, const noise, (x * 127.5 + 128) clamped to uint8.
    # On a CPU the float16 blocks run in float32, as in StyleGAN3's copy of these networks (ADA's script needs CUDA).
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    label = torch.zeros([1, G.c_dim])
    label[0, class_idx] = 1
    with torch.no_grad():
        image = G.eval()(z, label, truncation_psi=1, noise_mode="const", force_fp32=True)
    return (image.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_import_cli_snapshot_and_generate(tmp_path, tiny_networks):
    source = write_nvidia_pickle(tmp_path / "net.pkl", tiny_networks, augment_p=0.5)
    output = tmp_path / "net.pt"
    assert _cli("import-nvidia", str(source), str(output)) == 0
    with pytest.raises(ValueError, match="exists"):
        _cli("import-nvidia", str(source), str(output))
    snapshot = load_snapshot(output)
    assert snapshot.weights_only and snapshot.progress is None and snapshot.augment_p == 0.5
    assert snapshot.G_kwargs == tiny_networks["G"].init_kwargs
    assert snapshot.D_kwargs == tiny_networks["D"].init_kwargs
    for which in ("G", "G_ema"):
        _assert_same_state(tiny_networks[which], load_generator(output, which=which))
    seeds = [0, 7]
    for network in (source, output):
        outdir = tmp_path / f"images_{network.suffix[1:]}"
        _cli("generate", "--network", str(network), "--seeds", "0,7", "--class", "1", "--noise-mode", "const",
             "--outdir", str(outdir), "--device", "cpu")  # fmt: skip
        for seed in seeds:  # the CLI runs in this process with the same calls (batch 1): bit-exact
            written = np.asarray(PIL.Image.open(outdir / f"seed{seed:04d}.png"))
            assert np.array_equal(written, _nvidia_seed_image(tiny_networks["G_ema"], seed, class_idx=1))
