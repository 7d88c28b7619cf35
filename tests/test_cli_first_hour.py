"""Issue 16, the CLI a new user meets: class sub-folders, run directories and `latest`, class names, --device cuda
without CUDA, data-loader workers capped by the cores, Dagster's PreviewWarning once (i.e. never)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan_core.cli import main
from stylegan_core.cli.locate import newest_snapshot, resolve_network
from stylegan_core.data.sources import list_source
from stylegan_core.io.snapshot import load_snapshot
from stylegan_core.training.report import SnapshotGrid
from stylegan_core.training.setup import loader_workers, usable_cores

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TINY = ["--cbase=256", "--cmax=32", "--map=2", "--batch=4", "--mbstd-group=2", "--metrics=none", "--workers=0",
        "--fp32=1", "--aug=noaug", "--cond=1"]  # fmt: skip
CLASSES = ("circle", "square", "triangle")


def _class_folders(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        for index in range(per_class):
            pixels = rng.integers(0, 60, size=[16, 16, 3], dtype=np.uint8)
            pixels[4:12, 4:12, label] = 220
            (root / name).mkdir(parents=True, exist_ok=True)
            PIL.Image.fromarray(pixels, "RGB").save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset prepared from class sub-folders with the default --labels auto, and one tiny conditional run."""
    root = tmp_path_factory.mktemp("first_hour")
    source = _class_folders(root / "src")
    assert main(["dataset", "prepare", "--source", str(source), "--dest", str(root / "shapes.zip"),
                 "--resolution", "16", "--quiet", "--workers", "1"]) == 0  # fmt: skip
    patch = pytest.MonkeyPatch()
    patch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)  # seconds per grid on a CPU
    try:
        assert main(["train", "--outdir", str(root / "runs"), "--data", str(root / "shapes.zip"), "--kimg=0.004",
                     *TINY]) == 0  # fmt: skip
    finally:
        patch.undo()
    return root


def test_labels_auto_uses_class_subfolders(trained, capsys, tmp_path):
    listing = list_source(trained / "src")  # default labels="auto", no dataset.json
    assert listing.labelled and listing.class_names == CLASSES
    assert [item.label for item in listing.items] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert main(["dataset", "prepare", "--source", str(trained / "src"), "--dest", str(tmp_path / "d.zip"),
                 "--resolution", "16", "--quiet", "--workers", "1"]) == 0  # fmt: skip
    assert "3 classes from sub-folders (circle, square, triangle)" in capsys.readouterr().out


def test_numbered_chunk_folders_and_a_single_folder_are_not_classes(tmp_path):
    for folder in ("00000", "00001"):
        _class_folders(tmp_path / "nvidia" / folder, per_class=1)  # images two levels down: still chunk folders
    assert not list_source(tmp_path / "nvidia").labelled
    _class_folders(tmp_path / "one" / "images", per_class=1)
    assert not list_source(tmp_path / "one").labelled


def test_network_and_resume_accept_run_directories_and_latest(trained, tmp_path, monkeypatch, capsys):
    runs = trained / "runs"
    (run_dir,) = runs.iterdir()
    snapshot = newest_snapshot(run_dir)
    assert snapshot is not None and snapshot.name == "network-snapshot-000000.004.pt"
    assert resolve_network(str(run_dir), "--network") == snapshot  # a run directory
    assert resolve_network(str(runs), "--network") == snapshot  # a folder of runs: the newest run
    monkeypatch.chdir(trained)
    assert resolve_network("latest", "--network") == Path("runs") / run_dir.name / "snapshots" / snapshot.name
    with pytest.raises(FileNotFoundError, match="--resume latest: no run under .* has a snapshot yet"):
        resolve_network("latest", "--resume", tmp_path)

    assert main(["generate", "--network", "latest", "--seeds", "0-1", "--class", "square", "--outdir",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0  # fmt: skip
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["seed0000.png", "seed0001.png"]

    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    assert main(["train", "--outdir", "runs", "--data", "shapes.zip", "--kimg=0.008", "--resume", "latest",
                 *TINY]) == 0  # fmt: skip
    assert f"Continuing the training in {Path('runs') / run_dir.name / 'snapshots' / snapshot.name}" in (
        capsys.readouterr().out
    )
    newest = newest_snapshot(Path("runs"))
    assert newest.parents[1].name.startswith("00001-") and load_snapshot(newest).progress.cur_nimg == 8


def test_class_names_and_indices(trained, tmp_path, capsys):
    from stylegan_core.cli.locate import resolve_class

    snapshot = newest_snapshot(trained / "runs")
    assert [resolve_class(text, snapshot, 3) for text in ("circle", "triangle", "1")] == [0, 2, 1]
    with pytest.raises(ValueError, match=r"an index 0\.\.2 or a name \(circle, square, triangle\)"):
        resolve_class(None, snapshot, 3)  # a conditional network needs --class (i19w: the choices are listed)
    with pytest.raises(ValueError, match="'hexagon' is not a class of this network; classes: circle, square, tri"):
        resolve_class("hexagon", snapshot, 3)
    code = main(["generate", "--network", str(snapshot), "--seeds", "0", "--class", "hexagon", "--outdir",
                 str(tmp_path)])  # fmt: skip
    assert code == 1 and "classes: circle, square, triangle" in capsys.readouterr().err  # bad input: exit 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_device_cuda_without_cuda_is_one_sentence(trained, tmp_path, capsys):
    code = main(["generate", "--network", str(trained / "runs"), "--seeds", "0", "--class", "0", "--outdir",
                 str(tmp_path), "--device", "cuda"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err and "AssertionError" not in err
    assert "--device cuda:" in err and "use --device cpu or auto" in err


def test_loader_workers_are_capped_by_the_cores(monkeypatch):
    assert loader_workers(0) == 0
    assert loader_workers(usable_cores() + 5) == usable_cores()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert loader_workers(3) == 2  # the "DataLoader will create 3 worker processes ... suggested max is 2"


def test_no_dagster_preview_warning_in_a_pipes_session():
    # Every Pipes session reads the preview PipesMessageReader.expected_writer_count; a fresh process shows what a
    # training run would print.
    code = ("import dagster_project.definitions\nfrom dagster import PipesTempFileMessageReader\n"
            "PipesTempFileMessageReader().expected_writer_count\n")  # fmt: skip
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert "PreviewWarning" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_pipeline_device_cuda_without_cuda_is_one_sentence(tmp_path):
    from dagster_project.resources import StyleGANResource

    with pytest.raises(ValueError, match=r"^stylegan resource device 'cuda': no CUDA here .*STYLEGAN_DEVICE=cpu"):
        StyleGANResource(artifacts_dir=str(tmp_path), device="cuda").torch_device()


@pytest.mark.parametrize("command", ["generate", "style-mixing", "video"])
@pytest.mark.parametrize("psi", ["nan", "inf", "-inf", "x"])
def test_truncation_psi_must_be_a_finite_number(command, psi, tmp_path, capsys):
    # argparse refuses before any network is loaded (the path need not exist): a usage error, exit 2, one line
    extra = {"generate": ["--seeds", "0"], "style-mixing": ["--rows", "1", "--cols", "2"], "video": []}[command]
    out = ["--output", str(tmp_path / "v.mp4")] if command == "video" else ["--outdir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--network", str(tmp_path / "none.pt"), *extra, *out, f"--trunc={psi}"])
    assert exit_info.value.code == 2
    assert "truncation psi must be" in capsys.readouterr().err
