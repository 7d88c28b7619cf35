"""Asset checks of one spec's group: gates before GPU hours are spent, and a warning when a metric gets worse.

* `dataset_valid` (blocking): the Great Expectations suite of `stylegan_core.data.validate` on the partition's
  manifest; its per-expectation table becomes metadata. A failure stops the rest of its run, and its verdict is
  recorded next to the dataset (keyed by content hash) so that a later `network` run refuses unvalidated data.
* `network_finite`, `network_output_shape`, `network_augment_p` (blocking): the latest snapshot's weights are finite,
  G_ema makes images of the dataset's shape, the augment probability lies in [0, 1].
* `metrics_no_regression` (WARN): no metric got worse than the previous materialisation of the same partition.
"""

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetCheckExecutionContext

from dagster_project import metadata as md
from dagster_project import views
from dagster_project.factory import SpecAssets
from dagster_project.partitions import parse_training_key
from dagster_project.resources import StyleGANResource
from dagster_project.stages import dataset_facts, record_validation
from dagster_project.training import current_snapshot

if TYPE_CHECKING:
    from stylegan_core.data.validate import ValidationReport
    from stylegan_core.spec import DatasetSpec

# A metric "regressed" when it is worse than before by more than this relative margin (plus an absolute floor, since
# KID can sit near zero). FID and KID are noisy on small samples; the check warns, it never blocks.
REGRESSION_RELATIVE_TOLERANCE = 0.10
REGRESSION_ABSOLUTE_TOLERANCE = 1e-3
GX_TABLE_COLUMNS = {
    "expectation": "string",
    "success": "bool",
    "column": "string",
    "unexpected_count": "int",
    "examples": "string",
    "gx_type": "string",
    "details": "string",
}


NETWORK_CHECKS = {
    "network_finite": "every weight of G, D and G_ema is finite",
    "network_output_shape": "G_ema maps (z, c) to finite images of the dataset's shape",
    "network_augment_p": "the augmentation probability p lies in [0, 1]",
}


def gx_report_metadata(report: "ValidationReport") -> dict[str, Any]:
    """The validation report as a per-expectation table plus counts."""
    rows = [dict(row) for row in report.rows]
    failed = [row for row in rows if not row.get("success")]
    return {
        "expectations": md.table(rows, GX_TABLE_COLUMNS),
        "evaluated": len(rows),
        "failed": len(failed),
        "failed_expectations": ", ".join(str(row.get("expectation")) for row in failed) or "none",
        **{f"gx_{key}": value for key, value in report.statistics.items() if isinstance(value, (int, float))},
    }


