"""Metric names, evaluation of a generator against a dataset, and NVIDIA's `metric-<name>.jsonl` reports.

Names follow one rule: ``<fid|kid><count>[k]_full``. `count` is the number of generated images, a plain integer
(``fid200_full``: 200 images) or thousands with a ``k`` (``fid50k_full``: 50,000, NVIDIA's names). ``_full`` means
the real statistics use the whole dataset (KID: at most 1,000,000 images, as NVIDIA). docs/metrics.md has the
details.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.metric_names import KID_MAX_REAL, MetricKind, MetricSpec, parse_metric_name
from stylegan_core.metrics.cache import (
    DEFAULT_BATCH_SIZE,
    RealStatistics,
    cache_file,
    default_cache_dir,
    real_statistics,
)
from stylegan_core.metrics.fid import frechet_distance_from_features
from stylegan_core.metrics.inception import load_detector
from stylegan_core.metrics.kid import kernel_distance
from stylegan_core.metrics.progress import LineProgress, format_time, metric_announcement
from stylegan_core.metrics.records import file_sha256, provenance, real_stats_key, recorded_result
from stylegan_core.metrics.sampling import Detector, Shard, dataset_label_sampler, generator_features

__all__ = [
    "KID_MAX_REAL",
    "MetricKind",
    "MetricSpec",
    "MetricResults",
    "compute_metrics",
    "parse_metric_name",
    "report_metric",
]


class MetricResults(dict):
    """`{result_name: value}` as NVIDIA's results (e.g. {"fid50k_full": 12.3}), plus how it was computed."""

    def __init__(self, values: dict[str, float], total_time: float, num_gpus: int, reused: bool = False) -> None:
        super().__init__(values)
        self.total_time = total_time
        self.num_gpus = num_gpus
        self.reused = reused
        """True when read back from metric-<name>.jsonl instead of computed."""


def _fid(spec: MetricSpec, real: RealStatistics, fake_features: np.ndarray) -> dict[str, float]:
    return {spec.name: frechet_distance_from_features(fake_features, real.mu, real.sigma)}


def _kid(spec: MetricSpec, real: RealStatistics, fake_features: np.ndarray) -> dict[str, float]:
    return {spec.name: kernel_distance(real.features, fake_features)}


# The one explicit table from metric kind to its formula (no names resolved from strings).
METRIC_FUNCTIONS: dict[MetricKind, Callable[[MetricSpec, RealStatistics, np.ndarray], dict[str, float]]] = {
    "fid": _fid,
    "kid": _kid,
}


def compute_metrics(
    G: torch.nn.Module,
    dataset_path: str | os.PathLike[str],
    names: Sequence[str],
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    detector: Detector | str | os.PathLike[str] | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool | LineProgress = True,
    run_dir: str | os.PathLike[str] | None = None,
    snapshot_path: str | os.PathLike[str] | None = None,
    reuse_recorded: bool = False,
) -> dict[str, MetricResults]:
    """Evaluate `names` for generator G (on `device`) against the dataset; {name: {result_name: value}}.

    Generated images: ψ = 1, random noise, labels of random dataset items, seeded by `seed`. `detector` is a loaded
    detector, a weights path, or None for the default (inception.load_detector). With world_size > 1 every rank must
    call this (torch.distributed initialised); the work is sharded and all ranks get the same results. With `run_dir`
    rank 0 also appends each result to run_dir/metric-<name>.jsonl, with what it was measured on (`records`). With
    `reuse_recorded` (every rank must see run_dir), a metric already recorded there for the same snapshot bytes, real
    statistics, seed and batch size is read back, not recomputed nor appended again (`MetricResults.reused`).
    """
    specs = [parse_metric_name(name) for name in names]
    shard = Shard(rank, world_size)
    if detector is None or isinstance(detector, (str, os.PathLike)):
        detector = load_detector(detector, device)
    dataset = _open_dataset(dataset_path, G)
    try:
        real_counts = {spec.name: _real_count(spec, len(dataset)) for spec in specs}
        with_features = {real_counts[spec.name] for spec in specs if spec.kind == "kid"}
        reals: dict[int, RealStatistics] = {}
        fakes: dict[int, np.ndarray] = {}
        results: dict[str, MetricResults] = {}
        snapshot_sha256 = _snapshot_sha256(run_dir, snapshot_path)
        for spec in specs:
            start = time.time()
            count = real_counts[spec.name]
            wanted = provenance(snapshot_sha256, _stats_key(dataset, detector, count), seed, batch_size)
            recorded = recorded_result(run_dir, spec.name, wanted) if reuse_recorded and run_dir else None
            if recorded is not None:
                results[spec.name] = MetricResults(recorded, 0.0, world_size, reused=True)
                _say(progress, shard, f"{spec.name}: reusing the value recorded for this snapshot and real statistics")
                continue
            cached = count in reals or _cached(cache_dir, dataset, detector, count)
            _announce(progress, spec, count, cached, shard, torch.device(device).type)
            if count not in reals:
                reals[count] = real_statistics(
                    dataset_path, detector, cache_dir, max_items=count, need_features=count in with_features,
                    batch_size=batch_size, shard=shard, progress=progress,
                )  # fmt: skip
            if spec.num_gen not in fakes:
                fakes[spec.num_gen] = generator_features(
                    G, detector, num_images=spec.num_gen, labels=dataset_label_sampler(dataset),
                    batch_size=batch_size, seed=seed, shard=shard, progress=progress,
                )  # fmt: skip
            values = METRIC_FUNCTIONS[spec.kind](spec, reals[count], fakes[spec.num_gen])
            results[spec.name] = MetricResults(values, time.time() - start, world_size)
            if run_dir is not None and rank == 0:
                report_metric(run_dir, spec.name, results[spec.name], snapshot_path, provenance=wanted)
    finally:
        dataset.close()
    return results


