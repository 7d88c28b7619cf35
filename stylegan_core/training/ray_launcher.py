"""Training on a Ray cluster: Ray Train places the workers and restarts them; our loop resumes from snapshots.

The driver (this module; the `stylegan train --launcher ray` process or Dagster's Ray driver) connects to a cluster,
writes a probe file into the run directory, and runs a `TorchTrainer` whose workers execute
`ray_worker.ray_train_loop`. With `max_failures = k`, a worker that dies (SIGKILL, OOM, a lost node) makes Ray tear
down and restart the whole worker group up to k times; each restart resumes from the latest whole-state snapshot, so
the finished run is identical to one that never failed. Ray is imported lazily: the library works without it.

Errors the user can act on end as one sentence (`RayLaunchError`): an unreachable cluster, a run directory the
workers do not share, retries exhausted (naming the last good snapshot, which is kept).
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylegan_core.cli.arguments import whole_number
from stylegan_core.options import MAX_BATCH
from stylegan_core.training.signals import AbortOnSignal

if TYPE_CHECKING:  # the command line imports this module; torch and Ray load only when training starts
    from stylegan_core.config import TrainOptions

LAUNCHERS = ("local", "ray")
"""`local`: this process (or each process torchrun started) trains; `ray`: Ray Train workers on a cluster."""
ABORT_FILE = ".abort-requested"
"""Written by the driver into the run directory to stop training at the end of the current tick (with a snapshot)."""
PROBE_PREFIX = ".storage-probe-"
WORKER_ENV = ("PYTHONPATH", "STYLEGAN_CACHE_DIR", "STYLEGAN_DIST_TIMEOUT_S", "STYLEGAN_OPS_IMPL")
"""Driver environment the workers get (Ray starts workers with the raylet's environment, not the driver's)."""
MAX_WORKERS = MAX_BATCH
"""Every worker trains on at least one image of each batch, so no batch geometry has more workers than images."""
MAX_FAILURES = 10_000
"""Worker-group restarts: one an hour (spot-instance preemption) for over a year of training."""


class RayLaunchError(RuntimeError):
    """A Ray training could not start or could not finish; the message is one sentence for the user."""


@dataclass(frozen=True)
class RayLaunchConfig:
    """How a training is placed on Ray. One place for these defaults (the CLI and Dagster read them from here)."""

    address: str = ""
    """'' = start a private local Ray instance; 'auto' = the cluster this machine belongs to; 'host:port' (GCS) or
    'ray://host:port' (Ray Client)."""
    num_workers: int = 1
    """Training processes (one per GPU with use_gpu); the world size that batch geometry is validated against."""
    use_gpu: bool | None = None
    """None = use GPUs when the cluster has any."""
    resources_per_worker: Mapping[str, float] = field(default_factory=dict)
    """Ray resources each worker reserves, e.g. {'CPU': 4, 'GPU': 1}; empty = Ray Train's default (1 CPU or GPU)."""
    max_failures: int = 0
    """Worker-group restarts allowed before the run fails (each resumes from the latest snapshot)."""

    def __post_init__(self) -> None:
        if not 1 <= self.num_workers <= MAX_WORKERS:
            raise ValueError(f"num_workers must be in [1, {MAX_WORKERS}], got {self.num_workers}")
        if not 0 <= self.max_failures <= MAX_FAILURES:
            raise ValueError(f"max_failures must be in [0, {MAX_FAILURES}], got {self.max_failures}")
        for name, amount in self.resources_per_worker.items():
            if not amount >= 0:
                raise ValueError(f"resources_per_worker[{name!r}] must be 0 or more, got {amount}")


@dataclass(frozen=True)
class RayRunResult:
    """What the driver learns from a finished Ray training (rank 0's summary plus where it ran)."""

    status: str
    result: dict[str, Any]
    last_tick: dict[str, Any] | None
    resumed_from: str | None
    world_size: int
    address: str
    job_id: str