def network_check_results(snapshot_path: Path, resolution: int, device: str) -> Iterator[dg.AssetCheckResult]:
    """Load the snapshot once and judge it three ways."""
    import torch

    from stylegan_core.io.snapshot import load_generator, load_snapshot

    snapshot = load_snapshot(snapshot_path)  # strict: a malformed snapshot fails the check with one line
    bad = [
        f"{network}.{name}"
        for network in ("G", "D", "G_ema")
        for name, tensor in getattr(snapshot, network).items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    yield dg.AssetCheckResult(
        check_name="network_finite",
        passed=not bad,
        metadata={"non_finite_tensors": ", ".join(bad[:20]) or "none", "snapshot": md.path(snapshot_path)},
    )
    G = load_generator(snapshot_path, "G_ema", device)
    with torch.no_grad():
        z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
        c = torch.zeros([2, G.c_dim], device=device)
        if G.c_dim:
            c[:, 0] = 1
        images = G(z, c, noise_mode="const")
    expected = [2, G.img_channels, resolution, resolution]
    yield dg.AssetCheckResult(
        check_name="network_output_shape",
        passed=list(images.shape) == expected and bool(torch.isfinite(images).all()),
        metadata={"shape": str(list(images.shape)), "expected": str(expected)},
    )
    yield augment_p_result(snapshot.augment_p)


def augment_p_result(p: float | None) -> dg.AssetCheckResult:
    """p of the snapshot's augmentation pipeline; `--aug noaug` stores no pipeline and no p (nothing to judge)."""
    if p is None:
        return dg.AssetCheckResult(check_name="network_augment_p", passed=True,
                                   metadata={"augment_p": 0.0, "pipeline": "none (--aug noaug)"})  # fmt: skip
    return dg.AssetCheckResult(check_name="network_augment_p", passed=0.0 <= p <= 1.0, metadata={"augment_p": p})


def metric_values(materialization: dg.AssetMaterialization, names: list[str]) -> dict[str, float]:
    """The result keys of `names`: the name itself (FID, KID, PPL) or `<name>_<result>` (PR's precision and recall,
    IS's mean and std)."""
    values = {}
    for key, entry in materialization.metadata.items():
        if not any(key == name or key.startswith(f"{name}_") for name in names):
            continue
        if isinstance(entry.value, (int, float)) and math.isfinite(entry.value):
            values[key] = float(entry.value)
    return values


def _worse(key: str, value: float, before: float) -> bool:
    margin = abs(before) * REGRESSION_RELATIVE_TOLERANCE + REGRESSION_ABSOLUTE_TOLERANCE
    match views.metric_direction(key):
        case "lower":  # FID, KID, PPL
            return value > before + margin
        case "higher":  # precision, recall, IS
            return value < before - margin
    return False  # a spread (IS std) is not better either way


def regression_result(current: Mapping[str, float], previous: Mapping[str, float]) -> dg.AssetCheckResult:
    """Worse by more than the margin, in the direction each metric improves (views.METRIC_BETTER)."""
    worse = {
        name: (previous[name], value)
        for name, value in current.items()
        if name in previous and _worse(name, value, previous[name])
    }
    rows = [
        {"metric": name, "previous": previous.get(name), "current": value, "regressed": name in worse}
        for name, value in sorted(current.items())
    ]
    return dg.AssetCheckResult(
        passed=not worse,
        severity=dg.AssetCheckSeverity.WARN,
        description="no regression" if not worse else f"worse than the previous materialisation: {sorted(worse)}",
        metadata={
            "comparison": md.table(
                [{**row, "previous": row["previous"] if row["previous"] is not None else float("nan")} for row in rows],
                {"metric": "string", "previous": "float", "current": "float", "regressed": "bool"},
            ),
            "compared_with_previous": bool(previous),
        },
    )


def _expected_channels(spec: "DatasetSpec") -> int | None:
    # `auto` allows 1 or 3 (whichever the source is); the validator then only demands uniform channels.
    return {"rgb": 3, "grey": 1, "rgba": 4}.get(spec.ingest.channels)


def build_spec_checks(assets: SpecAssets) -> list[dg.AssetChecksDefinition]:
    return [_dataset_check(assets), _network_checks(assets), _metrics_check(assets)]


def _dataset_check(assets: SpecAssets) -> dg.AssetChecksDefinition:
    spec = assets.spec

    @dg.asset_check(
        asset=assets.dataset, name="dataset_valid", blocking=True, partitions_def=assets.resolution_partitions,
        description="Great Expectations suite on the manifest: square power-of-two images of the partition's "
        "resolution, uniform channels, labels in range with one-hot rows summing to 1, no duplicate paths, count > 0.",
    )  # fmt: skip
    def dataset_valid(context: AssetCheckExecutionContext, stylegan: StyleGANResource) -> dg.AssetCheckResult:
        from stylegan_core.data.manifest import read_manifest
        from stylegan_core.data.validate import validate_manifest

        resolution = int(context.op_execution_context.partition_key)
        facts = dataset_facts(spec, resolution, stylegan)
        manifest = read_manifest(facts.manifest_path)
        report = validate_manifest(manifest, resolution, channels=_expected_channels(spec),
                                   label_dim=spec.source.num_classes)  # fmt: skip
        record_validation(facts, bool(report.success), report.summary())
        return dg.AssetCheckResult(passed=bool(report.success), metadata=gx_report_metadata(report),
                                   description=report.summary())  # fmt: skip

    return dataset_valid


def _network_checks(assets: SpecAssets) -> dg.AssetChecksDefinition:
    """The three blocking network checks as one multi-check, so the snapshot is loaded once."""
    spec = assets.spec
    specs = [
        dg.AssetCheckSpec(
            name, asset=assets.network, description=text, blocking=True, partitions_def=assets.training_partitions
        )  # fmt: skip
        for name, text in NETWORK_CHECKS.items()
    ]

    @dg.multi_asset_check(specs=specs, name=f"{assets.group}_network_checks")
    def network_checks(
        context: AssetCheckExecutionContext, stylegan: StyleGANResource
    ) -> Iterator[dg.AssetCheckResult]:
        partition = parse_training_key(context.op_execution_context.partition_key)
        _, snapshot = current_snapshot(stylegan.run_root(spec.name, partition.config, partition.resolution))
        yield from network_check_results(snapshot, partition.resolution, stylegan.torch_device())

    return network_checks


def _metrics_check(assets: SpecAssets) -> dg.AssetChecksDefinition:
    spec = assets.spec

    @dg.asset_check(
        asset=assets.metrics, name="metrics_no_regression", blocking=False,
        partitions_def=assets.training_partitions,
        description="Warns when a metric is worse than at the previous materialisation of the same partition.",
    )  # fmt: skip
    def metrics_no_regression(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        partition_key = str(context.op_execution_context.partition_key)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=assets.metrics.key, asset_partitions=[partition_key]), limit=2
        ).records
        if not records:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       description="no materialisation of this partition to check")  # fmt: skip
        current = metric_values(records[0].asset_materialization, list(spec.metrics))
        previous = metric_values(records[1].asset_materialization, list(spec.metrics)) if len(records) > 1 else {}
        return regression_result(current, previous)

    return metrics_no_regression
