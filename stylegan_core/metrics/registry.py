"""Metric names, evaluation of a generator against a dataset, and NVIDIA's `metric-<name>.jsonl` reports.

Names (`metric_names.py`): ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``is50k``, ``ppl2_wend`` and the
other NVIDIA names, and small variants in the same grammar (``fid200_full``, ``pr1k3_full``, ``is1k``,
``ppl2_1k_wend``). docs/metrics.md has the details.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.io.atomic import sha256_file
from stylegan_core.metric_names import KID_MAX_REAL, DetectorName, MetricKind, MetricSpec, parse_metric_name
from stylegan_core.metrics.cache import (
    DEFAULT_BATCH_SIZE,
    RealStatistics,
    cache_file,
    default_cache_dir,
    real_statistics,
)
from stylegan_core.metrics.feature_cache import RealFeatures, features_cache_file, real_features
from stylegan_core.metrics.fid import frechet_distance_from_features
from stylegan_core.metrics.inception import (
    IS_NEEDS_NVIDIA,
    DetectorNotFoundError,
    InceptionDetector,
    InceptionProbabilities,
    load_detector,
    load_probabilities_detector,
)
from stylegan_core.metrics.inception_score import inception_score
from stylegan_core.metrics.kid import kernel_distance
from stylegan_core.metrics.ppl import BATCH_SIZE as PPL_BATCH_SIZE
from stylegan_core.metrics.ppl import perceptual_path_length
from stylegan_core.metrics.precision_recall import VGG16Features, precision_recall
from stylegan_core.metrics.progress import (
    LineProgress,
    estimate_seconds,
    format_duration,
    format_time,
    metric_announcement,
    say,
)
from stylegan_core.metrics.records import provenance, real_stats_key, recorded_result
from stylegan_core.metrics.sampling import Detector, Shard, dataset_label_sampler, generator_features
from stylegan_core.metrics.vgg import VGG16, load_vgg16

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


@dataclass
class _Evaluation:
    """What one compute_metrics call shares between its metrics: inputs, and features computed once."""

    G: torch.nn.Module
    dataset: ImageDataset
    dataset_path: str | os.PathLike[str]
    cache_dir: str | os.PathLike[str] | None
    batch_size: int
    seed: int
    shard: Shard
    progress: bool | LineProgress
    with_features: set[tuple[str, int]] = field(default_factory=set)
    """(detector, count) whose real features KID needs: computed once, with the statistics and the features."""
    reals: dict[tuple[str, int], RealStatistics] = field(default_factory=dict)
    pr_reals: dict[tuple[str, int], RealFeatures] = field(default_factory=dict)
    """PR's real features: a cache entry of their own, without the D x D covariance only FID reads."""
    fakes: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def real(self, detector: Detector, count: int) -> RealStatistics:
        key = (_detector_id(detector), count)
        if key not in self.reals:
            self.reals[key] = real_statistics(
                self.dataset_path, detector, self.cache_dir, max_items=count, need_features=key in self.with_features,
                batch_size=self.batch_size, shard=self.shard, progress=self.progress,
            )  # fmt: skip
        return self.reals[key]

    def real_only_features(self, detector: Detector, count: int) -> RealFeatures:
        key = (_detector_id(detector), count)
        if key not in self.pr_reals:
            self.pr_reals[key] = real_features(
                self.dataset_path, detector, self.cache_dir, max_items=count, batch_size=self.batch_size,
                shard=self.shard, progress=self.progress,
            )  # fmt: skip
        return self.pr_reals[key]

    def fake(self, detector: Detector, num_gen: int) -> np.ndarray:
        key = (_detector_id(detector), num_gen)
        if key not in self.fakes:
            self.fakes[key] = generator_features(
                self.G, detector, num_images=num_gen, labels=dataset_label_sampler(self.dataset),
                batch_size=self.batch_size, seed=self.seed, shard=self.shard, progress=self.progress,
            )  # fmt: skip
        return self.fakes[key]


def _detector_id(detector: Detector) -> str:
    return f"{type(detector).__name__}:{getattr(detector, 'sha256', id(detector))}"


def _fid(run: _Evaluation, spec: MetricSpec, detector: Detector, count: int) -> dict[str, float]:
    real = run.real(detector, count)
    return {spec.name: frechet_distance_from_features(run.fake(detector, spec.num_gen), real.mu, real.sigma)}