# ---- command line ----------------------------------------------------------------------------------------------


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = RayLaunchConfig()
    group = parser.add_argument_group("launcher (training on a Ray cluster; see docs/scaling.md)")
    group.add_argument("--launcher", choices=LAUNCHERS, default="local",
                       help="local: this process (or torchrun's); ray: Ray Train workers [default: local]")
    group.add_argument("--ray-address", default=defaults.address, metavar="ADDRESS",
                       help="'' starts a local Ray instance; 'auto', 'host:port' or 'ray://host:port' [default: '']")
    group.add_argument("--num-workers", type=whole_number(1, MAX_WORKERS), default=defaults.num_workers,
                       metavar="N", help="Ray training workers (one per GPU) [default: 1]")
    group.add_argument("--max-failures", type=whole_number(0, MAX_FAILURES), default=defaults.max_failures,
                       metavar="K", help="worker-group restarts, each resuming from the latest snapshot [default: 0]")
    group.add_argument("--use-gpu", default=None, nargs="?", const="1", metavar="BOOL",
                       help="one GPU per worker [default: when the cluster has GPUs]")  # fmt: skip


def launch_config_from_args(args: argparse.Namespace) -> RayLaunchConfig | None:
    """The Ray placement the command line asked for, or None for the local launcher."""
    if args.launcher != "ray":
        return None
    use_gpu = None if args.use_gpu is None else parse_bool(args.use_gpu, "--use-gpu")
    return RayLaunchConfig(address=args.ray_address, num_workers=args.num_workers, use_gpu=use_gpu,
                           max_failures=args.max_failures)  # fmt: skip


def parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {text!r}")


# ---- connecting ------------------------------------------------------------------------------------------------


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one sentence, when a host:port or ray://host:port address does not accept connections."""
    if address in ("", "auto", "local"):
        return
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise RayLaunchError(f"Ray address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RayLaunchError(
            f"cannot reach the Ray cluster at {address!r} ({error.strerror or error}); is `ray start --head` "
            "running there, and is the port open from this machine?"
        ) from None


def connect(config: RayLaunchConfig) -> bool:
    """Connect this process to Ray (unless it already is); True if this call connected and should disconnect."""
    import ray

    check_address(config.address)
    if ray.is_initialized():
        return False
    env = {"env_vars": {name: os.environ[name] for name in WORKER_ENV if os.environ.get(name)}}
    try:
        if config.address:
            ray.init(address=config.address, runtime_env=env, log_to_driver=True)
        else:
            # A private instance for this run: no dashboard, so it stays light on a laptop or CI machine.
            ray.init(runtime_env=env, include_dashboard=False, log_to_driver=True)
    except (ConnectionError, RuntimeError, TimeoutError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RayLaunchError(f"cannot connect to the Ray cluster at {config.address or 'a new local instance'!r}: "
                             f"{first_line}") from None  # fmt: skip
    return True


def cluster_address() -> tuple[str, str]:
    """(GCS address, job id) of the Ray job this driver is."""
    import ray

    context = ray.get_runtime_context()
    return context.gcs_address, context.get_job_id()


# ---- training --------------------------------------------------------------------------------------------------


def train_on_ray(
    options: TrainOptions,
    run_dir: str | Path,
    config: RayLaunchConfig,
    *,
    on_poll: Callable[[], None] | None = None,
    poll_s: float = 1.0,
) -> RayRunResult:
    """Train into `run_dir` on Ray Train workers, resuming from its latest snapshot; raises RayLaunchError.

    `on_poll` runs in this (the main) thread every `poll_s` while the workers train, e.g. to stream progress. The
    first SIGINT/SIGTERM asks the workers to stop at the end of the current tick (they write a snapshot); a second
    one stops waiting, and disconnecting this driver makes Ray end the job's workers.
    """
    run_dir = Path(run_dir).resolve()
    started = connect(config)
    try:
        return _fit(options, run_dir, config, on_poll, poll_s)
    finally:
        if started:
            import ray

            ray.shutdown()


def _fit(options: TrainOptions, run_dir: Path, config: RayLaunchConfig, on_poll: Callable[[], None] | None,
         poll_s: float) -> RayRunResult:  # fmt: skip
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from stylegan_core.training.ray_worker import ray_train_loop

    use_gpu = config.use_gpu if config.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    nonce = uuid.uuid4().hex[:12]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ABORT_FILE).unlink(missing_ok=True)
    driver_probe = probe_file(run_dir, nonce, "driver")
    driver_probe.write_text(nonce, encoding="utf-8")
    address, job_id = cluster_address()
    trainer = TorchTrainer(
        ray_train_loop,
        train_loop_config={"options": options.to_dict(), "run_dir": str(run_dir), "nonce": nonce, "use_gpu": use_gpu},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=dict(config.resources_per_worker) or None),
        run_config=RunConfig(name=f"stylegan-{run_dir.name}-{nonce}", storage_path=str(run_dir.parent / ".ray"),
                             failure_config=FailureConfig(max_failures=config.max_failures)),
    )  # fmt: skip
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=_run_trainer, args=(trainer, outcome), name="ray-train-driver", daemon=True)
    try:
        with _abort_on_signal(run_dir):
            thread.start()
            while thread.is_alive():
                thread.join(poll_s)
                if on_poll is not None:
                    on_poll()
    finally:
        driver_probe.unlink(missing_ok=True)
    if "error" in outcome:
        from stylegan_core.io.snapshot import find_latest_snapshot

        latest = find_latest_snapshot(run_dir)
        kept = f"the last good snapshot {latest} is kept" if latest else "no snapshot had been written"
        raise RayLaunchError(
            f"training on Ray failed after {config.max_failures} allowed worker-group restart(s) "
            f"(max_failures={config.max_failures}); {kept}; cause: {_one_line(outcome['error'])}"
        )
    value = outcome["result"].return_value or {}
    if value.get("status") != "done":
        raise RayLaunchError(value.get("message") or f"Ray training ended without a result ({value!r})")
    return RayRunResult(status="done", result=value["result"], last_tick=value["last_tick"],
                        resumed_from=value["resumed_from"], world_size=value["world_size"], address=address,
                        job_id=job_id)  # fmt: skip


