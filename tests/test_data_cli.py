"""`stylegan dataset prepare|validate|shapes` through the real entry point: exit codes and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import PIL.Image
import pytest
from data_support import extract_reference_sources, gradient

from stylegan_core.cli import main
from stylegan_core.data.dataset import ImageDataset


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["dataset", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepare_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = extract_reference_sources(tmp_path / "src")
    out = tmp_path / "out" / "rgb.zip"
    code, stdout, _ = _run(
        ["prepare", "--source", str(sources / "rgb"), "--dest", str(out), "--resolution", "32", "--quiet"], capsys
    )
    assert code == 0 and "8 images 32x32x3, 5 classes" in stdout
    assert len(ImageDataset(out)) == 8 and (tmp_path / "out" / "rgb.manifest.parquet").is_file()
    code, stdout, _ = _run(["validate", str(out)], capsys)
    assert code == 0 and "all 13 expectations passed" in stdout
    code, stdout, stderr = _run(["validate", str(out), "--resolution", "64"], capsys)
    assert code == 1 and "FAIL width_is_resolution" in stdout
    assert stderr.count("\n") == 1 and "width_is_resolution, height_is_resolution" in stderr


def test_bad_input_exits_nonzero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.png").write_bytes(b"not a png")
    cases = [
        ["prepare", "--source", str(source), "--dest", str(tmp_path / "o.zip"), "--resolution", "16"],
        ["prepare", "--source", str(tmp_path / "missing"), "--dest", str(tmp_path / "o.zip"), "--resolution", "16"],
        ["prepare", "--source", str(source), "--dest", str(tmp_path / "o.zip"), "--resolution", "24"],
        ["validate", str(tmp_path / "missing.zip")],
    ]
    for argv in cases:
        code, _, stderr = _run(argv, capsys)
        assert code == 1, argv
        assert stderr.count("\n") == 1 and "error:" in stderr, stderr
    assert "a.png: not an image" in _run(cases[0], capsys)[2]
    assert not (tmp_path / "o.zip").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--num-classes", "20000", "must be in [1, 10000], got 20000"),  # a dataset no training run would accept
        ("--max-images", "0", "must be in [1,"),
        ("--workers", "two", "expected an integer, got 'two'"),
    ],
)
def test_bad_flag_values_are_usage_errors_naming_the_flag(tmp_path, capsys, flag, value, message) -> None:
    argv = ["prepare", "--source", str(tmp_path), "--dest", str(tmp_path / "o.zip"), "--resolution", "16", flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", *argv])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"argument {flag}: {message}" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o.zip").exists()


def test_prepare_from_a_spec_with_a_generated_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            name: tiny
            source: {kind: generated, generator: {count: 10, size: 32}}
            resolutions: [16]
            """
        )
    )
    out = tmp_path / "out" / "tiny-16.zip"
    code, stdout, _ = _run(
        ["prepare", "--spec", str(spec), "--dest", str(out), "--resolution", "16", "--quiet"], capsys
    )
    assert code == 0 and "10 images 16x16x3, 5 classes" in stdout
    assert (tmp_path / "out" / "tiny-source" / "square" / "00003.png").is_file()
    code, _, stderr = _run(
        ["prepare", "--spec", str(spec), "--dest", str(out), "--resolution", "16", "--transform", "none"], capsys
    )
    assert code == 2 and "--transform cannot be combined with --spec" in stderr
    code, _, stderr = _run(["prepare", "--spec", str(spec), "--dest", str(out), "--resolution", "32"], capsys)
    assert code == 1 and "resolution 32 is not one of [16]" in stderr


def test_shapes_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(["shapes", "--dest", str(tmp_path / "s"), "--count", "5", "--size", "32"], capsys)
    assert code == 0 and len(list((tmp_path / "s").rglob("*.png"))) == 5
    with pytest.raises(SystemExit) as exit_info:  # a bad flag value is a usage error, found at parse
        _run(["shapes", "--dest", str(tmp_path / "t"), "--count", "0"], capsys)
    assert exit_info.value.code == 2 and "--count: must be in [1, 1000000]" in capsys.readouterr().err


def test_sigterm_stops_prepare_as_ctrl_c_does_leaving_nothing(tmp_path: Path) -> None:
    # Before: a SIGTERM (a scheduler stopping the job) killed the command mid-write: a 98 MB temporary zip stayed
    # in the destination folder, and its pool's workers waited for tasks forever.
    source = tmp_path / "src"
    source.mkdir()
    for index in range(600):  # ~1-2 s of work on two cores: time to catch it mid-write
        image = PIL.Image.fromarray(gradient(256, 256, seed=index))
        image.save(source / f"{index:04d}.jpg", quality=90)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stylegan_core.cli", "dataset", "prepare", "--source", str(source)]
    command += ["--dest", str(out / "d.zip"), "--resolution", "64", "--workers", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not list(out.glob(".d.zip.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().endswith("interrupted"), stderr
    assert list(out.iterdir()) == []
