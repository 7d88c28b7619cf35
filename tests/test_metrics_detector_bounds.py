"""Detector files (Inception, VGG16) are bounded before anything reads them in full: the file's size and the sizes
its zip directory declares must fit io.limits.MAX_DETECTOR_BYTES, or the loaders, `stylegan metrics` and
`stylegan train --metrics` refuse them in one sentence naming the file, before hashing or torch.jit.load."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from inception_standin import save_standin_inception
from metrics_nvidia_support import REALS_ZIP
from vgg_standin import save_standin_vgg16

from stylegan_core.cli import main
from stylegan_core.errors import InputError
from stylegan_core.io import limits
from stylegan_core.io.atomic import sha256_file
from stylegan_core.io.limits import MAX_DETECTOR_BYTES, LimitError
from stylegan_core.metric_names import INCEPTION_FILES, VGG16_FILE, missing_detectors
from stylegan_core.metrics import inception, vgg

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

DECLARED = 0xFFFF_FFFE
"""The uncompressed size written into a member's zip directory entry: 4 GiB, a zip bomb's claim."""


def oversized(path: Path) -> Path:
    """An otherwise valid Inception stand-in padded (sparsely: no disk used) to one byte past the limit."""
    save_standin_inception(path)
    os.truncate(path, MAX_DETECTOR_BYTES + 1)
    return path


def declaring_huge_member(path: Path, save=save_standin_inception) -> Path:
    """A real stand-in archive whose first zip directory entry claims DECLARED uncompressed bytes."""
    save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        directory = archive.start_dir
    assert data[directory : directory + 4] == b"PK\x01\x02"  # a central directory entry
    struct.pack_into("<I", data, directory + 24, DECLARED)  # its uncompressed-size field
    path.write_bytes(data)
    return path


@pytest.fixture
def nothing_read(monkeypatch):
    """Fail the test if a refused file is hashed (read in full) or handed to torch.jit.load."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a refused detector file was read: {args}")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(inception, "sha256_file", forbidden)


def size_message(path: Path, expected: str) -> str:
    return (f"{path}: {MAX_DETECTOR_BYTES + 1} bytes, over the {MAX_DETECTOR_BYTES}-byte limit for a detector file "
            f"(expected {expected})")  # fmt: skip


def declared_message(path: Path, expected: str) -> str:
    with zipfile.ZipFile(path) as archive:
        declared = sum(member.file_size for member in archive.infolist())
    assert declared > DECLARED
    return (f"{path}: its zip directory declares {declared} uncompressed bytes, over the {MAX_DETECTOR_BYTES}-byte "
            f"limit for a detector file (expected {expected})")  # fmt: skip


def test_inception_loader_refuses_an_oversized_file_unread(tmp_path, nothing_read):
    path = oversized(tmp_path / "inception-2015-12-05.pt")
    with pytest.raises(LimitError) as caught:
        inception.load_detector(path)
    assert str(caught.value) == size_message(path, INCEPTION_FILES)


def test_inception_loader_refuses_a_declared_zip_bomb_unread(tmp_path, nothing_read):
    path = declaring_huge_member(tmp_path / "inception-2015-12-05.pt")
    with pytest.raises(LimitError) as caught:
        inception.load_detector(path)
    assert str(caught.value) == declared_message(path, INCEPTION_FILES)


def test_vgg16_loader_refuses_both_unread(tmp_path, nothing_read):
    big = tmp_path / "vgg16.pt"
    save_standin_vgg16(big)
    os.truncate(big, MAX_DETECTOR_BYTES + 1)
    with pytest.raises(LimitError) as caught:
        vgg.load_vgg16(big)
    assert str(caught.value) == size_message(big, VGG16_FILE)
    bomb = declaring_huge_member(tmp_path / "bomb-vgg16.pt", save=save_standin_vgg16)
    with pytest.raises(LimitError) as caught:
        vgg.load_vgg16(bomb)
    assert str(caught.value) == declared_message(bomb, VGG16_FILE)


