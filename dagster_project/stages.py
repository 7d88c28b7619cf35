"""What each asset does, one function per asset: resolve paths, call `stylegan_core`, shape the metadata.

These functions know the artifact layout (`StyleGANResource`) but nothing of Dagster's execution machinery except
the training launch, which needs the Pipes client and the asset context.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from dagster_project import metadata as md
from dagster_project import post_training, views
from dagster_project import specs as spec_utils
from dagster_project.partitions import TrainingPartition
from dagster_project.resources import REPO_ROOT, StyleGANResource
from dagster_project.training import (
    DatasetFacts,
    current_snapshot,
    plan_training,
    prepare_run_dir,
    ray_driver_command,
    record_current_run,
    torchrun_command,
    worker_env,
    write_json_atomic,
)
from stylegan_core.io.atomic import atomic_outputs, sha256_file, write_bytes_atomic

if TYPE_CHECKING:
    from stylegan_core.spec import DatasetSpec

SAMPLE_COLUMNS = 8
MAX_SAMPLE_ROWS = 16
SAMPLE_TRUNCATIONS = (1.0, 0.7)


@dataclass(frozen=True)
class StageResult:
    metadata: dict[str, Any]
    version: str
    """Content-derived data version (sha256 hex)."""
    values: dict[str, float] = field(default_factory=dict)


# ---- raw_images and dataset ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawImages:
    count: int
    source: Path
    fingerprint: str
    metadata: dict[str, Any]


def inventory_raw_images(spec: DatasetSpec, stylegan: StyleGANResource) -> RawImages:
    from stylegan_core.data.inventory import inventory_source

    source = spec_utils.source_path(spec, stylegan.root)
    inventory = inventory_source(source, **spec_utils.inventory_options(spec), workers=stylegan.ingest_workers())
    table_path = stylegan.root / spec.name / "raw_images.parquet"
    with atomic_outputs(table_path) as (temp,):
        inventory.frame.to_parquet(temp, index=False)
    frame = inventory.frame
    problems = frame[frame["problem"].notna()]
    metadata: dict[str, Any] = {
        "images": inventory.count,
        "problem_files": len(problems),
        "source": md.path(inventory.root),
        "inventory": md.path(table_path),
        "fingerprint": inventory.fingerprint,
        "total_mb": round(float(frame["size_bytes"].sum()) / 1e6, 2),
        "sizes": md.histogram(
            Counter(f"{w}x{h}" for w, h in frame[["width", "height"]].dropna().itertuples(index=False)), "size"
        ),
    }
    if inventory.labelled:
        names = inventory.class_names
        counts = Counter(names[int(v)] if names else int(v) for v in frame["label"].dropna())
        metadata["classes"] = md.histogram(counts)
    if len(problems):
        metadata["problems"] = md.table(problems[["path", "problem"]].to_dict("records"),
                                        {"path": "string", "problem": "string"})  # fmt: skip
    return RawImages(inventory.count, inventory.root, inventory.fingerprint, metadata)


def dataset_zip(stylegan: StyleGANResource, spec_name: str, resolution: int) -> Path:
    return stylegan.dataset_dir(spec_name, resolution) / f"{spec_name}-{resolution}.zip"


@dataclass(frozen=True)
class IngestedDataset:
    count: int
    zip_path: Path
    content_hash: str
    metadata: dict[str, Any]


def ingest_dataset(spec: DatasetSpec, resolution: int, stylegan: StyleGANResource) -> IngestedDataset:
    from stylegan_core.data.ingest import prepare_from_spec

    dest = dataset_zip(stylegan, spec.name, resolution)
    validation_record(dest).unlink(missing_ok=True)  # new content is unvalidated until its check runs
    result = prepare_from_spec(
        spec, resolution, dest, spec_utils.work_dir(spec, stylegan.root), workers=stylegan.ingest_workers()
    )
    preview_png, caption = views.dataset_preview(dest, result.class_names)
    preview = dest.with_name(f"{dest.stem}.preview.png")
    write_bytes_atomic(preview, preview_png)
    labels = _label_counts(result.manifest_path, result.class_names)
    metadata: dict[str, Any] = {
        "images": result.count,
        "resolution": result.resolution,
        "channels": result.channels,
        "label_dim": result.label_dim,
        "content_hash": result.content_hash,
        "skipped": len(result.skipped),
        "zip": md.path(result.zip_path),
        "manifest": md.path(result.manifest_path),
        "zip_mb": round(result.zip_path.stat().st_size / 1e6, 2),
        "preview": md.png_markdown(preview_png, "dataset preview", caption),
        "preview_path": md.path(preview),
    }
    if labels:
        metadata["classes"] = md.histogram(labels)
    if result.skipped:
        metadata["skipped_files"] = md.table([{"path": s.path, "reason": s.reason} for s in result.skipped],
                                             {"path": "string", "reason": "string"})  # fmt: skip
    return IngestedDataset(result.count, result.zip_path, result.content_hash, metadata)


def _label_counts(manifest_path: Path, class_names: tuple[str, ...] | None) -> Counter:
    from stylegan_core.data.manifest import read_manifest

    labels = read_manifest(manifest_path)["label"].dropna()
    return Counter(class_names[int(v)] if class_names else int(v) for v in labels)


class DatasetNotValidatedError(RuntimeError):
    """Training was asked for on a dataset whose blocking validation has not passed."""


def validation_record(zip_path: Path) -> Path:
    return zip_path.with_name(f"{zip_path.stem}.validation.json")


def record_validation(facts: DatasetFacts, passed: bool, summary: str) -> None:
    """Remember the verdict of the dataset check for this exact content (read by the training gate)."""
    write_json_atomic(validation_record(facts.zip_path), {"content_hash": facts.content_hash, "passed": passed,
                                                          "summary": summary})  # fmt: skip


def require_validated(facts: DatasetFacts) -> None:
    """The gate across runs: `dataset` (resolution) and `network` (config|resolution) never share a run, so the
    blocking check alone cannot stop a later training run; the check's recorded verdict must match the content."""
    path = validation_record(facts.zip_path)
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DatasetNotValidatedError(
            f"{facts.zip_path} has not been validated; materialise its `dataset` asset (the blocking check "
            "`dataset_valid` runs with it) before training"
        ) from None
    if verdict.get("content_hash") != facts.content_hash:
        raise DatasetNotValidatedError(f"{facts.zip_path} changed since it was validated; re-materialise `dataset`")
    if not verdict.get("passed"):
        raise DatasetNotValidatedError(f"{facts.zip_path} failed validation ({verdict.get('summary')}); "
                                       "fix the source or the spec and re-materialise `dataset`")  # fmt: skip


