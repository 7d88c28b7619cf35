"""`stylegan generate --projected-w` against NVIDIA's generate.py output (fixture README), and hostile npz files."""

from __future__ import annotations

import zipfile

import numpy as np
import PIL.Image
import pytest
from conftest import FIXTURES
from transfer_support import reference_generator, write_nvidia_pickle

from stylegan_core.cli import main
from stylegan_core.export.projected_w import load_projected_w

FIXTURE = FIXTURES / "projected_w"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    G = reference_generator()
    return write_nvidia_pickle(tmp_path_factory.mktemp("net") / "net.pkl", {"G": G, "D": None, "G_ema": G})


def test_matches_nvidia_generate(tmp_path, network):
    outdir = tmp_path / "out"
    argv = ["generate", "--network", str(network), "--projected-w", str(FIXTURE / "projected_w.npz"),
            "--outdir", str(outdir), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(path.name for path in outdir.iterdir()) == ["proj00.png", "proj01.png"]
    for name in ("proj00.png", "proj01.png"):
        ours = np.asarray(PIL.Image.open(outdir / name), dtype=np.int16)
        nvidia = np.asarray(PIL.Image.open(FIXTURE / f"nvidia_{name}"), dtype=np.int16)
        assert ours.shape == nvidia.shape == (32, 32, 3)
        assert np.abs(ours - nvidia).max() <= 1, f"{name}: more than 1 grey level from NVIDIA's generate.py"


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (dict(x=np.zeros([1, 8, 32], np.float32)), "no array 'w'"),
        (
            dict(w=np.zeros([1, 7, 32], np.float32)),
            r"'w' is float32 \[1, 7, 32\]; this network needs float \[N, 8, 32\]",
        ),
        (dict(w=np.zeros([1, 8, 32], np.int64)), "'w' is int64"),
        (dict(w=np.full([1, 8, 32], np.nan, np.float32)), "NaN or infinite"),
        (dict(w=np.array([None, 1], dtype=object)), "cannot read array 'w'"),
    ],
)
def test_bad_files_are_named(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as error:
        load_projected_w(path, num_ws=8, w_dim=32)
    assert str(error.value).startswith(str(path))


def test_not_a_zip_and_size_bound(tmp_path, monkeypatch):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz file"):
        load_projected_w(tmp_path / "text.npz", 8, 32)
    path = _npz(tmp_path / "big.npz", w=np.zeros([4, 8, 32], np.float32))
    monkeypatch.setattr("stylegan_core.export.projected_w.MAX_PROJECTED_W_BYTES", 1024)
    with pytest.raises(ValueError, match="over the 1024-byte limit"):
        load_projected_w(path, 8, 32)
    assert zipfile.is_zipfile(path)


def test_cli_errors_are_one_line(tmp_path, network, capsys):
    base = ["generate", "--network", str(network), "--device", "cpu", "--projected-w", str(FIXTURE / "projected_w.npz")]
    assert main([*base, "--grid", str(tmp_path / "g.png")]) == 2
    assert capsys.readouterr().err.strip() == (
        "stylegan generate: error: --projected-w writes proj00.png, ... files: give --outdir instead of --grid"
    )
    with pytest.raises(SystemExit):  # argparse: --seeds and --projected-w exclude each other
        main([*base, "--seeds", "1", "--outdir", str(tmp_path)])
    assert not (tmp_path / "g.png").exists()
