"""`stylegan project`: outputs, the `generate --projected-w` round trip, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import FIXTURES
from transfer_support import reference_generator, write_nvidia_pickle
from vgg_standin import save_standin_vgg16

from stylegan_core.cli import main
from stylegan_core.metrics.vgg import VGG16_PATH_ENV, VGG16_URL
from stylegan_core.networks import Generator

# One torch thread: these small graphs run fastest so on shared CI cores (no result here depends on it).
pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = FIXTURES / "projector" / "target_G32_skip_c0_seed7.png"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    G = reference_generator()
    network = write_nvidia_pickle(folder / "net.pkl", {"G": G, "D": None, "G_ema": G})
    return {"network": str(network), "vgg": save_standin_vgg16(folder / "vgg16.pt"), "folder": folder}


def project_argv(files, outdir, *extra):
    return ["project", "--network", files["network"], "--target", str(TARGET), "--outdir", str(outdir),
            "--vgg16", files["vgg"], "--device", "cpu", *extra]  # fmt: skip


def test_outputs_and_projected_w_round_trip(files, tmp_path, capsys):
    outdir = tmp_path / "out"
    assert main(project_argv(files, outdir, "--num-steps", "6", "--save-video")) == 0
    out = capsys.readouterr().out
    assert "step     6/6" in out and "LPIPS distance" in out
    names = {path.name for path in outdir.iterdir()}
    assert {"target.png", "proj.png", "projected_w.npz"} <= names
    video = names - {"target.png", "proj.png", "projected_w.npz"}
    assert len(video) == 1 and video.pop() in {"proj.mp4", "proj.webp", "proj.gif"}  # MP4 when imageio-ffmpeg is in
    assert not [name for name in names if name.endswith(".tmp")]
    with np.load(outdir / "projected_w.npz") as data:
        assert data["w"].shape == (1, 8, 32) and data["w"].dtype == np.float32
    # generate --projected-w renders the same w with the same constant noise; generate.py maps [-1, 1] with
    # * 127.5 + 128 and projector.py with (x + 1) * 127.5, so the two PNGs differ by at most one grey level.
    assert main(["generate", "--network", files["network"], "--projected-w", str(outdir / "projected_w.npz"),
                 "--outdir", str(tmp_path / "gen"), "--device", "cpu"]) == 0  # fmt: skip
    generated = np.asarray(PIL.Image.open(tmp_path / "gen" / "proj00.png"), dtype=np.int16)
    proj = np.asarray(PIL.Image.open(outdir / "proj.png"), dtype=np.int16)
    assert generated.shape == proj.shape == (32, 32, 3)
    assert np.abs(generated - proj).max() <= 1
    assert np.array_equal(np.asarray(PIL.Image.open(outdir / "target.png")), np.asarray(PIL.Image.open(TARGET)))


def test_absent_vgg_weights_one_sentence(files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(VGG16_PATH_ENV, raising=False)
    argv = [arg for arg in project_argv(files, tmp_path / "o") if arg not in ("--vgg16", files["vgg"])]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and VGG16_URL in lines[0] and VGG16_PATH_ENV in lines[0], lines
    assert not (tmp_path / "o").exists()


def _bad_image(folder):
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return str(folder / "bad.png")


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda f, t: ["--target", str(t / "missing.png")], 1, "missing.png: target image does not exist"),
        (lambda f, t: ["--target", _bad_image(t)], 1, "bad.png: not an image file Pillow can read"),
        (lambda f, t: ["--vgg16", str(t / "none.pt")], 1, "none.pt do not exist"),
        (lambda f, t: ["--outdir", str(TARGET)], 1, "exists and is not a folder"),
    ],
)
def test_bad_inputs_one_line(files, tmp_path, capsys, change, code, message):
    argv = project_argv(files, tmp_path / "o")
    replacement = change(files, tmp_path)
    index = argv.index(replacement[0])
    argv[index : index + 2] = replacement
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylegan project: error: ") and message in lines[0], lines
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-steps", "0"], "argument --num-steps: must be in [1, 100000], got 0"),
        (["--num-steps", "100001"], "argument --num-steps: must be in [1, 100000], got 100001"),
        (["--num-steps", "ten"], "argument --num-steps: expected an integer, got 'ten'"),
        (["--seed", "-1"], "argument --seed: must be in [0, 4294967295], got -1"),
    ],
)
def test_bad_numbers_are_usage_errors(files, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as caught:
        main(project_argv(files, tmp_path / "o", *flags))
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_conditional_network_needs_class(tmp_path, files, capsys):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()  # fmt: skip
    network = write_nvidia_pickle(tmp_path / "cond.pkl", {"G": G, "D": None, "G_ema": G})
    argv = project_argv(files, tmp_path / "o", "--num-steps", "2")
    argv[argv.index("--network") + 1] = str(network)
    assert main(argv) == 1
    assert "choose a class" in capsys.readouterr().err
    assert main([*argv, "--class", "7"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main([*argv, "--class", "2"]) == 0
    assert (tmp_path / "o" / "projected_w.npz").is_file()
