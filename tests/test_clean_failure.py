"""Clean failure (issue 13): exit codes, --debug, stale temporary files, the run-directory race, label checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from stylegan_core.cli import main
from stylegan_core.cli.train import next_run_dir
from stylegan_core.data.dataset import DatasetError, ImageDataset, parse_labels
from stylegan_core.errors import EXIT_INPUT, EXIT_USAGE
from stylegan_core.io.stale_temps import remove_stale_temps


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_input_errors_exit_1_in_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.pkl"
    assert main(["import-nvidia", str(missing), str(tmp_path / "out.pt")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f"network pickle {missing} does not exist" in err
    assert main(["--debug", "import-nvidia", str(missing), str(tmp_path / "out.pt")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith(f"{missing} does not exist")
    assert main(["import-nvidia", str(missing), str(tmp_path / "out.pt"), "--debug"]) == EXIT_INPUT
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import-nvidia"])
    assert exit_info.value.code == EXIT_USAGE
    code = main(["dataset", "prepare", "--spec", str(tmp_path / "s.yaml"), "--dest", str(tmp_path / "o.zip"),
                 "--resolution", "16", "--transform", "none"])  # fmt: skip
    assert code == EXIT_USAGE and "cannot be combined with --spec" in capsys.readouterr().err


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    final = tmp_path / "data.zip"
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".data.zip.{dead}.tmp"
    live = tmp_path / f".data.zip.{alive}.tmp"
    other = tmp_path / f".other.zip.{dead}.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    assert remove_stale_temps(final) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_prepare_removes_what_a_killed_prepare_left(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    from hostile_support import png

    for index in range(3):
        (source / f"{index}.png").write_bytes(png(seed=index))
    dest = tmp_path / "out" / "d.zip"
    dest.parent.mkdir()
    leftovers = [dest.with_name(f".d.zip.{_dead_pid()}.tmp"), dest.with_name(f".d.manifest.parquet.{_dead_pid()}.tmp")]
    for path in leftovers:
        path.write_bytes(b"half a zip")
    code = main(["dataset", "prepare", "--source", str(source), "--dest", str(dest), "--resolution", "16", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert dest.is_file() and not any(path.exists() for path in leftovers)
    assert not [path.name for path in dest.parent.iterdir() if path.name.endswith(".tmp")]


def test_run_directory_race_takes_the_next_number(tmp_path):
    assert next_run_dir(tmp_path, "x").name == "00000-x"
    # Another launch created 00001-x between our listing and our mkdir: simulated by a file of that name, which
    # the listing ignores (it counts directories) but mkdir collides with.
    (tmp_path / "00001-x").write_text("taken")
    assert next_run_dir(tmp_path, "x").name == "00002-x"


LABEL_CASES = {
    "flat ints": ({"labels": [1, 2]}, "labels entry 0 is 1"),
    "empty entry": ({"labels": [[]]}, "labels entry 0 is []"),
    "dict": ({"labels": {"a.png": 1}}, "'labels' is a dict"),
    "top-level list": ([["a.png", 1]], "found a list"),
    "million": ({"labels": [["a.png", 10**6]]}, "label of a.png is 1000000"),
    "int64 max": ({"labels": [["a.png", 2**63 - 1]]}, "integers in [0, 10000)"),
    "bool": ({"labels": [["a.png", True]]}, "label of a.png is true"),
    "ragged vectors": ({"labels": [["a.png", [1, 2]], ["b.png", [1]]]}, "lists of 2 finite numbers"),
    "infinite": ({"labels": [["a.png", [1e999]]]}, "finite numbers"),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_malformed_labels_are_one_line_dataset_errors(case):
    document, message = LABEL_CASES[case]
    names = ["a.png", "b.png"] if "ragged" in case else ["a.png"]
    with pytest.raises(DatasetError) as error:
        parse_labels(json.dumps(document).encode(), names, "x/dataset.json")
    assert message in str(error.value) and str(error.value).startswith("x/dataset.json: ")


def test_good_labels_still_parse():
    assert parse_labels(b'{"labels": [["a.png", 2], ["b.png", 0]]}', ["a.png", "b.png"], "w").tolist() == [2, 0]
    vectors = parse_labels(b'{"labels": [["a.png", [0.5, 1]], ["b.png", [0, 2]]]}', ["a.png", "b.png"], "w")
    assert vectors.shape == (2, 2) and vectors.dtype.name == "float32"
    assert parse_labels(b'{"labels": null}', ["a.png"], "w") is None


def test_every_image_is_checked_when_the_dataset_opens_from_headers(tmp_path, monkeypatch):
    from hostile_support import dataset_zip, png

    import stylegan_core.data.dataset as dataset_module

    decoded = []
    decode = dataset_module.decode_dataset_image
    monkeypatch.setattr(dataset_module, "decode_dataset_image", lambda data, name: decoded.append(name) or decode(
        data, name))  # fmt: skip
    good = dataset_zip(tmp_path / "good.zip", count=64)
    assert len(ImageDataset(good)) == 64 and len(decoded) == 1  # 63 images checked from their PNG headers only
    bad = dataset_zip(tmp_path / "bad.zip", count=64, replace={63: png(16, 8)})
    with pytest.raises(DatasetError, match=r"bad\.zip/00000/img00000063\.png: image is 16x8"):
        ImageDataset(bad)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w") as archive:
        archive.writestr("a.png", png())
        archive.writestr("b.png", b"\0" * (65 << 20))
    with pytest.raises(DatasetError, match=r"bomb\.zip/b\.png: declares 68157440 bytes"):
        ImageDataset(tmp_path / "bomb.zip")


def test_prepare_reports_a_corrupt_zip_entry_in_one_line(tmp_path, capsys):
    from hostile_support import corrupt_member, dataset_zip

    source = corrupt_member(dataset_zip(tmp_path / "crc.zip", count=8), 3)
    code = main(["dataset", "prepare", "--source", str(source), "--dest", str(tmp_path / "o.zip"), "--resolution",
                 "16", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and err.count("\n") == 1 and "Traceback" not in err
    assert "crc.zip/00000/img00000003.png" in err and "Bad CRC-32" in err


def test_errors_reraised_from_loader_workers_keep_one_line():
    from stylegan_core.errors import one_line

    error = DatasetError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\nstylegan_core.data.options.DatasetError: d.zip/a.png: "
                         "corrupt zip member (Bad CRC-32)\n")  # fmt: skip
    assert one_line(error) == "d.zip/a.png: corrupt zip member (Bad CRC-32)"