def dataset_facts(spec: DatasetSpec, resolution: int, stylegan: StyleGANResource) -> DatasetFacts:
    """The materialised dataset of a resolution partition (from its manifest report), or a clear error."""
    from stylegan_core.data.ingest import manifest_path_for
    from stylegan_core.data.manifest import read_manifest_report

    zip_path = dataset_zip(stylegan, spec.name, resolution)
    manifest = manifest_path_for(zip_path)
    if not zip_path.is_file() or not manifest.is_file():
        raise FileNotFoundError(f"{zip_path}: dataset '{spec.name}' at {resolution} px is not materialised yet; "
                                "materialise its `dataset` asset first")  # fmt: skip
    report = read_manifest_report(manifest)
    return DatasetFacts(zip_path, manifest, report["content_hash"], int(report["channels"]), int(report["label_dim"]))


# ---- real_features -------------------------------------------------------------------------------------------------


def real_feature_statistics(
    facts: DatasetFacts, stylegan: StyleGANResource, log: Callable[[str], None] | None = None
) -> StageResult:
    """All real images' Inception features (enough for every `*_full` FID and KID), cached by content hash.

    `log` (the run log) receives progress lines at intervals; without it the work is silent."""
    from stylegan_core.metrics import load_detector, real_statistics
    from stylegan_core.metrics.cache import cache_file
    from stylegan_core.metrics.progress import LineProgress

    detector = load_detector(None, stylegan.torch_device())
    progress = LineProgress(log) if log is not None else False
    stats = real_statistics(facts.zip_path, detector, stylegan.features_cache_dir(), need_features=True,
                            progress=progress)  # fmt: skip
    path = cache_file(stylegan.features_cache_dir(), stats.content_hash, stats.detector_sha256, stats.num_items)
    metadata = {
        "images": stats.num_items,
        "feature_dim": int(stats.mu.shape[0]),
        "dataset_content_hash": stats.content_hash,
        "detector_sha256": stats.detector_sha256,
        "cache_file": md.path(path),
    }
    version = md.sha256_text("real-features", stats.content_hash, stats.detector_sha256, str(stats.num_items))
    return StageResult(metadata, version)


