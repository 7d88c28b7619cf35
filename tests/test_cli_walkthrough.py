"""A new user's walk through the documented commands (i19w): each defect found, as the command line a user typed.

No training runs here: every check is refused or answered before the first tick, so the file takes seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from stylegan_core.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("walkthrough")
    rng = np.random.default_rng(0)
    for index in range(4):
        (root / "src").mkdir(exist_ok=True)
        pixels = rng.integers(0, 255, size=[16, 16, 3], dtype=np.uint8)
        PIL.Image.fromarray(pixels, "RGB").save(root / "src" / f"{index}.png")
    zip_path = root / "tiny.zip"
    assert main(["dataset", "prepare", "--source", str(root / "src"), "--dest", str(zip_path), "--resolution", "16",
                 "--quiet", "--workers", "1"]) == 0  # fmt: skip
    return zip_path


def _train(dataset: Path, outdir: Path, *extra: str) -> int:
    tiny = ["--cbase=256", "--cmax=16", "--map=2", "--batch=4", "--mbstd-group=2", "--workers=0", "--kimg=0.004"]
    return main(["train", "--outdir", str(outdir), "--data", str(dataset), *tiny, *extra])


def test_train_dry_run_refuses_an_unknown_metric(dataset, tmp_path, capsys):
    # Before: --dry-run printed the options and "Run directory would be"; the real run failed only after that.
    assert _train(dataset, tmp_path / "runs", "--metrics=fid5_fast", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "stylegan train: error: --metrics: unknown metric 'fid5_fast'" in err and "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_train_refuses_missing_inception_weights_before_the_first_tick(how, dataset, tmp_path, capsys, monkeypatch):
    # Before: --dry-run accepted it; the real run (before main's require_detectors) trained a tick (hours at GPU
    # scale), then said "Inception weights ... do not exist" at the first snapshot.
    missing = tmp_path / "no-inception.pt"
    extra = ["--metrics=fid8_full"]
    if how == "flag":
        extra.append(f"--detector={missing}")
    else:
        monkeypatch.setenv("STYLEGAN_INCEPTION", str(missing))
    for dry_run in ([], ["--dry-run"]):
        assert _train(dataset, tmp_path / "runs", *extra, *dry_run) == 1
        err = capsys.readouterr().err
        assert err == f"stylegan train: error: --metrics fid8_full: Inception weights {missing} do not exist\n"
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_train_with_metrics_none_needs_no_inception_weights(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STYLEGAN_INCEPTION", str(tmp_path / "absent.pt"))
    assert _train(dataset, tmp_path / "runs", "--metrics=none", "--dry-run") == 0
    assert "Run directory would be" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["train", "--outdir", "o", "--data", "d.zip", "--device", "cuda"], "stylegan train"),
        (
            ["dataset", "prepare", "--source", "s", "--dest", "d.zip", "--resolution", "16", "--bogus"],
            "stylegan dataset prepare",
        ),  # fmt: skip
        (["spec", "check", "x.yaml", "--strict"], "stylegan spec check"),
        (["generate", "--network", "n.pt", "--seeds", "0", "--grid", "g.png", "extra"], "stylegan generate"),
    ],
)
def test_an_unknown_argument_is_reported_by_its_sub_command(argv, prog, capsys):
    # Before: "usage: stylegan [-h] [--debug] COMMAND ..." and "stylegan: error: ...": the usage without the flags.
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} ") and f"{prog}: error: unrecognized arguments: " in err


@pytest.mark.parametrize("command", ["generate", "style-mixing"])
def test_outdir_that_is_a_file_is_refused_before_any_work(command, tmp_path, capsys):
    # Before: the images were generated, then "[Errno 17] File exists: 'circles.png'".
    existing = tmp_path / "circles.png"
    existing.write_bytes(b"not a folder")
    seeds = ["--seeds", "0-3"] if command == "generate" else ["--rows", "1", "--cols", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--network", str(tmp_path / "absent.pt"), *seeds, "--outdir", str(existing)])
    assert exit_info.value.code == 2
    assert f"argument --outdir: {existing} exists and is not a folder" in capsys.readouterr().err
    assert existing.read_bytes() == b"not a folder"


def test_style_mixing_styles_error_speaks_of_style_indices(tmp_path, capsys):
    # Before: "seeds: range '5-2' must go upwards and stay within 0..4294967295" for --styles.
    with pytest.raises(SystemExit):
        main(["style-mixing", "--network", "n.pt", "--rows", "1", "--cols", "2", "--styles", "5-2",
              "--outdir", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert "argument --styles: style indices" in err and "'5-2'" in err and "seeds" not in err.split("error:")[1]


@pytest.mark.parametrize("command", ["generate", "style-mixing", "video"])
def test_rendering_help_shows_words_not_internal_names(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--trunc PSI" in out and "--class INDEX|NAME" in out
    assert "TRUNCATION_PSI" not in out and "CLASS_IDX" not in out


def test_spec_check_names_files_as_given_and_checks_each_once(tmp_path, monkeypatch, capsys):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(REPO / "datasets_spec" / "shapes.yaml", specs / "shapes.yaml")
    monkeypatch.chdir(tmp_path)
    # Before: "/abs/.../specs/shapes.yaml: ok", and a file named twice was "already defined by" itself (exit 1).
    assert main(["spec", "check", "specs", "specs/shapes.yaml", "./specs/shapes.yaml"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    assert captured.out.startswith("specs/shapes.yaml: ok (shapes:") and captured.err == ""


def test_a_second_ctrl_c_during_training_is_one_line_not_a_traceback(dataset, tmp_path, monkeypatch, capsys):
    # Before: the second Ctrl-C (during the final metric evaluation) printed a 40-line KeyboardInterrupt traceback.
    from stylegan_core.training import worker

    def interrupted_after_a_snapshot(options, run_dir, callbacks=None, *, world=None):
        (run_dir / "snapshots").mkdir()
        (run_dir / "snapshots" / "network-snapshot-000000.008.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "run_training", interrupted_after_a_snapshot)
    assert _train(dataset, tmp_path / "runs", "--metrics=none") == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert (
        "stylegan train: interrupted; the last complete snapshot is " in err and "network-snapshot-000000.008.pt" in err
    )
    assert "--resume " in err


def test_ctrl_c_in_any_command_is_one_line(tmp_path, monkeypatch, capsys):
    from stylegan_core.cli import generate

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "run", interrupted)
    assert main(["generate", "--network", "n.pt", "--seeds", "0", "--outdir", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "stylegan generate: interrupted\n"


def test_a_conditional_network_without_class_lists_the_choices(monkeypatch):
    # Before: "choose a class (--class 0..4)", although --class also takes the names the snapshot records.
    from stylegan_core.cli import locate

    monkeypatch.setattr(locate, "class_names", lambda network: ["circle", "ring", "square"])
    with pytest.raises(
        ValueError, match=r"choose a class with --class, an index 0\.\.2 or a name \(circle, ring, square\)"
    ):
        locate.resolve_class(None, Path("snapshot.pt"), 3)
    monkeypatch.setattr(locate, "class_names", lambda network: None)  # an NVIDIA pickle: no names
    with pytest.raises(ValueError, match=r"an index 0\.\.2$"):
        locate.resolve_class(None, Path("network.pkl"), 3)
    assert locate.resolve_class(None, Path("snapshot.pt"), 0) is None  # unconditional: nothing to choose


def test_class_on_an_unconditional_network_is_a_note_not_a_python_warning(tmp_path, capsys):
    # Before: ".../export/generate.py:56: UserWarning: class 0 ignored ..." followed by that source line.
    import warnings

    from transfer_support import write_nvidia_pickle

    from stylegan_core.networks import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()  # fmt: skip
    network = write_nvidia_pickle(tmp_path / "net.pkl", {"G": G, "D": None, "G_ema": G})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Python warning fails the command
        code = main(["generate", "--network", str(network), "--seeds", "0", "--class", "0", "--outdir",
                     str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    assert code == 0 and (tmp_path / "out" / "seed0000.png").is_file()
    assert capsys.readouterr().err == "note: --class 0 ignored: the network is unconditional\n"


def test_errors_name_the_whole_command(tmp_path, capsys):
    # Before: "stylegan dataset: error: ..." for `stylegan dataset prepare` (and `validate`, `shapes`).
    assert main(["dataset", "validate", str(tmp_path / "absent.zip")]) == 1
    assert capsys.readouterr().err.startswith("stylegan dataset validate: error: ")


def test_metrics_flags_are_bounded_at_parse(dataset, capsys):
    # Before: --batch-size 0 ended in a ZeroDivisionError traceback; --seed -1 was refused without naming the flag.
    for flag, value in (("--batch-size", "0"), ("--seed", "-1")):
        with pytest.raises(SystemExit) as exit_info:
            main(["metrics", "--network", "x.pt", "--data", str(dataset), "--metrics", "fid8_full", flag, value])
        assert exit_info.value.code == 2
        assert f"stylegan metrics: error: argument {flag}: must be in [" in capsys.readouterr().err


def test_a_dataset_zip_given_as_network_is_named_as_such(dataset, tmp_path, capsys):
    # Before: torch's 'Expected hasRecord("version") ... please report an enhancement request to PyTorch'.
    assert main(["generate", "--network", str(dataset), "--seeds", "0", "--outdir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a zip archive but not a snapshot" in err and "--data" in err


def test_cond_on_an_unlabelled_dataset_says_how_to_label_it(dataset, tmp_path, capsys):
    assert _train(dataset, tmp_path / "runs", "--cond=1", "--metrics=none") == 1
    err = capsys.readouterr().err
    assert "has none" in err and "--labels subfolders" in err and "Traceback" not in err


def test_shapes_flags_are_bounded_at_parse(tmp_path, capsys):
    # Before: "shapes settings need count >= 1 ...; got ShapesSettings(count=0, size=128, seed=0)", exit 1.
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "shapes", "--dest", str(tmp_path / "shapes"), "--count", "0"])
    assert exit_info.value.code == 2
    assert "stylegan dataset shapes: error: argument --count: must be in [1, 1000000], got 0" in capsys.readouterr().err
    assert not (tmp_path / "shapes").exists()