def _kid(run: _Evaluation, spec: MetricSpec, detector: Detector, count: int) -> dict[str, float]:
    real = run.real(detector, count)
    return {spec.name: kernel_distance(real.features, run.fake(detector, spec.num_gen))}


def _pr(run: _Evaluation, spec: MetricSpec, detector: Detector, count: int) -> dict[str, float]:
    real = run.real_only_features(detector, count)
    device = getattr(detector, "device", "cpu")
    precision, recall = precision_recall(real.features, run.fake(detector, spec.num_gen), spec.nhood_size,
                                         device=device)  # fmt: skip
    precision_key, recall_key = spec.result_keys
    return {precision_key: precision, recall_key: recall}


def _is(run: _Evaluation, spec: MetricSpec, detector: Detector, count: int) -> dict[str, float]:
    mean, std = inception_score(run.fake(detector, spec.num_gen))
    mean_key, std_key = spec.result_keys
    return {mean_key: mean, std_key: std}


def _ppl(run: _Evaluation, spec: MetricSpec, detector: Detector, count: int) -> dict[str, float]:
    value = perceptual_path_length(run.G, detector, spec, dataset_label_sampler(run.dataset), seed=run.seed,
                                   shard=run.shard, progress=run.progress)  # fmt: skip
    return {spec.name: value}


# The one explicit table from metric kind to its formula (no names resolved from strings).
METRIC_FUNCTIONS: dict[MetricKind, Callable[[_Evaluation, MetricSpec, Detector, int], dict[str, float]]] = {
    "fid": _fid,
    "kid": _kid,
    "pr": _pr,
    "is": _is,
    "ppl": _ppl,
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
    vgg16: VGG16 | str | os.PathLike[str] | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool | LineProgress = True,
    run_dir: str | os.PathLike[str] | None = None,
    snapshot_path: str | os.PathLike[str] | None = None,
    reuse_recorded: bool = False,
) -> dict[str, MetricResults]:
    """Evaluate `names` for generator G (on `device`) against the dataset; {name: {result_name: value}}.

    Generated images: ψ = 1, random noise, labels of random dataset items, seeded by `seed`. `detector` is the
    Inception network (FID, KID, IS): loaded, a weights path, or None for the default (inception.load_detector;
    IS needs NVIDIA's file). `vgg16` is NVIDIA's VGG16 (PR, PPL): loaded, a path, or None for $STYLEGAN_VGG16.
    Every detector the names need is loaded before any work starts, so a missing one fails at once. With
    world_size > 1 every rank must call this (torch.distributed initialised); the work is sharded and all ranks
    get the same results. With `run_dir` rank 0 also appends each result to run_dir/metric-<name>.jsonl, with what
    it was measured on (`records`). With `reuse_recorded` (every rank must see run_dir), a metric already recorded
    there for the same snapshot bytes, real statistics (IS/PPL: detector), seed and batch size is read back, not
    recomputed nor appended again (`MetricResults.reused`).
    """
    specs = [parse_metric_name(name) for name in names]
    shard = Shard(rank, world_size)
    detectors = load_metric_detectors({spec.detector for spec in specs}, detector, vgg16, device)
    dataset = _open_dataset(dataset_path, G)
    try:
        run = _Evaluation(G, dataset, dataset_path, cache_dir, batch_size, seed, shard, progress)
        for spec in specs:
            if spec.kind == "kid":
                run.with_features.add((_detector_id(detectors[spec.detector]), _real_count(spec, len(dataset))))
        results: dict[str, MetricResults] = {}
        snapshot_sha256 = _snapshot_sha256(run_dir, snapshot_path)
        for spec in specs:
            start = time.time()
            spec_detector = detectors[spec.detector]
            count = _real_count(spec, len(dataset))
            used_batch = PPL_BATCH_SIZE if spec.kind == "ppl" else batch_size
            wanted = provenance(snapshot_sha256, _stats_key(dataset, spec_detector, count), seed, used_batch)
            recorded = recorded_result(run_dir, spec.name, wanted) if reuse_recorded and run_dir else None
            if recorded is not None:
                results[spec.name] = MetricResults(recorded, 0.0, world_size, reused=True)
                _say(progress, shard, f"{spec.name}: reusing the value recorded for this snapshot and real statistics")
                continue
            in_memory = run.pr_reals if spec.kind == "pr" else run.reals
            cached = count == 0 or (_detector_id(spec_detector), count) in in_memory
            cached = cached or _cached(cache_dir, dataset, spec_detector, count, spec.kind)
            _announce(progress, spec, count, cached, shard, torch.device(device).type)
            values = METRIC_FUNCTIONS[spec.kind](run, spec, spec_detector, count)
            results[spec.name] = MetricResults(values, time.time() - start, world_size)
            if run_dir is not None and rank == 0:
                report_metric(run_dir, spec.name, results[spec.name], snapshot_path, provenance=wanted)
    finally:
        dataset.close()
    return results


