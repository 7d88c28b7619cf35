"""Entry point for orchestrators: train into a fixed run directory, continuing from its latest snapshot.

Python: `run_training(options, run_dir, callbacks)`. Process (e.g. launched by Dagster Pipes, possibly under
torchrun): `python -m stylegan_core.training.worker --options training_options.json --run-dir DIR`.
Re-running the same command after an interruption continues exactly where the last snapshot left off; re-running a
finished run returns at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stylegan_core.config import TrainOptions
from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.training.callbacks import TrainCallbacks, TrainResult
from stylegan_core.training.distributed import DistributedContext
from stylegan_core.training.loop import TrainingDivergedError, train

__all__ = ["find_latest_snapshot", "main", "run_training"]


def run_training(
    options: TrainOptions,
    run_dir: str | Path,
    callbacks: TrainCallbacks | None = None,
    *,
    world: DistributedContext | None = None,
) -> TrainResult:
    """`train()` into `run_dir`, resuming from `run_dir`'s latest snapshot when there is one."""
    latest = find_latest_snapshot(run_dir)
    if latest is not None:
        options = dataclasses.replace(options, loop=dataclasses.replace(options.loop, resume=str(latest)))
    return train(options, Path(run_dir), callbacks, world=world)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stylegan_core.training.worker", description=__doc__)
    parser.add_argument("--options", required=True, type=Path, help="resolved options (training_options.json)")
    parser.add_argument("--run-dir", required=True, type=Path, help="the run directory (created if missing)")
    args = parser.parse_args(argv)
    try:
        options = TrainOptions.from_dict(json.loads(args.options.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        print(f"{args.options}: cannot read training options: {error}", file=sys.stderr)
        return 2
    try:
        result = run_training(options, args.run_dir)
    except TrainingDivergedError as error:
        print(str(error), file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"kimg": result.kimg, "last_snapshot": str(result.last_snapshot), "aborted": result.aborted}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