# ---- network -------------------------------------------------------------------------------------------------------


def launch_training(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    partition: TrainingPartition,
    stylegan: StyleGANResource,
    client: Any,
) -> dg.MaterializeResult:
    """Plan the run directory, then run torchrun (or the Ray driver) through Pipes; it reports the materialisation."""
    facts = dataset_facts(spec, partition.resolution, stylegan)
    require_validated(facts)
    preset, overrides = spec_utils.config_of(spec, partition.config)
    # As NVIDIA's train.py: the spec's metrics are evaluated at every snapshot (metric-<name>.jsonl rows, the FID
    # curve of the run); the `metrics` asset then reuses the final snapshot's rows and plots the history.
    overrides = {**overrides, "metrics": list(spec.metrics) if stylegan.snapshot_metrics else []}
    run_root = stylegan.run_root(spec.name, partition.config, partition.resolution)
    where = f"{spec.spec_path}: configs.{partition.config}"
    plan = plan_training(run_root, preset, overrides, partition.resolution, stylegan.world_size(), facts, where)
    prepare_run_dir(plan, facts, partition.key)
    context.log.info(f"{plan.mode} run in {plan.run_dir}" + (f" from {plan.resume}" if plan.resume else ""))
    if stylegan.launcher_name() == "ray":
        command = ray_driver_command(stylegan, plan.run_dir)
    else:
        command = torchrun_command(stylegan, plan.run_dir)
        for node_rank in range(1, stylegan.nnodes):
            other = torchrun_command(stylegan, plan.run_dir, node_rank)
            context.log.info(f"start on node {node_rank}: " + " ".join(other))
    env = {**worker_env(), "STYLEGAN_CACHE_DIR": str(stylegan.cache_root())}
    if stylegan.vgg16:  # PR and PPL at every snapshot need VGG16 in the workers too
        env["STYLEGAN_VGG16"] = stylegan.vgg16
    invocation = client.run(context=context, command=command, env=env, cwd=str(REPO_ROOT))
    result = invocation.get_materialize_result()
    snapshot = str(result.metadata["snapshot"].value)
    record_current_run(run_root, plan.run_dir, snapshot)
    from stylegan_core.cli.doctor import machine_summary  # `stylegan doctor`'s quick findings (no build, no GPU test)

    extra: dict[str, Any] = {"mode": plan.mode, "dataset_content_hash": facts.content_hash, "preset": preset,
                             "machine": dg.MetadataValue.json(machine_summary())}  # fmt: skip
    losses = views.loss_chart(plan.run_dir / "stats.jsonl")
    if losses is not None:
        extra["loss_curves"] = md.png_markdown(losses, "losses per tick", "from stats.jsonl")
    for kind, png in views.metric_charts(views.metric_history(plan.run_dir, spec.metrics)).items():
        extra[f"{kind}_curve"] = md.png_markdown(png, f"{kind.upper()} at each snapshot")
    return dg.MaterializeResult(metadata={**result.metadata, **extra}, data_version=result.data_version)


# ---- metrics and samples -------------------------------------------------------------------------------------------