def test_a_huge_zip_directory_is_refused_before_zipfile_parses_it(tmp_path, monkeypatch, nothing_read):
    # zipfile keeps ~560 bytes per directory entry: a 1 GiB file of bare entries would cost ~10 GB to parse. The cap
    # is lowered here so that a small file shows it; the stand-in's own directory (16 entries) stays under it.
    standin = Path(save_standin_inception(tmp_path / "inception-2015-12-05.pt"))
    with zipfile.ZipFile(standin) as archive:
        directory = archive.start_dir
    monkeypatch.setattr(limits, "MAX_DETECTOR_DIRECTORY_BYTES", 4096)
    many = tmp_path / "many.pt"
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(200):
            archive.writestr(f"many/data/{index}", b"")
    with zipfile.ZipFile(many) as archive:
        size = sum(len(entry.filename) + 46 for entry in archive.infolist())  # what the directory holds
    with pytest.raises(LimitError) as caught:
        inception.load_detector(many)
    assert str(caught.value) == (f"{many}: its zip directory is {size} bytes, over the 4096-byte limit for a "
                                 f"detector file (expected {INCEPTION_FILES})")  # fmt: skip
    assert standin.stat().st_size - directory < 4096 and limits.check_detector_archive(standin, "x") > 0


def test_the_limit_is_inclusive_and_the_stand_ins_load(tmp_path, monkeypatch):
    at_limit = tmp_path / "at-limit.pt"
    at_limit.touch()
    os.truncate(at_limit, MAX_DETECTOR_BYTES)  # passes the size check, then is not a zip
    with pytest.raises(InputError, match=r"at-limit.pt is not a TorchScript file \(not a zip archive\)"):
        limits.check_detector_archive(at_limit, INCEPTION_FILES)
    standin = Path(save_standin_inception(tmp_path / "inception-2015-12-05.pt"))
    detector = inception.load_detector(standin)
    assert detector.kind == "nvidia" and detector.sha256 == sha256_file(standin)
    # The same file is refused once the limit is one byte below its size: the stand-in is checked, not waved through.
    monkeypatch.setattr(limits, "MAX_DETECTOR_BYTES", standin.stat().st_size - 1)
    monkeypatch.setattr(inception, "_loaded", {})
    with pytest.raises(LimitError, match=f"over the {standin.stat().st_size - 1}-byte limit for a detector file"):
        inception.load_detector(standin)


def test_the_start_up_check_reports_them_without_torch(tmp_path):
    big = oversized(tmp_path / "big.pt")
    bomb = declaring_huge_member(tmp_path / "bomb.pt")
    code = (
        "import sys\n"
        "from stylegan_core.metric_names import missing_detectors\n"
        f"print(missing_detectors(['fid50k_full', 'is50k'], inception={str(big)!r}))\n"
        f"print(missing_detectors(['pr50k3_full'], vgg16={str(bomb)!r}))\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == [
        repr([size_message(big, INCEPTION_FILES)]),
        repr([declared_message(bomb, VGG16_FILE)]),
    ]
    standin = save_standin_inception(tmp_path / "inception-2015-12-05.pt")
    assert missing_detectors(["fid50k_full", "is50k"], inception=standin) == []


def test_metrics_cli_refuses_in_one_line_before_loading_anything(tmp_path, capsys, nothing_read):
    big = oversized(tmp_path / "big.pt")
    argv = ["metrics", "--network", str(tmp_path / "absent.pt"), "--data", str(REALS_ZIP), "--metrics",
            "fid50k_full", "--detector", str(big)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"stylegan metrics: error: --metrics fid50k_full: {size_message(big, INCEPTION_FILES)}\n"
    bomb = declaring_huge_member(tmp_path / "bomb.pt", save=save_standin_vgg16)
    argv = ["metrics", "--network", str(tmp_path / "absent.pt"), "--data", str(REALS_ZIP), "--metrics",
            "ppl2_wend", "--vgg16", str(bomb)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"stylegan metrics: error: --metrics ppl2_wend: {declared_message(bomb, VGG16_FILE)}\n"


def test_train_refuses_before_a_run_directory_exists(tmp_path, capsys, nothing_read):
    bomb = declaring_huge_member(tmp_path / "bomb.pt")
    tiny = ["--cbase=256", "--cmax=16", "--map=2", "--batch=4", "--mbstd-group=2", "--workers=0", "--kimg=0.004"]
    argv = ["train", "--outdir", str(tmp_path / "runs"), "--data", str(REALS_ZIP), *tiny, "--metrics=fid8_full",
            f"--detector={bomb}"]  # fmt: skip
    for dry_run in ([], ["--dry-run"]):
        assert main([*argv, *dry_run]) == 1
        err = capsys.readouterr().err
        assert err == f"stylegan train: error: --metrics fid8_full: {declared_message(bomb, INCEPTION_FILES)}\n"
    assert not (tmp_path / "runs").exists()