def _cached(cache_dir, dataset: ImageDataset, detector: Detector, count: int) -> bool:
    sha256 = getattr(detector, "sha256", None)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return sha256 is not None and cache_file(folder, dataset.content_hash, sha256, count).is_file()


def _snapshot_sha256(run_dir, snapshot_path) -> str | None:
    if run_dir is None or snapshot_path is None or not Path(snapshot_path).is_file():
        return None
    return file_sha256(snapshot_path)


def _stats_key(dataset: ImageDataset, detector: Detector, count: int) -> str | None:
    sha256 = getattr(detector, "sha256", None)
    return real_stats_key(dataset.content_hash, sha256, count) if sha256 else None


def _announce(
    progress: bool | LineProgress, spec: MetricSpec, num_real: int, cached: bool, shard: Shard, device_type: str
) -> None:
    """Say what is about to take minutes or hours: image counts and an estimated time (rank 0 only)."""
    _say(progress, shard, metric_announcement(spec.name, spec.num_gen, num_real, cached, device_type))


def _say(progress: bool | LineProgress, shard: Shard, line: str) -> None:
    if progress is False or shard.rank != 0:
        return
    if isinstance(progress, LineProgress):
        progress.emit(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _real_count(spec: MetricSpec, dataset_size: int) -> int:
    return dataset_size if spec.max_real is None else min(dataset_size, spec.max_real)


def _open_dataset(dataset_path: str | os.PathLike[str], G: torch.nn.Module) -> ImageDataset:
    dataset = ImageDataset(dataset_path, use_labels=G.c_dim != 0, xflip=False)
    problem = None
    if dataset.image_shape[1:] != (G.img_resolution, G.img_resolution):
        height, width = dataset.image_shape[1:]
        problem = f"images are {width}x{height}, the generator makes {G.img_resolution}x{G.img_resolution}"
    elif dataset.num_channels != G.img_channels:
        problem = f"images have {dataset.num_channels} channels, the generator makes {G.img_channels}"
    elif dataset.label_dim != G.c_dim:
        problem = f"labels have {dataset.label_dim} dimensions, the generator expects c_dim={G.c_dim}"
    if problem is not None:
        dataset.close()
        raise ValueError(f"{dataset_path}: {problem}")
    return dataset


def report_metric(
    run_dir: str | os.PathLike[str],
    name: str,
    result: dict[str, float],
    snapshot_path: str | os.PathLike[str] | None = None,
    *,
    total_time: float | None = None,
    num_gpus: int | None = None,
    provenance: dict[str, object] | None = None,
) -> Path:
    """Append one line in NVIDIA's format to run_dir/metric-<name>.jsonl and return that file.

    `total_time` and `num_gpus` default to those carried by a MetricResults (else 0 s and 1). The snapshot is
    written relative to run_dir, as NVIDIA's `snapshot_pkl`.
    """
    run_dir = Path(run_dir)
    total_time = float(total_time if total_time is not None else getattr(result, "total_time", 0.0))
    snapshot = None
    if snapshot_path is not None:
        snapshot = os.path.relpath(snapshot_path, run_dir)
    line = {
        "results": {key: float(value) for key, value in result.items()},
        "metric": name,
        "total_time": total_time,
        "total_time_str": format_time(total_time),
        "num_gpus": int(num_gpus if num_gpus is not None else getattr(result, "num_gpus", 1)),
        "snapshot_pkl": snapshot,
        "timestamp": time.time(),
        **(provenance or {}),
    }
    path = run_dir / f"metric-{name}.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    # An append-only log: one write of one complete line (what NVIDIA does), not a temp file + rename.
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")
    return path