def load_metric_detectors(
    needed: set[DetectorName],
    inception: Detector | str | os.PathLike[str] | None,
    vgg16: VGG16 | str | os.PathLike[str] | None,
    device: torch.device | str,
) -> dict[DetectorName, Detector]:
    """The detectors `needed` (fid/kid: Inception features, is: its probabilities, pr: VGG16 features, ppl: LPIPS)."""
    loaded: dict[DetectorName, Detector] = {}
    if needed & {"inception", "inception_logits"}:
        if inception is None or isinstance(inception, (str, os.PathLike)):
            if "inception_logits" in needed:
                loaded["inception_logits"] = load_probabilities_detector(inception, device)
                inception = loaded["inception_logits"].inception
            else:
                inception = load_detector(inception, device)
        elif "inception_logits" in needed:
            if not isinstance(inception, InceptionDetector):
                raise DetectorNotFoundError(IS_NEEDS_NVIDIA.format(source=f"{type(inception).__name__} has none"))
            loaded["inception_logits"] = InceptionProbabilities(inception)
        loaded["inception"] = inception
    if needed & {"vgg16", "vgg16_features"}:
        network = vgg16 if isinstance(vgg16, torch.nn.Module) else load_vgg16(vgg16, device)
        loaded["vgg16"] = network
        if "vgg16_features" in needed:
            loaded["vgg16_features"] = VGG16Features(network)
    return loaded


def _cached(cache_dir, dataset: ImageDataset, detector: Detector, count: int, kind: MetricKind) -> bool:
    """Whether the real pass will be read from disk (for the announcement; PR also reuses an older stats entry)."""
    sha256 = getattr(detector, "sha256", None)
    if sha256 is None:
        return False
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stats = cache_file(folder, dataset.content_hash, sha256, count)
    if kind == "pr":
        return features_cache_file(folder, dataset.content_hash, sha256, count).is_file() or stats.is_file()
    return stats.is_file()


def _snapshot_sha256(run_dir, snapshot_path) -> str | None:
    if run_dir is None or snapshot_path is None or not Path(snapshot_path).is_file():
        return None
    return sha256_file(snapshot_path)


def _stats_key(dataset: ImageDataset, detector: Detector, count: int) -> str | None:
    """The real-statistics cache key; for metrics without real images (IS, PPL) the detector's sha256 instead."""
    sha256 = getattr(detector, "sha256", None)
    if not sha256:
        return None
    return real_stats_key(dataset.content_hash, sha256, count) if count else f"detector-{sha256}"


def _announce(
    progress: bool | LineProgress, spec: MetricSpec, num_real: int, cached: bool, shard: Shard, device_type: str
) -> None:
    """Say what is about to take minutes or hours: image counts and an estimated time (rank 0 only)."""
    if spec.kind in ("fid", "kid", "pr"):
        _say(progress, shard, metric_announcement(spec.name, spec.num_gen, num_real, cached, device_type))
        return
    # IS and PPL use no real images; PPL runs G and VGG16 on two images per sample (the estimate is Inception's
    # CPU rate, an order of magnitude only).
    images = spec.num_gen * (2 if spec.kind == "ppl" else 1)
    what = f"{spec.num_gen} path samples ({images} images)" if spec.kind == "ppl" else f"{images} generated images"
    seconds = estimate_seconds(images, device_type)
    when = f"about {format_duration(seconds)} on {device_type}" if seconds is not None else "estimate follows"
    _say(progress, shard, f"Evaluating {spec.name}: {what}, {when}...")


def _say(progress: bool | LineProgress, shard: Shard, line: str) -> None:
    if shard.rank == 0:
        say(progress, line)


def _real_count(spec: MetricSpec, dataset_size: int) -> int:
    count = dataset_size if spec.max_real is None else min(dataset_size, spec.max_real)
    if spec.kind == "pr" and count <= spec.nhood_size:
        raise ValueError(f"{spec.name}: k={spec.nhood_size} needs more than {spec.nhood_size} real images, got {count}")
    return count


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
