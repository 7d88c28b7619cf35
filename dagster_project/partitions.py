"""Partitions of a spec's assets: one per resolution, and config × resolution for training and what follows it.

Multi-partition keys are joined in alphabetical order of the dimension names, so a training key reads
`config|resolution` (e.g. `cpu-tiny|16`), whatever order the dimensions are declared in.
"""

from __future__ import annotations

from typing import NamedTuple

import dagster as dg

RESOLUTION = "resolution"
CONFIG = "config"


class TrainingPartition(NamedTuple):
    config: str
    resolution: int

    @property
    def key(self) -> str:
        return f"{self.config}|{self.resolution}"


def resolution_partitions(resolutions: list[int] | tuple[int, ...]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([str(resolution) for resolution in resolutions])


def training_partitions(configs: list[str] | tuple[str, ...], resolutions: list[int] | tuple[int, ...]):
    """config × resolution; the key of a partition is `config|resolution`."""
    return dg.MultiPartitionsDefinition(
        {CONFIG: dg.StaticPartitionsDefinition(list(configs)), RESOLUTION: resolution_partitions(resolutions)}
    )


def resolution_mapping() -> dg.MultiToSingleDimensionPartitionMapping:
    """Training partition `cfg|256` reads dataset partition `256`."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=RESOLUTION)


def parse_training_key(partition_key: str | dg.MultiPartitionKey) -> TrainingPartition:
    """Accept a MultiPartitionKey (CLI, `materialize`) or its plain-string form (runs launched by tag only)."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        return TrainingPartition(dims[CONFIG], int(dims[RESOLUTION]))
    config, separator, resolution = str(partition_key).rpartition("|")
    if not separator or not resolution.isdigit():
        raise ValueError(f"training partition keys look like 'config|resolution', got {partition_key!r}")
    return TrainingPartition(config, int(resolution))
