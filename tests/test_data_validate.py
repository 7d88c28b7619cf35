"""The Great Expectations gate: passes on good manifests, and each defect fails the check named after it.

Each GX validation costs 1-2 s, so defects that touch different checks share a manifest; every failing row is
pinned by its offending values, so a defect reported under the wrong check would still fail the test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stylegan_core.data.manifest import ManifestRecord, build_manifest_frame, write_manifest
from stylegan_core.data.validate import validate_manifest


def _manifest(count: int = 8, channels: int = 3, labels: list[int] | None = None, size: int = 32) -> pd.DataFrame:
    labels = labels if labels is not None else [i % 5 for i in range(count)]
    records = [
        ManifestRecord(f"00000/img{i:08d}.png", f"s{i}.png", size, size, channels, labels[i], "0" * 64, 50, 40, "RGB")
        for i in range(count)
    ]
    return build_manifest_frame(records, max(labels) + 1 if labels else None)


def _failures(report: object) -> dict[str, dict[str, object]]:
    return {row["expectation"]: row for row in report.rows if not row["success"]}  # type: ignore[attr-defined]


def test_good_manifests_pass(tmp_path: Path) -> None:
    frame = _manifest()
    path = tmp_path / "m.parquet"
    write_manifest(frame, path, {})
    report = validate_manifest(path, 32)
    assert report.success, report.summary()
    assert {row["expectation"] for row in report.rows} >= {"labels_in_range", "onehot_sums_to_one", "paths_unique"}
    grey = build_manifest_frame(
        [ManifestRecord(f"p{i}", f"s{i}", 16, 16, 1, None, "0" * 64, 16, 16, "L") for i in range(3)], None
    )
    report = validate_manifest(grey, 16, channels=1)
    assert report.success and not any(row["expectation"].startswith("label") for row in report.rows)


def test_geometry_channel_and_path_defects() -> None:
    frame = _manifest()
    frame.loc[1, ["width", "height"]] = 48
    frame.loc[2, "height"] = 16
    frame.loc[3, "channels"] = 4
    frame.loc[4, "path"] = frame.loc[5, "path"]
    report = validate_manifest(frame, 32)
    failed = _failures(report)
    assert set(failed) == {
        "width_power_of_two",
        "width_is_resolution",
        "height_is_resolution",
        "square",
        "channels_allowed",
        "channels_uniform",
        "paths_unique",
    }
    assert not report.success
    assert failed["width_power_of_two"]["examples"] == [48] and failed["width_power_of_two"]["column"] == "width"
    assert failed["width_is_resolution"]["examples"] == [48]
    assert sorted(failed["height_is_resolution"]["examples"]) == [16, 48]
    assert failed["square"]["examples"] == [[32, 16]] and failed["square"]["unexpected_count"] == 1
    assert failed["channels_allowed"]["examples"] == [4]
    assert failed["paths_unique"]["unexpected_count"] == 2


def test_label_defects() -> None:
    frame = _manifest()
    onehot = [f"l{k}" for k in range(5)]
    frame["label"] = frame["label"].astype("Float64")
    frame.loc[1, "label"] = None
    frame.loc[1, onehot] = 0
    frame.loc[2, "label"] = 1.5
    frame.loc[3, "label"] = 9
    frame.loc[3, onehot] = 0
    frame.loc[4, "l1"] = 1  # label 4 row now has two ones
    failed = _failures(validate_manifest(frame, 32, label_dim=8))
    assert set(failed) == {
        "labels_present",
        "labels_integer",
        "labels_in_range",
        "onehot_sums_to_one",
        "onehot_columns",
    }
    assert failed["labels_integer"]["examples"] == [1.5]
    assert failed["labels_in_range"]["examples"] == [9]
    assert failed["onehot_sums_to_one"]["unexpected_count"] == 3
    assert failed["labels_present"]["unexpected_count"] == 1


def test_empty_manifest_and_bad_arguments() -> None:
    empty = _manifest().iloc[0:0]
    failed = _failures(validate_manifest(empty, 32))
    assert "row_count_positive" in failed
    with pytest.raises(ValueError, match="power of two"):
        validate_manifest(_manifest(), 48)
