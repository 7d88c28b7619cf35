"""`stylegan style-mixing` against the grid NVIDIA's style_mixing.py wrote for the same network (fixture README)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import FIXTURES
from transfer_support import reference_generator, write_nvidia_pickle

from stylegan_core.cli import main
from stylegan_core.export.style_mixing import mixing_canvas, style_mix_images
from stylegan_core.networks import Generator

EXPECTED = FIXTURES / "style_mixing" / "nvidia_grid_G32_skip_c0_psi0.7.png"
ROWS, COLS = [85, 100], [55, 821]


@pytest.fixture(scope="module")
def reference_G() -> torch.nn.Module:
    return reference_generator()


def test_cli_matches_nvidia_grid_and_files(tmp_path, reference_G):
    network = write_nvidia_pickle(tmp_path / "net.pkl", {"G": reference_G, "D": None, "G_ema": reference_G})
    outdir = tmp_path / "mix"
    argv = ["style-mixing", "--network", str(network), "--rows", "85,100", "--cols", "55,821", "--styles", "0-6",
            "--trunc", "0.7", "--outdir", str(outdir), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    expected_names = {f"{r}-{c}.png" for r in ROWS for c in COLS} | {f"{s}-{s}.png" for s in ROWS + COLS}
    assert {path.name for path in outdir.iterdir()} == expected_names | {"grid.png"}
    ours = np.asarray(PIL.Image.open(outdir / "grid.png"), dtype=np.int16)
    nvidia = np.asarray(PIL.Image.open(EXPECTED), dtype=np.int16)
    assert ours.shape == nvidia.shape == (96, 96, 3)
    assert np.abs(ours - nvidia).max() <= 1, "more than 1 grey level from NVIDIA's style_mixing.py"
    # Grid layout: black corner; the top row and left column are the seeds' own images; cells are the files.
    assert not ours[:32, :32].any()
    own_col = np.asarray(PIL.Image.open(outdir / "821-821.png"))
    assert np.array_equal(ours[:32, 64:], own_col)
    assert np.array_equal(ours[64:, 32:64], np.asarray(PIL.Image.open(outdir / "100-55.png")))


def test_mixing_takes_exactly_the_chosen_styles(reference_G):
    # Mixing every style gives the column image; mixing none of the effective ones changes the row image.
    all_styles = style_mix_images(reference_G, [85], [55], range(reference_G.num_ws))
    # The mix is synthesised alone, the column's own image in a batch of two: other conv blocking, so a pixel may
    # round to the next grey level on some CPU; taking the wrong styles would move many pixels by far more.
    mixed, own = (all_styles[key].astype(np.int16) for key in ((85, 55), (55, 55)))
    assert np.abs(mixed - own).max() <= 1
    fine_only = style_mix_images(reference_G, [85], [55], [reference_G.num_ws - 1])
    coarse = style_mix_images(reference_G, [85], [55], [0, 1])
    assert not np.array_equal(fine_only[(85, 55)], coarse[(85, 55)])
    assert not np.array_equal(coarse[(85, 55)], coarse[(85, 85)])


def test_grey_network_and_canvas():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()  # fmt: skip
    images = style_mix_images(G, [1, 2, 3], [4], [0, 1])
    canvas = mixing_canvas(images, [1, 2, 3], [4])
    assert canvas.shape == (64, 32, 1)
    assert np.array_equal(canvas[16:32, 16:], images[(1, 4)])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--styles", "0-9"], "style indices [8, 9] are out of range: the network has ws 0..7"),
        (["--class", "1"], None),  # unconditional: a note, not an error
    ],
)
def test_bad_styles_one_line(tmp_path, reference_G, capsys, flags, message):
    network = write_nvidia_pickle(tmp_path / "net.pkl", {"G": reference_G, "D": None, "G_ema": reference_G})
    argv = ["style-mixing", "--network", str(network), "--rows", "1", "--cols", "2", "--outdir", str(tmp_path / "o"),
            "--device", "cpu", *flags]  # fmt: skip
    if message is None:
        assert main(argv) == 0
        assert capsys.readouterr().err == "note: --class 1 ignored: the network is unconditional\n"
        return
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"stylegan style-mixing: error: {message}"]
    assert not (tmp_path / "o").exists()


def test_conditional_network_needs_a_class():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()  # fmt: skip
    with pytest.raises(ValueError, match="conditional"):
        style_mix_images(G, [1], [2], [0])
    by_class = [style_mix_images(G, [1], [2], [0], class_idx=k)[(1, 1)] for k in (0, 2)]
    assert not np.array_equal(*by_class)
