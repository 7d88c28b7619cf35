"""Issue 16: metric rows reference the exact snapshot bytes; unchanged inputs recompute nothing."""

from __future__ import annotations

import json

import torch
from metrics_support import CountingDetector, random_images, tiny_generator, write_zip

from stylegan_core.io.atomic import sha256_file
from stylegan_core.metrics import compute_metrics


def _rows(run_dir, name):
    return [json.loads(line) for line in (run_dir / f"metric-{name}.jsonl").read_text().splitlines()]


def test_same_snapshot_and_real_statistics_reuse_the_recorded_value(tmp_path):
    G = tiny_generator(c_dim=3)
    data = write_zip(tmp_path / "data.zip", random_images(12, resolution=16), labels=[i % 3 for i in range(12)])
    run_dir = tmp_path / "run"
    snapshot = run_dir / "snapshots" / "network-snapshot-000000.008.pt"
    snapshot.parent.mkdir(parents=True)
    torch.save({"weights": torch.ones(3)}, snapshot)
    detector = CountingDetector()
    kwargs = dict(cache_dir=tmp_path / "cache", batch_size=8, detector=detector, progress=False, run_dir=run_dir,
                  snapshot_path=snapshot, reuse_recorded=True)  # fmt: skip
    first = compute_metrics(G, data, ["fid20_full", "kid20_full"], **kwargs)
    assert detector.images_seen == 12 + 20
    (row,) = _rows(run_dir, "fid20_full")
    assert row["snapshot_sha256"] == sha256_file(snapshot) and row["real_stats"].startswith("real-")

    again = compute_metrics(G, data, ["fid20_full", "kid20_full"], **kwargs)  # re-materialised, nothing changed
    assert detector.images_seen == 12 + 20  # no image generated or embedded
    assert {name: dict(result) for name, result in again.items()} == {n: dict(r) for n, r in first.items()}
    assert all(result.reused for result in again.values())
    assert len(_rows(run_dir, "fid20_full")) == len(_rows(run_dir, "kid20_full")) == 1  # not appended again

    other_seed = compute_metrics(G, data, ["fid20_full"], **{**kwargs, "seed": 1})
    assert not other_seed["fid20_full"].reused and detector.images_seen == 12 + 20 + 20

    torch.save({"weights": torch.zeros(3)}, snapshot)  # new bytes under the same name: measured again
    changed = compute_metrics(G, data, ["fid20_full"], **kwargs)
    assert not changed["fid20_full"].reused and detector.images_seen == 12 + 20 + 40
    assert [row["snapshot_sha256"] for row in _rows(run_dir, "fid20_full")][-1] == sha256_file(snapshot)


def test_rows_without_provenance_or_damaged_lines_are_not_reused(tmp_path):
    G = tiny_generator()
    data = write_zip(tmp_path / "data.zip", random_images(6, resolution=16))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    snapshot = run_dir / "net.pt"
    snapshot.write_bytes(b"weights")
    nvidia_row = {"results": {"fid8_full": 1.0}, "metric": "fid8_full", "snapshot_pkl": "net.pt"}
    (run_dir / "metric-fid8_full.jsonl").write_text(json.dumps(nvidia_row) + "\n{not json\n")
    detector = CountingDetector()
    result = compute_metrics(G, data, ["fid8_full"], cache_dir=tmp_path / "cache", detector=detector, progress=False,
                             run_dir=run_dir, snapshot_path=snapshot, reuse_recorded=True)  # fmt: skip
    assert not result["fid8_full"].reused and detector.images_seen == 6 + 8
