"""What a `metric-<name>.jsonl` row was measured on, and finding a recorded value again instead of recomputing it.

NVIDIA's row names the snapshot only by its path. Ours adds what the value depends on: `snapshot_sha256` (the exact
weights), `real_stats` (the real-statistics cache key: dataset content hash, detector sha256, image count), and the
generation `seed` and detector `batch_size` (generated batch b is drawn from seed and b). Same four, same value, so
re-materialising metrics of an unchanged snapshot against unchanged real statistics reads the row back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stylegan_core.metrics.cache import cache_file


def real_stats_key(content_hash: str, detector_sha256: str, num_items: int) -> str:
    """The real-statistics cache key (the cache file's stem), independent of where the cache lives."""
    return cache_file(Path("."), content_hash, detector_sha256, num_items).stem


def provenance(snapshot_sha256: str | None, real_stats: str | None, seed: int, batch_size: int) -> dict[str, object]:
    return {"snapshot_sha256": snapshot_sha256, "real_stats": real_stats, "seed": int(seed), "batch_size": batch_size}


def recorded_result(run_dir: str | os.PathLike[str], name: str, wanted: dict[str, object]) -> dict[str, float] | None:
    """The results of the last row of run_dir/metric-<name>.jsonl measured on `wanted` (a `provenance`), if any.

    Rows without provenance (NVIDIA's, or older ours) never match; unreadable lines are skipped, not trusted.
    """
    if wanted.get("snapshot_sha256") is None or wanted.get("real_stats") is None:
        return None
    path = Path(run_dir) / f"metric-{name}.jsonl"
    if not path.is_file():
        return None
    found = None
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or row.get("metric") != name or not isinstance(row.get("results"), dict):
                continue
            if all(row.get(key) == value for key, value in wanted.items()):
                try:
                    found = {str(key): float(value) for key, value in row["results"].items()}
                except (TypeError, ValueError):
                    continue
    return found