def measure_metrics(
    spec: DatasetSpec,
    partition: TrainingPartition,
    stylegan: StyleGANResource,
    log: Callable[[str], None] | None = None,
) -> StageResult:
    """Metrics of the current snapshot; values already recorded for the same snapshot and real statistics (by
    training, which evaluates at every snapshot, or an earlier materialisation) are reused, not appended again.
    The run's history of every evaluated snapshot becomes charts against kimg. `log` receives progress lines."""
    from stylegan_core.io.snapshot import load_generator
    from stylegan_core.metrics import compute_metrics
    from stylegan_core.metrics.progress import LineProgress

    run_dir, snapshot = current_snapshot(stylegan.run_root(spec.name, partition.config, partition.resolution))
    facts = dataset_facts(spec, partition.resolution, stylegan)
    device = stylegan.torch_device()
    G = load_generator(snapshot, "G_ema", device)
    names = list(spec.metrics)
    results = compute_metrics(G, facts.zip_path, names, device, stylegan.features_cache_dir(),
                              progress=LineProgress(log) if log is not None else False,
                              run_dir=run_dir, snapshot_path=snapshot, reuse_recorded=True,
                              vgg16=stylegan.vgg16 or None)  # fmt: skip
    values = {key: float(value) for result in results.values() for key, value in result.items()}
    history = views.metric_history(run_dir, names)
    metadata: dict[str, Any] = {
        **md.floats(values),
        "snapshot": md.path(snapshot),
        "kimg": views.snapshot_kimg(snapshot) or 0.0,
        "reports": md.names(f"metric-{name}.jsonl" for name in names),
        "run_dir": md.path(run_dir),
        "seconds": round(sum(getattr(r, "total_time", 0.0) for r in results.values()), 2),
        "reused": md.names(name for name, result in results.items() if getattr(result, "reused", False)),
        "history": md.table(
            [{"kimg": x, "metric": key, "value": y} for key, points in history.items() for x, y in points],
            {"kimg": "float", "metric": "string", "value": "float"},
        ),
    }
    for kind, png in views.metric_charts(history).items():
        metadata[f"{kind}_curve"] = md.png_markdown(png, f"{kind.upper()} against kimg", "one point per snapshot")
    version = md.sha256_text("metrics", sha256_file(snapshot), json.dumps(values, sort_keys=True))
    return StageResult(metadata, version, values)


def render_samples(spec: DatasetSpec, partition: TrainingPartition, stylegan: StyleGANResource) -> StageResult:
    from stylegan_core.export.grid import write_sample_grids
    from stylegan_core.io.snapshot import load_generator

    run_dir, snapshot = current_snapshot(stylegan.run_root(spec.name, partition.config, partition.resolution))
    G = load_generator(snapshot, "G_ema", stylegan.torch_device())
    rows = min(G.c_dim, MAX_SAMPLE_ROWS) if G.c_dim else 4  # one row per class when conditional
    out_dir = run_dir / "samples" / snapshot.stem
    paths = write_sample_grids(G, out_dir, (SAMPLE_COLUMNS, rows), truncation_psis=SAMPLE_TRUNCATIONS)
    metadata: dict[str, Any] = {"snapshot": md.path(snapshot), "seeds": f"0-{SAMPLE_COLUMNS * rows - 1}"}
    names = views.class_names(dataset_facts(spec, partition.resolution, stylegan).manifest_path) if G.c_dim else None
    caption = "one row per class" if G.c_dim else ""
    for psi, path in zip(SAMPLE_TRUNCATIONS, paths, strict=True):
        png = views.sample_grid(path, rows, names, G.c_dim)
        metadata[f"grid_psi{psi:.2f}"] = md.png_markdown(png, f"ψ = {psi:g}, {snapshot.stem}", caption)
        metadata[f"grid_psi{psi:.2f}_path"] = md.path(path)
    class_idx = 0 if G.c_dim else None  # style mixing and the video need one class; the grids show them all
    mixing, mixing_grid = post_training.style_mixing_metadata(G, out_dir, class_idx, names)
    metadata |= mixing | post_training.video_metadata(G, out_dir, class_idx, names)
    version = md.sha256_text("samples", *(sha256_file(path) for path in [*paths, mixing_grid]))
    return StageResult(metadata, version)
