"""One asset group per dataset spec: raw_images → dataset → real_features → network → metrics, samples.

Asset keys are prefixed with the spec name (`shapes/dataset`). Partitions: `dataset` and `real_features` per
resolution; `network`, `metrics` and `samples` per `config|resolution`, reading `dataset` through the resolution
dimension. Files are written under the resource's artifact layout; each asset reports metadata and a data version
derived from content hashes, and its code version includes a digest of the spec section it depends on, so editing a
spec or the code marks the downstream assets stale.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetExecutionContext

from dagster_project import specs as spec_utils
from dagster_project.launch import ProcessGroupPipesClient
from dagster_project.partitions import (
    parse_training_key,
    resolution_mapping,
    resolution_partitions,
    training_partitions,
)
from dagster_project.resources import StyleGANResource
from dagster_project.stages import (
    dataset_facts,
    ingest_dataset,
    inventory_raw_images,
    launch_training,
    measure_metrics,
    real_feature_statistics,
    render_samples,
)
from stylegan_core.io.atomic import sha256_file

if TYPE_CHECKING:
    from stylegan_core.spec import DatasetSpec

# Bump when an asset's code changes what it produces.
CODE_VERSIONS = {
    "raw_images": "1",
    "dataset": "1",
    "real_features": "1",
    "network": "1",
    "metrics": "1",
    "samples": "2",
    "projections": "1",
}


@dataclass(frozen=True)
class SpecAssets:
    """The assets of one spec and the partitions they use (automation and checks need both)."""

    spec: "DatasetSpec"
    group: str
    raw_images: dg.AssetsDefinition
    dataset: dg.AssetsDefinition
    real_features: dg.AssetsDefinition
    network: dg.AssetsDefinition
    metrics: dg.AssetsDefinition
    samples: dg.AssetsDefinition
    resolution_partitions: dg.PartitionsDefinition
    training_partitions: dg.PartitionsDefinition
    projections: dg.AssetsDefinition | None = None
    """Only for a spec with `projection_targets`."""

    @property
    def trained(self) -> list[dg.AssetsDefinition]:
        """What a training run refreshes (per config|resolution)."""
        extra = [self.projections] if self.projections is not None else []
        return [self.network, self.metrics, self.samples, *extra]

    @property
    def all(self) -> list[dg.AssetsDefinition]:
        return [self.raw_images, self.dataset, self.real_features, *self.trained]


def _version(asset: str, *spec_parts: Any) -> str:
    digest = spec_utils.fingerprint(list(spec_parts))[:12] if spec_parts else ""
    return f"{CODE_VERSIONS[asset]}-{digest}" if digest else CODE_VERSIONS[asset]


def build_spec_assets(spec: "DatasetSpec") -> SpecAssets:
    group = spec_utils.group_name(spec.name)
    by_resolution = resolution_partitions(spec.resolutions)
    by_training = training_partitions(list(spec.configs), spec.resolutions)
    raw_images = _raw_images_asset(spec, group)
    dataset = _dataset_asset(spec, group, by_resolution, raw_images)
    real_features = _real_features_asset(spec, group, by_resolution, dataset)
    network = _network_asset(spec, group, by_training, dataset)
    metrics = _metrics_asset(spec, group, by_training, network, real_features)
    samples = _samples_asset(spec, group, by_training, network)
    projections = _projections_asset(spec, group, by_training, network) if spec.projection_targets else None
    return SpecAssets(spec, group, raw_images, dataset, real_features, network, metrics, samples, by_resolution,
                      by_training, projections)  # fmt: skip


def _raw_images_asset(spec: "DatasetSpec", group: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "raw_images"], group_name=group, kinds={"parquet"},
        code_version=_version("raw_images", spec.source),
        description=f"Inventory of the source of '{spec.name}': files, sizes, modes, labels, sha256 (Parquet).",
    )  # fmt: skip
    def raw_images(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        result = inventory_raw_images(spec, stylegan)
        context.log.info(f"{result.count} images in {result.source}; fingerprint {result.fingerprint[:12]}")
        return dg.MaterializeResult(metadata=result.metadata, data_version=dg.DataVersion(result.fingerprint))

    return raw_images


def _dataset_asset(
    spec: "DatasetSpec", group: str, partitions: dg.PartitionsDefinition, raw_images: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "dataset"], group_name=group, partitions_def=partitions, deps=[raw_images], kinds={"zip"},
        code_version=_version("dataset", spec.source, spec.ingest),
        description="NVIDIA-layout dataset zip (PNG files + dataset.json) and its Parquet manifest, per resolution.",
    )  # fmt: skip
    def dataset(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        result = ingest_dataset(spec, int(context.partition_key), stylegan)
        context.log.info(f"{result.count} images → {result.zip_path} (content {result.content_hash[:12]})")
        return dg.MaterializeResult(metadata=result.metadata, data_version=dg.DataVersion(result.content_hash))

    return dataset


def _real_features_asset(
    spec: "DatasetSpec", group: str, partitions: dg.PartitionsDefinition, dataset: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "real_features"], group_name=group, partitions_def=partitions, deps=[dataset],
        kinds={"pytorch"}, code_version=_version("real_features"),
        description="Inception features and statistics of the real images, cached by dataset content hash.",
    )  # fmt: skip
    def real_features(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        facts = dataset_facts(spec, int(context.partition_key), stylegan)
        result = real_feature_statistics(facts, stylegan, context.log.info)
        return dg.MaterializeResult(metadata=result.metadata, data_version=dg.DataVersion(result.version))

    return real_features


def _network_asset(
    spec: "DatasetSpec", group: str, partitions: dg.PartitionsDefinition, dataset: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "network"], group_name=group, partitions_def=partitions, kinds={"pytorch"}, pool="gpu",
        deps=[dg.AssetDep(dataset, partition_mapping=resolution_mapping())],
        code_version=_version("network", {name: spec_utils.fingerprint(cfg) for name, cfg in spec.configs.items()}),
        description="The full StyleGAN2-ADA training run (torchrun through Dagster Pipes); resumes from its latest "
        "snapshot when re-materialised.",
    )  # fmt: skip
    def network(
        context: AssetExecutionContext, stylegan: StyleGANResource, training_client: ProcessGroupPipesClient
    ) -> dg.MaterializeResult:
        partition = parse_training_key(context.partition_key)
        return launch_training(context, spec, partition, stylegan, training_client)

    return network


def _metrics_asset(
    spec: "DatasetSpec",
    group: str,
    partitions: dg.PartitionsDefinition,
    network: dg.AssetsDefinition,
    real_features: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "metrics"], group_name=group, partitions_def=partitions, kinds={"pytorch"},
        deps=[network, dg.AssetDep(real_features, partition_mapping=resolution_mapping())],
        code_version=_version("metrics", list(spec.metrics)),
        description=f"{', '.join(spec.metrics)} of the latest snapshot (also appended to metric-<name>.jsonl).",
    )  # fmt: skip
    def metrics(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        from stylegan_core.metrics.inception import DetectorNotFoundError

        partition = parse_training_key(context.partition_key)
        try:
            result = measure_metrics(spec, partition, stylegan, context.log.info)
        except DetectorNotFoundError as error:  # PR/PPL without VGG16, IS without NVIDIA's Inception: one sentence
            raise dg.Failure(description=str(error), allow_retries=False) from None
        context.log.info(" ".join(f"{name} {value:.4f}" for name, value in result.values.items()))
        return dg.MaterializeResult(metadata=result.metadata, data_version=dg.DataVersion(result.version))

    return metrics


def _samples_asset(
    spec: "DatasetSpec", group: str, partitions: dg.PartitionsDefinition, network: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=[spec.name, "samples"], group_name=group, partitions_def=partitions, deps=[network], kinds={"png"},
        code_version=_version("samples"),
        description="Sample grids of G_ema (fixed seeds, rows per class when conditional, ψ = 1 and 0.7), NVIDIA's "
        "style-mixing matrix and a short latent interpolation video.",
    )  # fmt: skip
    def samples(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        partition = parse_training_key(context.partition_key)
        result = render_samples(spec, partition, stylegan)
        return dg.MaterializeResult(metadata=result.metadata, data_version=dg.DataVersion(result.version))

    return samples


def _projections_asset(
    spec: "DatasetSpec", group: str, partitions: dg.PartitionsDefinition, network: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    targets = spec.projection_targets
    assert targets is not None
    settings = {"images": [(path.name, sha256_file(path)) for path in targets.images],
                "num_steps": targets.num_steps, "seed": targets.seed}  # fmt: skip

    @dg.asset(
        key=[spec.name, "projections"], group_name=group, partitions_def=partitions, deps=[network], kinds={"png"},
        code_version=_version("projections", settings),
        description=f"The {len(targets.images)} image(s) of projection_targets projected into G_ema's W space "
        "(NVIDIA's projector, LPIPS with VGG16), each beside its projection with the final LPIPS distance.",
    )  # fmt: skip
    def projections(context: AssetExecutionContext, stylegan: StyleGANResource) -> dg.MaterializeResult:
        from dagster_project.projections import ProjectionUnavailable, project_targets
        from stylegan_core.errors import InputError

        partition = parse_training_key(context.partition_key)
        try:
            metadata, version = project_targets(spec, partition, stylegan, context.log.info)
        except (ProjectionUnavailable, InputError) as error:  # no VGG16; a target changed since the spec loaded
            raise dg.Failure(description=str(error), allow_retries=False) from None
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))

    return projections
