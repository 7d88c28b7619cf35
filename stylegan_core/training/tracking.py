"""Experiment tracking beside stats.jsonl: TensorBoard events in every run directory, MLflow when configured.

TensorBoard: NVIDIA's `stats.tfevents` scalars, with NVIDIA's names (every stats.jsonl statistic, e.g. `Loss/G/loss`,
`Progress/kimg`, `Timing/sec_per_kimg`, plus `Metrics/<metric>` at snapshots) and NVIDIA's step, whole kimg; a run
whose ticks are under 1 kimg (CPU-sized) uses the image count as the step instead, or every point would sit at step 0.
`tensorboard --logdir <run dir or outdir>` reads them.

MLflow (optional): with `STYLEGAN_MLFLOW_URI` (else `MLFLOW_TRACKING_URI`) set, e.g. `sqlite:///mlflow.db` or
`http://host:5000`, each training invocation is an MLflow run in experiment `STYLEGAN_MLFLOW_EXPERIMENT` (default
`stylegan`), named after the run directory: the resolved options as parameters, the same scalars as metrics, and
training_options.json, the fakes grids, metric-*.jsonl and log.txt as artifacts. The `mlflow` (or `mlflow-skinny`)
package is needed only then; without it the run says so once and trains on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MLFLOW_URI_ENV = "STYLEGAN_MLFLOW_URI"
MLFLOW_EXPERIMENT_ENV = "STYLEGAN_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "stylegan"


def mlflow_uri() -> str | None:
    return os.environ.get(MLFLOW_URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI") or None


def flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"loop": {"batch": 32}} -> {"loop.batch": "32"} (MLflow parameters are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class Tracker:
    """Rank 0's writers; every method is a no-op for a disabled tracker (other ranks)."""

    def __init__(self, run_dir: Path, options: Mapping[str, Any], sub_kimg_ticks: bool, log: Callable[[str], None]):
        self.run_dir = run_dir
        self.sub_kimg_ticks = sub_kimg_ticks
        self.start_time: float | None = None
        self.tensorboard = _tensorboard_writer(run_dir, log)
        self.mlflow = _start_mlflow(run_dir, options, log)

    def step(self, cur_nimg: int) -> int:
        return cur_nimg if self.sub_kimg_ticks else cur_nimg // 1000

    def scalars(self, values: Mapping[str, float], cur_nimg: int, timestamp: float) -> None:
        """One tick's statistics (or a snapshot's `Metrics/...`), wall time relative to the first call as NVIDIA's."""
        if self.start_time is None:
            self.start_time = timestamp
        step = self.step(cur_nimg)
        finite = {name: float(value) for name, value in values.items() if value == value}  # NaN: nothing reported
        if self.tensorboard is not None:
            for name, value in finite.items():
                self.tensorboard.add_scalar(name, value, global_step=step, walltime=timestamp - self.start_time)
            self.tensorboard.flush()  # readable while training runs
        if self.mlflow is not None:
            self.mlflow.log_metrics(finite, step=step)  # NVIDIA's names are valid MLflow keys (letters, _ / .)

    def artifact(self, path: Path) -> None:
        if self.mlflow is not None and path.is_file():
            self.mlflow.log_artifact(str(path))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.mlflow is not None:
            for path in sorted(self.run_dir.glob("metric-*.jsonl")) + [self.run_dir / "log.txt"]:
                self.artifact(path)
            self.mlflow.end_run()
            self.mlflow = None


def _tensorboard_writer(run_dir: Path, log: Callable[[str], None]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # a project dependency; an environment without it still trains
        log("TensorBoard events are not written: the tensorboard package is not installed.")
        return None
    return SummaryWriter(str(run_dir))


def _start_mlflow(run_dir: Path, options: Mapping[str, Any], log: Callable[[str], None]) -> Any:
    uri = mlflow_uri()
    if uri is None:
        return None
    try:
        import mlflow
    except ImportError:
        log(f"MLflow tracking URI {uri} is set but the mlflow package is not installed; not logging to MLflow "
            "(pip install mlflow-skinny).")  # fmt: skip
        return None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get(MLFLOW_EXPERIMENT_ENV) or DEFAULT_EXPERIMENT)
    mlflow.start_run(run_name=run_dir.name, tags={"run_dir": str(run_dir)})
    mlflow.log_params(flatten(options))
    log(f"Logging to MLflow at {uri}, run {mlflow.active_run().info.run_id}.")
    return mlflow
