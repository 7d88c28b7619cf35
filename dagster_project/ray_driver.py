"""The Ray side of a `network` materialisation with `launcher: ray`: `python -m dagster_project.ray_driver`.

Dagster starts this process through the same Pipes client as torchrun (`launch.ProcessGroupPipesClient`). It is a
Ray driver: it connects to the cluster (`--ray-address`), so the training is one Ray job (its id and the cluster
address go into the materialisation's metadata), and Ray Train places the workers, which may be on other machines.
Progress reaches Dagster from the run directory every worker shares: each new `log.txt` line (tick lines with kimg,
sec/kimg and augment p, snapshot and resume notices) becomes a Dagster log message.

Cancelling the Dagster run sends SIGINT here: the workers stop at the end of the tick and write a snapshot; if this
process is SIGKILLed after the termination timeout, Ray ends the job, and with it every worker it placed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dagster_pipes import PipesContext, open_dagster_pipes

from dagster_project.train_worker import _metadata_value, materialization_metadata
from stylegan_core.config import TrainOptions
from stylegan_core.io.atomic import sha256_file
from stylegan_core.training.callbacks import TickInfo, TrainResult
from stylegan_core.training.ray_launcher import (
    RayLaunchConfig,
    RayLaunchError,
    RayRunResult,
    cluster_address,
    connect,
    parse_bool,
    train_on_ray,
)
from stylegan_core.training.worker import OPTIONS_FILE


class LogFollower:
    """Forwards the lines appended to a file since the last call (the run's log.txt) to a callback."""

    def __init__(self, path: Path, emit) -> None:  # noqa: ANN001 - any str -> None callable
        self.path, self.emit, self.offset = path, emit, 0
        self.partial = ""

    def __call__(self) -> None:
        try:
            with self.path.open("r", encoding="utf-8") as file:
                file.seek(self.offset)
                text = file.read()
                self.offset = file.tell()
        except OSError:
            return
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()  # an unfinished last line waits for the next call
        for line in lines:
            if line.strip():
                self.emit(line)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, RayLaunchConfig]:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.ray_driver", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True, help=f"run directory holding {OPTIONS_FILE}")
    parser.add_argument("--ray-address", default="")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--max-failures", type=int, default=0)
    parser.add_argument("--use-gpu", default="auto", help="auto, true or false")
    parser.add_argument("--resources-per-worker", default="{}", help="JSON object, e.g. '{\"CPU\": 4, \"GPU\": 1}'")
    args = parser.parse_args(argv)
    resources = json.loads(args.resources_per_worker)
    if not isinstance(resources, dict):
        raise ValueError(f"--resources-per-worker must be a JSON object, got {args.resources_per_worker!r}")
    use_gpu = None if args.use_gpu.strip().lower() == "auto" else parse_bool(args.use_gpu, "use_gpu")
    config = RayLaunchConfig(address=args.ray_address, num_workers=args.num_workers, use_gpu=use_gpu,
                             resources_per_worker={str(k): float(v) for k, v in resources.items()},
                             max_failures=args.max_failures)  # fmt: skip
    return args, config


def read_options(path: Path, world_size: int) -> TrainOptions:
    """The resolved options the asset wrote, checked against the Ray world size (as the CLI and specs check them)."""
    from stylegan_core.options import OptionError
    from stylegan_core.presets import validate_options

    try:
        options = TrainOptions.from_dict(json.loads(path.read_text(encoding="utf-8")))
        validate_options(options, world_size)
    except OptionError as error:
        raise ValueError(f"{path}: {error}") from None
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: cannot read training options: {error}") from None
    return options


def run(options: TrainOptions, run_dir: Path, config: RayLaunchConfig, pipes: PipesContext) -> RayRunResult:
    import ray

    started = connect(config)
    try:
        address, job_id = cluster_address()
        pipes.log.info(f"Ray job {job_id} on cluster {address}: {config.num_workers} worker(s), "
                       f"max_failures={config.max_failures}, run directory {run_dir}")  # fmt: skip
        follow = LogFollower(run_dir / "log.txt", pipes.log.info)
        done = train_on_ray(options, run_dir, config, on_poll=follow)
        follow()
        return done
    finally:
        if started:
            ray.shutdown()


def report(done: RayRunResult, pipes: PipesContext) -> None:
    fields = dict(done.result)
    snapshot = fields["last_snapshot"]
    result = TrainResult(**{**fields, "run_dir": Path(fields["run_dir"]), "last_snapshot": snapshot and Path(snapshot)})
    last_tick = TickInfo(**done.last_tick) if done.last_tick else None
    if result.last_snapshot is None:
        raise RayLaunchError(f"training in {result.run_dir} ended without writing a snapshot")
    metadata = materialization_metadata(result, last_tick, done.resumed_from)
    metadata.update(
        world_size=_metadata_value(done.world_size, "int"),
        launcher=_metadata_value("ray", "text"),
        ray_job_id=_metadata_value(done.job_id, "text"),
        ray_address=_metadata_value(done.address, "text"),
    )
    pipes.report_asset_materialization(metadata=metadata, data_version=sha256_file(result.last_snapshot))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, config = parse_args(argv)
        options = read_options(args.run_dir / OPTIONS_FILE, config.num_workers)
    except (OSError, ValueError) as error:
        print(f"ray_driver: {error}", file=sys.stderr)
        return 2
    with open_dagster_pipes() as pipes:
        try:
            done = run(options, args.run_dir.resolve(), config, pipes)
            report(done, pipes)
        except RayLaunchError as error:
            pipes.log.error(str(error))
            print(f"ray_driver: {error}", file=sys.stderr)
            return 3
    return 1 if done.result.get("aborted") else 0


if __name__ == "__main__":
    sys.exit(main())
