"""The manifest writer used by ingestion (pyarrow alone) writes the very file the pandas path writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stylegan_core.data import manifest
from stylegan_core.data.manifest import ManifestRecord, build_manifest_frame, read_manifest, write_manifest

REPORT = {"content_hash": "ab" * 32, "count": 3, "skipped": [{"path": "x.png", "reason": "corrupt"}]}


def _records(labels: list[int | None]) -> list[ManifestRecord]:
    return [
        ManifestRecord(
            f"00000/img{index:08d}.png", f"cläss {index % 2}/ïmage {index}.jpg", 32, 32, 3, label,
            f"{index:064x}", 500 + index, 400, "RGB" if index % 3 else "L",
        )
        for index, label in enumerate(labels)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "label_dim"),
    [([0, 1, 2, 1, 0], 3), ([4, 0, 1], 6), ([None] * 4, None), ([], None), ([1, None, 3], None), ([0], 1)],
)
def test_records_writer_matches_the_pandas_path_byte_for_byte(
    labels: list[int | None], label_dim: int | None, tmp_path: Path
) -> None:
    records = _records(labels)
    write_manifest(build_manifest_frame(records, label_dim), tmp_path / "pandas.parquet", REPORT)
    manifest.write_manifest_records(records, label_dim, tmp_path / "arrow.parquet", REPORT)
    assert (tmp_path / "arrow.parquet").read_bytes() == (tmp_path / "pandas.parquet").read_bytes()
    frame = read_manifest(tmp_path / "arrow.parquet")
    assert str(frame["path"].dtype) == "string" and str(frame["label"].dtype) == "Int64"


def test_other_pandas_versions_go_through_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "_installed_major", lambda package: 2)
    records = _records([0, 1])
    manifest.write_manifest_records(records, 2, tmp_path / "m.parquet", REPORT)
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m.parquet"), build_manifest_frame(records, 2))


def test_installed_version_reads_the_dist_info() -> None:
    assert manifest._installed_version("pandas") == pd.__version__
    assert manifest._installed_version("no_such_package_here") is None
