"""Crafted training zips and --resume files (issue 13): `stylegan train` refuses each in one line before training.

Each case runs as a subprocess capped at 3 GiB of address space: exit 1, one stderr line naming the problem, no
traceback, no training tick and no run directory left behind.
"""

from __future__ import annotations

import pytest
from hostile_support import assert_clean_refusal, hostile_training_cases, run_stylegan

TINY = ["--cbase=256", "--cmax=32", "--map=2", "--batch=4", "--mbstd-group=2", "--metrics=none", "--workers=0",
        "--fp32=1", "--kimg=0.008", "--tick=0.004", "--snap=1"]  # fmt: skip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return hostile_training_cases(tmp_path_factory.mktemp("hostile"))


CASE_NAMES = [
    "wrong_size_image", "grey_among_rgb", "label_million", "label_int64_max", "label_negative", "labels_mixed",
    "labels_nan_vector", "labels_flat_ints", "labels_empty_entries", "labels_dict", "labels_not_json",
    "crc_corrupt_member", "zip_bomb_member", "encrypted_member", "corrupt_png_data", "png_bomb_header",
    "truncated_zip", "resume_evil_pickle", "resume_truncated_snapshot",
]  # fmt: skip


@pytest.mark.parametrize("name", CASE_NAMES)
def test_train_refuses_bad_input_before_training(cases, tmp_path, name):
    data, extra, expected = cases[name]
    outdir = tmp_path / "runs"
    result = run_stylegan("train", f"--outdir={outdir}", f"--data={data}", *TINY, *extra)
    assert_clean_refusal(result, expected)
    assert result.returncode == 1
    assert not outdir.exists() or list(outdir.iterdir()) == [], "a refused run left a run directory"


def test_case_list_is_complete(cases):
    assert sorted(CASE_NAMES) == sorted(cases)
