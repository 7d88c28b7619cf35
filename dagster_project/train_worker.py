"""The torchrun entry point of a training launched by a `network` asset: `python -m dagster_project.train_worker`.

Every rank trains (`stylegan_core.training.train` joins the torchrun job itself). Only global rank 0 opens Dagster
Pipes: it sends the run's log lines (ticks with % and ETA, metric progress) to the Dagster log and reports the final
materialisation (kimg, sec/kimg, augment p, losses, snapshot path; the data version is the snapshot file's sha256).
Other ranks must not open Pipes: Dagster would receive one materialisation per rank and fail the step.

The first SIGINT/SIGTERM (a cancelled run; torchrun forwards it) asks the loop to stop at the end of the current tick,
which writes a final snapshot; a second one interrupts at once. Run outside Dagster (plain torchrun) it still trains:
Pipes then only warns that no orchestrator is listening.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, open_dagster_pipes

from stylegan_core.config import TrainOptions
from stylegan_core.training import train
from stylegan_core.training.callbacks import SnapshotInfo, TickInfo, TrainCallbacks, TrainResult

OPTIONS_FILE = "requested_options.json"


class AbortOnSignal:
    """First SIGINT/SIGTERM: stop at the next tick; second: raise KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def sha256_file(path: Path) -> str:
    # Not dagster_project.metadata's: that imports dagster, and every rank would pay for it.
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
def rank_zero_pipes() -> Iterator[PipesContext | None]:
    if int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


def run(options: TrainOptions, run_dir: Path) -> TrainResult:
    abort = AbortOnSignal()
    abort.install()
    last_tick: list[TickInfo] = []
    with rank_zero_pipes() as pipes:

        def on_tick(tick: TickInfo) -> None:
            last_tick[:] = [tick]  # the tick line itself reaches Dagster once, through on_log

        def on_snapshot(info: SnapshotInfo) -> None:
            if pipes is not None:
                pipes.log.info(f"snapshot at kimg {info.kimg:.3f}: {info.snapshot_path}")

        # Log lines go to the Dagster run log instead of stdout, which Pipes also shows: each line appears once.
        on_log = pipes.log.info if pipes is not None else None
        callbacks = TrainCallbacks(on_tick=on_tick, on_snapshot=on_snapshot, should_abort=abort, on_log=on_log)
        result = train(options, run_dir, callbacks)
        if pipes is not None:
            if result.last_snapshot is None:
                raise RuntimeError(f"training in {run_dir} ended without writing a snapshot")
            pipes.report_asset_materialization(
                metadata=materialization_metadata(result, last_tick[0] if last_tick else None, options.loop.resume),
                data_version=sha256_file(result.last_snapshot),
            )
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.train_worker", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (created if missing)")
    parser.add_argument(
        "--options", type=Path, default=None, help=f"resolved options JSON (default: RUN_DIR/{OPTIONS_FILE})"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options_path = args.options or args.run_dir / OPTIONS_FILE
    try:
        options = TrainOptions.from_dict(json.loads(options_path.read_text()))
    except (OSError, ValueError) as error:
        print(f"train_worker: cannot read options from {options_path}: {error}", file=sys.stderr)
        return 2
    result = run(options, args.run_dir)
    return 1 if result.aborted else 0


if __name__ == "__main__":
    sys.exit(main())