def probe_file(run_dir: Path, nonce: str, rank: int | str) -> Path:
    return run_dir / f"{PROBE_PREFIX}{nonce}-{rank}"


def _run_trainer(trainer: Any, outcome: dict[str, Any]) -> None:
    try:
        outcome["result"] = trainer.fit()
    except Exception as error:  # noqa: BLE001 - reported to the main thread, which raises a one-sentence error
        outcome["error"] = error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(error).__name__


class _abort_on_signal(AbortOnSignal):  # noqa: N801 - used as a context manager
    """The worker's signal rule in the driver: the first SIGINT/SIGTERM also writes the abort file the workers poll
    (they stop at the next tick); the second interrupts the driver. The file goes with the block."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        (self.run_dir / ABORT_FILE).unlink(missing_ok=True)

    def _handle(self, signum: int, frame: object) -> None:
        super()._handle(signum, frame)  # raises KeyboardInterrupt on the second signal
        (self.run_dir / ABORT_FILE).write_text(f"signal {signum} in driver pid {os.getpid()}\n", encoding="utf-8")


def run_cli(options: TrainOptions, make_run_dir: Callable[[], Path], config: RayLaunchConfig) -> int:
    """`stylegan train --launcher ray`: connect, then create the run directory, train, print the outcome."""
    import json
    import sys

    import ray

    try:
        started = connect(config)  # before the run directory exists, so a wrong address leaves nothing behind
        try:
            run_dir = make_run_dir()
            print("Training options:")
            print(json.dumps(options.to_dict(), indent=2))
            print(f"Output directory: {run_dir}  ({config.num_workers} Ray worker(s), "
                  f"max_failures={config.max_failures})")  # fmt: skip
            done = train_on_ray(options, run_dir, config)
        finally:
            if started:
                ray.shutdown()
    except RayLaunchError as error:
        print(f"stylegan train: {error}", file=sys.stderr)
        return 3
    print(f"Ray job {done.job_id} on {done.address}")
    print(f"Done: kimg {done.result['kimg']:g}, last snapshot {done.result['last_snapshot']}")
    return 0
