"""Grids (NVIDIA's layout and real-image choice), sample grids, NVIDIA's seed convention and the two CLI commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from metrics_support import random_images, tiny_generator, write_zip
from numerics import assert_close_to_scale

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.export import (
    class_row_labels,
    default_grid_size,
    generate_images,
    parse_seeds,
    sample_grid,
    save_image_grid,
    seed_to_z,
    setup_snapshot_image_grid,
    write_sample_grids,
    write_seed_grid,
    write_seed_images,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.mark.parametrize(("resolution", "expected"), [(32, (32, 32)), (256, (30, 16)), (512, (15, 8)), (1024, (7, 4))])
def test_default_grid_size(resolution: int, expected: tuple[int, int]) -> None:
    assert default_grid_size(resolution) == expected


def test_save_image_grid_places_image_i_at_row_i_div_columns(tmp_path: Path) -> None:
    images = np.stack([np.full([3, 2, 4], value, dtype=np.float32) for value in np.linspace(-1, 1, 6)])
    images[:, 1] = 1.0  # green channel marks colour order
    path = save_image_grid(images, tmp_path / "grid.png", (-1, 1), (3, 2))
    pixels = np.asarray(PIL.Image.open(path))
    assert pixels.shape == (2 * 2, 3 * 4, 3)
    for index, value in enumerate(np.linspace(-1, 1, 6)):
        row, column = divmod(index, 3)
        cell = pixels[row * 2 : row * 2 + 2, column * 4 : column * 4 + 4]
        assert np.all(cell[..., 0] == np.rint((value + 1) * 127.5)) and np.all(cell[..., 1] == 255)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_save_image_grid_grey_and_errors(tmp_path: Path) -> None:
    grey = np.arange(4 * 1 * 2 * 2, dtype=np.uint8).reshape(4, 1, 2, 2) * 10
    image = PIL.Image.open(save_image_grid(grey, tmp_path / "grey.png", (0, 255), (2, 2)))
    assert image.mode == "L" and image.size == (4, 4)
    with pytest.raises(ValueError, match="does not hold 4 images"):
        save_image_grid(grey, tmp_path / "x.png", (0, 255), (3, 2))
    with pytest.raises(ValueError, match="low < high"):
        save_image_grid(grey, tmp_path / "x.png", (255, 0), (2, 2))
    with pytest.raises(ValueError, match="1 or 3"):
        save_image_grid(np.zeros([4, 4, 2, 2]), tmp_path / "x.png", (0, 1), (2, 2))


def _nvidia_grid_indices(labels: np.ndarray, columns: int, rows: int, seed: int) -> list[int]:
    """Reference transcription of the selection rule described in ada_inventory (training_loop's image grid)."""
    rnd = np.random.RandomState(seed)
    if labels.shape[1] == 0:
        everything = list(range(len(labels)))
        rnd.shuffle(everything)
        return [everything[i % len(everything)] for i in range(columns * rows)]
    by_label: dict = {}
    for index in range(len(labels)):
        by_label.setdefault(tuple(labels[index].flat[::-1]), []).append(index)
    keys = sorted(by_label.keys())
    for key in keys:
        rnd.shuffle(by_label[key])
    chosen: list[int] = []
    for y in range(rows):
        group = by_label[keys[y % len(keys)]]
        chosen += [group[x % len(group)] for x in range(columns)]
        by_label[keys[y % len(keys)]] = [group[(i + columns) % len(group)] for i in range(len(group))]
    return chosen


@pytest.mark.parametrize("labelled", [False, True])
def test_setup_snapshot_image_grid_matches_nvidia_choice(tmp_path: Path, labelled: bool) -> None:
    images = random_images(11, resolution=8)
    classes = [2, 0, 0, 1, 2, 0, 0, 0, 1, 2, 0] if labelled else None
    dataset = ImageDataset(write_zip(tmp_path / "data.zip", images, classes), use_labels=labelled)
    (columns, rows), grid_images, grid_labels = setup_snapshot_image_grid(dataset, seed=7, grid_size=(5, 4))
    labels = np.stack([dataset.get_label(i) for i in range(len(dataset))])
    expected = _nvidia_grid_indices(labels, 5, 4, seed=7)
    assert (columns, rows) == (5, 4)
    np.testing.assert_array_equal(grid_images, images[expected].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(grid_labels, labels[expected])
    if labelled:  # one class per row, in class order, cycling
        assert [int(np.argmax(grid_labels[row * 5])) for row in range(4)] == [0, 1, 2, 0]
    assert setup_snapshot_image_grid(dataset, seed=0)[0] == (32, 32)  # NVIDIA's default for 8 px images


def test_class_row_labels() -> None:
    labels = class_row_labels(3, (2, 4))
    assert labels.shape == (8, 3)
    assert np.argmax(labels, axis=1).tolist() == [0, 0, 1, 1, 2, 2, 0, 0] and labels.sum() == 8
    assert class_row_labels(0, (2, 2)).shape == (4, 0)


def test_parse_seeds_and_seed_convention() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5,1, 7-8") == [5, 1, 7, 8]
    for bad in ("", "a", "3-1", "1-2-3", "-1"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    np.testing.assert_array_equal(seed_to_z(42, 5), np.random.RandomState(42).randn(1, 5))


def _nvidia_generate(G: torch.nn.Module, seed: int, label: torch.Tensor, psi: float, noise_mode: str) -> np.ndarray:
    """NVIDIA's generate.py steps for one seed (z stays float64 as there)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    with torch.no_grad():
        img = G(z, label, truncation_psi=psi, noise_mode=noise_mode)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_generate_images_follow_nvidia_convention(tmp_path: Path) -> None:
    G = tiny_generator(c_dim=3)
    label = torch.tensor([[0.0, 0.0, 1.0]])
    produced = dict(generate_images(G, [0, 11], truncation_psi=0.7, class_idx=2, noise_mode="const"))
    for seed in (0, 11):  # one seed per call, the same torch calls on both sides: bit-exact on any CPU
        np.testing.assert_array_equal(produced[seed], _nvidia_generate(G, seed, label, 0.7, "const"))
    paths = write_seed_images(G, [11], tmp_path / "out", truncation_psi=0.7, class_idx=2)
    assert [p.name for p in paths] == ["seed0011.png"]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(paths[0])), produced[11])


def test_generate_class_rules_and_grey() -> None:
    with pytest.raises(ValueError, match="conditional"):
        list(generate_images(tiny_generator(c_dim=3), [0]))
    with pytest.raises(ValueError, match="out of range"):
        list(generate_images(tiny_generator(c_dim=3), [0], class_idx=3))
    grey = tiny_generator(channels=1)
    with pytest.warns(UserWarning, match="unconditional"):
        (_, pixels), = generate_images(grey, [1], class_idx=0)  # fmt: skip
    assert pixels.shape == (16, 16, 1)
    first, second = (dict(generate_images(grey, [1, 2], noise_mode="random")) for _ in range(2))
    np.testing.assert_array_equal(first[2], second[2])  # random noise is seeded by the image seed


def test_sample_grid_seeds_and_truncation(tmp_path: Path) -> None:
    G = tiny_generator()
    images = sample_grid(G, seeds=[3, 4, 5], batch_size=2)
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(4).randn(1, G.z_dim))
        direct = G(z, torch.zeros([1, 0]), noise_mode="const")
    # A batch of 2 vs a batch of 1: the convolutions block differently, so float32 rounding at the image scale.
    assert_close_to_scale(images[1:2], direct, 1e-5)
    collapsed = sample_grid(G, seeds=[3, 4, 5], truncation_psi=0.0)  # ψ = 0: every image is the average w's
    assert_close_to_scale(collapsed[0], collapsed[2], 1e-5)  # same w, other batch position: rounding only
    paths = write_sample_grids(G, tmp_path, (2, 2), truncation_psis=(1.0, 0.5))
    assert [p.name for p in paths] == ["samples-psi1.00.png", "samples-psi0.50.png"]
    assert PIL.Image.open(paths[0]).size == (32, 32)
    with pytest.raises(ValueError, match="labels are required"):
        sample_grid(tiny_generator(c_dim=2), seeds=[0])


def test_write_seed_grid_pads_with_black(tmp_path: Path) -> None:
    G = tiny_generator()
    path = write_seed_grid(G, [0, 1, 2], tmp_path / "grid.png")
    pixels = np.asarray(PIL.Image.open(path))
    assert pixels.shape == (32, 32, 3)
    np.testing.assert_array_equal(pixels[:16, :16], dict(generate_images(G, [0]))[0])
    assert not pixels[16:, 16:].any()


def _parser() -> argparse.ArgumentParser:
    from stylegan_core.cli import generate, metrics

    parser = argparse.ArgumentParser(prog="stylegan")
    subparsers = parser.add_subparsers(dest="command", required=True)
    generate.register(subparsers)
    metrics.register(subparsers)
    return parser


def _snapshot(G: torch.nn.Module, path: Path) -> Path:
    from stylegan_core.io.snapshot import Snapshot, save_snapshot
    from stylegan_core.networks import Discriminator

    D = Discriminator(c_dim=G.c_dim, img_resolution=G.img_resolution, img_channels=G.img_channels, channel_base=128,
                      channel_max=16)  # fmt: skip
    snapshot = Snapshot(G_kwargs=G.init_kwargs, D_kwargs=D.init_kwargs, G=G.state_dict(), D=D.state_dict(),
                        G_ema=G.state_dict())  # fmt: skip
    return save_snapshot(path, snapshot)


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    G = tiny_generator(c_dim=2)
    snapshot = _snapshot(G, tmp_path / "net.pt")
    args = _parser().parse_args(["generate", "--network", str(snapshot), "--seeds", "0-2", "--class", "1",
                                 "--trunc", "0.5", "--outdir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png"]
    expected = _nvidia_generate(G, 2, torch.tensor([[0.0, 1.0]]), 0.5, "const")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "out" / "seed0002.png")), expected)
    args = _parser().parse_args(["generate", "--network", str(snapshot), "--seeds", "0-3", "--class", "0",
                                 "--grid", str(tmp_path / "g.png"), "--grid-size", "4x1"])  # fmt: skip
    args.func(args)
    assert PIL.Image.open(tmp_path / "g.png").size == (64, 16)
    with pytest.raises(SystemExit):
        _parser().parse_args(["generate", "--network", "x", "--seeds", "0", "--outdir", "a", "--grid", "b"])


class _Pool3StandIn(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=[2, 3]), x.square().mean(dim=[2, 3])] * 342, dim=1)[:, :2048]


def test_cli_metrics_reports_into_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "snapshots").mkdir(parents=True)
    (run_dir / "training_options.json").write_text("{}")
    snapshot = _snapshot(tiny_generator(), run_dir / "snapshots" / "network-snapshot-000000.pt")
    data = write_zip(tmp_path / "data.zip", random_images(6, resolution=16))
    detector = tmp_path / "stand-in.pt"
    torch.jit.script(_Pool3StandIn()).save(str(detector))
    args = _parser().parse_args(["metrics", "--network", str(snapshot), "--data", str(data), "--metrics",
                                 "fid8_full,kid8_full", "--detector", str(detector), "--cache-dir",
                                 str(tmp_path / "cache"), "--device", "cpu", "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["metric"] for line in printed] == ["fid8_full", "kid8_full"]
    reported = json.loads((run_dir / "metric-kid8_full.jsonl").read_text())
    assert reported["results"] == printed[1]["results"]
    assert reported["snapshot_pkl"] == str(Path("snapshots") / "network-snapshot-000000.pt")
    with pytest.raises(SystemExit):
        _parser().parse_args(["metrics", "--network", "x", "--data", "y", "--metrics", "fid50k"])
