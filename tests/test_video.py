"""`stylegan video`: StyleGAN3 gen_video.py's interpolation (fixture README) and the MP4 / WebP / GIF writers."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import FIXTURES
from transfer_support import reference_generator, write_nvidia_pickle

from stylegan_core.cli import main
from stylegan_core.export import video_writer
from stylegan_core.export.interpolation import InterpolationConfig, frame_count, interpolation_frames, keyframe_seeds
from stylegan_core.export.style_mixing import seed_ws, to_uint8
from stylegan_core.networks import Generator

EXPECTED = FIXTURES / "video" / "gen_video_frames_0_5_14_29.png"


@pytest.fixture(scope="module")
def tiny_G() -> torch.nn.Module:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1),
                     synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()  # fmt: skip


def test_frames_match_gen_video():
    config = InterpolationConfig(grid=(4, 2), num_keyframes=3, frames_per_seed=10, shuffle_seed=5)
    assert frame_count(list(range(8)), config) == 30
    frames = interpolation_frames(reference_generator(), list(range(8)), config, indices=(0, 5, 14, 29))
    ours = np.concatenate(list(frames)).astype(np.int16)
    nvidia = np.asarray(PIL.Image.open(EXPECTED), dtype=np.int16)
    assert ours.shape == nvidia.shape == (256, 128, 3)
    assert np.abs(ours - nvidia).max() <= 1, "more than 1 grey level from gen_video.py"


def test_seeds_dealt_per_cell():
    config = InterpolationConfig(grid=(2, 1), num_keyframes=3)
    assert keyframe_seeds([10, 11, 12, 13], config).tolist() == [[[10, 11, 12], [13, 10, 11]]]
    assert keyframe_seeds(list(range(6)), InterpolationConfig(grid=(3, 1))).shape == (1, 3, 2)
    with pytest.raises(ValueError, match="shuffle seed -1 is outside"):
        InterpolationConfig(shuffle_seed=-1)
    with pytest.raises(ValueError, match="5 seeds do not divide into 2 grid cells"):
        keyframe_seeds(list(range(5)), InterpolationConfig(grid=(1, 2)))


def test_path_passes_through_keyframes_and_loops(tiny_G):
    config = InterpolationConfig(grid=(1, 1), frames_per_seed=4, truncation_psi=0.5)
    frames = list(interpolation_frames(tiny_G, [3, 9], config))
    assert len(frames) == 8
    ws = seed_ws(tiny_G, [3, 9], 0.5)
    for index, seed in ((0, 3), (4, 9)):
        keyframe = to_uint8(tiny_G.synthesis(ws[seed][None], noise_mode="const"))[0]
        assert np.abs(frames[index].astype(int) - keyframe).max() <= 1
    assert not np.array_equal(frames[1], frames[0])


def test_writers_round_trip(tmp_path, monkeypatch):
    frames = [np.full([9, 15, 3], 40 * index, dtype=np.uint8) for index in range(5)]
    gif = video_writer.write_video(iter(frames), tmp_path / "a.gif", fps=10)
    with PIL.Image.open(gif) as image:
        assert image.n_frames == 5 and image.size == (15, 9)
    if video_writer.mp4_encoder() is not None:
        import imageio_ffmpeg

        mp4 = video_writer.write_video(iter(frames), tmp_path / "a.mp4", fps=10)
        reader = imageio_ffmpeg.read_frames(str(mp4))
        meta = next(reader)
        assert meta["codec"] == "h264" and meta["size"] == (16, 10)  # odd sides padded, not rescaled
        assert sum(1 for _ in reader) == 5
    monkeypatch.setattr(video_writer, "mp4_encoder", lambda: None)
    path, note = video_writer.resolve_output(tmp_path / "b.mp4")
    assert path.suffix in (".webp", ".gif") and "no MP4 encoder" in note
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_writes_fallback_and_rejects_bad_input(tmp_path, tiny_G, monkeypatch, capsys):
    network = write_nvidia_pickle(tmp_path / "net.pkl", {"G": tiny_G, "D": None, "G_ema": tiny_G})
    monkeypatch.setattr(video_writer, "mp4_encoder", lambda: None)
    base = ["video", "--network", str(network), "--device", "cpu", "--frames-per-seed", "2"]
    assert main([*base, "--seeds", "0-3", "--grid", "2x1", "--output", str(tmp_path / "v.mp4")]) == 0
    written = [p for p in tmp_path.iterdir() if p.stem == "v"]
    assert len(written) == 1 and written[0].suffix in (".webp", ".gif")
    with PIL.Image.open(written[0]) as image:
        assert image.n_frames == 4 and image.size == (32, 16)
    capsys.readouterr()
    assert main([*base, "--seeds", "0-2", "--grid", "2x1", "--output", str(tmp_path / "w.mp4")]) == 2
    assert capsys.readouterr().err.strip() == (
        "stylegan video: error: 3 seeds do not divide into 2 grid cells; give --num-keyframes"
    )
    assert main([*base, "--seeds", "0-1", "--output", str(tmp_path / "w.avi")]) == 2
    assert "must end in one of .mp4, .webp, .gif" in capsys.readouterr().err
    monkeypatch.setattr(video_writer, "MAX_ANIMATION_BYTES", 16 * 16 * 3 * 3)  # room for 3 frames, not 4
    assert main([*base, "--seeds", "0-1", "--output", str(tmp_path / "w.gif")]) == 2
    assert "4 frames of 16x16 need 0.0 GiB in memory as an animation; write .mp4" in capsys.readouterr().err
    assert not any(p.stem == "w" for p in tmp_path.iterdir())
