"""Dagster's side of a training process: Pipes reporting, plugged into the one worker as hooks.

The `network` asset launches `torchrun ... -m stylegan_core.training.worker --run-dir DIR --hooks
dagster_project.train_worker:pipes_hooks` (see `training.torchrun_command`). Every rank trains; only global rank 0
opens Dagster Pipes: it turns tick lines into Dagster log messages and reports the final materialisation (kimg,
sec/kimg, augment p, losses, snapshot path; the data version is the snapshot file's sha256). Other ranks must not
open Pipes: Dagster would receive one materialisation per rank and fail the step. Run outside Dagster (plain
torchrun) it still trains: Pipes then only warns that no orchestrator is listening.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster_pipes import open_dagster_pipes

from stylegan_core.config import TrainOptions
from stylegan_core.io.atomic import sha256_file
from stylegan_core.training.callbacks import SnapshotInfo, TickInfo, TrainCallbacks, TrainResult
from stylegan_core.training.worker import LaunchHooks

HOOKS = "dagster_project.train_worker:pipes_hooks"


def _metadata_value(value: Any, kind: str) -> dict[str, Any]:
    return {"raw_value": value, "type": kind}


def materialization_metadata(result: TrainResult, last_tick: TickInfo | None, resumed_from: str | None) -> dict:
    """Pipes-encoded metadata of the final materialisation."""
    metadata = {
        "kimg": _metadata_value(float(result.kimg), "float"),
        "ticks": _metadata_value(int(result.ticks), "int"),
        "augment_p": _metadata_value(float(result.augment_p), "float"),
        "aborted": _metadata_value(bool(result.aborted), "bool"),
        "run_dir": _metadata_value(str(result.run_dir), "path"),
        "snapshot": _metadata_value(str(result.last_snapshot or ""), "path"),
        "resumed_from": _metadata_value(resumed_from or "", "path"),
        "world_size": _metadata_value(int(os.environ.get("WORLD_SIZE", "1")), "int"),
    }
    if last_tick is not None:
        metadata["sec_per_kimg"] = _metadata_value(float(last_tick.sec_per_kimg), "float")
        metadata["sec_per_tick"] = _metadata_value(float(last_tick.sec_per_tick), "float")
    for name, value in result.losses.items():
        metadata[name] = _metadata_value(float(value), "float")
    for metric, values in result.metrics.items():
        for key, value in values.items():
            metadata[f"{metric}/{key}" if key != metric else metric] = _metadata_value(float(value), "float")
    return metadata


@contextlib.contextmanager
def pipes_hooks(options: TrainOptions, run_dir: Path) -> Iterator[LaunchHooks]:
    """On global rank 0: Pipes log lines per tick and snapshot, and the materialisation at the end; elsewhere none."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield LaunchHooks()
        return
    last_tick: list[TickInfo] = []
    with open_dagster_pipes() as pipes:

        def on_tick(tick: TickInfo) -> None:
            last_tick[:] = [tick]  # the tick line itself reaches Dagster once, through on_log

        def on_snapshot(info: SnapshotInfo) -> None:
            pipes.log.info(f"snapshot at kimg {info.kimg:.3f}: {info.snapshot_path}")

        def on_result(result: TrainResult) -> None:
            if result.last_snapshot is None:
                raise RuntimeError(f"training in {run_dir} ended without writing a snapshot")
            pipes.report_asset_materialization(
                metadata=materialization_metadata(result, last_tick[0] if last_tick else None, options.loop.resume),
                data_version=sha256_file(result.last_snapshot),
            )

        # Log lines (ticks with % and ETA, metric progress) go to the Dagster log instead of stdout: each appears once.
        callbacks = TrainCallbacks(on_tick=on_tick, on_snapshot=on_snapshot, on_log=pipes.log.info)
        yield LaunchHooks(callbacks, on_result)
