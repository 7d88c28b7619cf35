"""Snapshot files: atomic save, weights_only load with clear errors, names and the latest-snapshot lookup."""

from __future__ import annotations

import zipfile

import pytest
import torch

from stylegan_core.io.snapshot import (
    SNAPSHOT_FORMAT,
    find_latest_snapshot,
    load_snapshot,
    save_snapshot,
    snapshot_label,
    snapshot_path,
)


def _state(**extra):
    state = {"format": SNAPSHOT_FORMAT, "G_kwargs": {"z_dim": 4}, "D_kwargs": {}, "G": {"w": torch.ones(2)}, "D": {},
             "G_ema": {}, "progress": {"cur_nimg": 8}, "options": {}}  # fmt: skip
    return {**state, **extra}


def test_save_and_load_round_trip_without_leftovers(tmp_path):
    path = save_snapshot(tmp_path / "snapshots" / "network-snapshot-000001.pt", _state(rng=[{"python": [3, [1, 2]]}]))
    loaded = load_snapshot(path)
    assert torch.equal(loaded["G"]["w"], torch.ones(2)) and loaded["rng"] == [{"python": [3, [1, 2]]}]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temporary file was renamed away


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = save_snapshot(tmp_path / "s.pt", _state())

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_snapshot(path, _state(bad=Unpicklable()))
    assert load_snapshot(path)["progress"] == {"cur_nimg": 8}
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]


def test_code_in_a_snapshot_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save(_state(extra=zipfile.ZipInfo("x")), path)  # an arbitrary class: needs full unpickling
    with pytest.raises(ValueError, match="evil.pt: cannot read snapshot"):
        load_snapshot(path)


def test_other_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_snapshot(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a stylegan_core snapshot"):
        load_snapshot(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="format is None"):
        load_snapshot(tmp_path / "plain.pt")
    torch.save({"format": SNAPSHOT_FORMAT}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing"):
        load_snapshot(tmp_path / "partial.pt")


def test_names_and_latest_snapshot(tmp_path):
    assert snapshot_label(25_000_000, 4) == "025000"
    assert snapshot_label(1_052, 0.02) == "000001.052"
    assert snapshot_path(tmp_path, 8_000, 4).name == "network-snapshot-000008.pt"
    assert find_latest_snapshot(tmp_path) is None
    for nimg in (4, 1_000, 996, 1_004):
        save_snapshot(snapshot_path(tmp_path, nimg, 0.5), _state())
    (tmp_path / "snapshots" / "network-snapshot-999999.pt.tmp").write_text("")
    assert find_latest_snapshot(tmp_path).name == "network-snapshot-000001.004.pt"
