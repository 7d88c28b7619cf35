"""Where a training partition's run lives, what it resumes from, and how torchrun is launched through Pipes.

Run directories: `<artifacts>/<spec>/<config>-<resolution>/<NNNNN>-d<data hash>-o<options hash>/`. The options hash
covers every option that changes what a training step computes (run-control fields such as kimg, tick and snapshot
intervals, the data path and metrics are left out, as `stylegan_core.training.state.RUN_CONTROL_FIELDS` lists), so:

* same data, same options → the same directory; training continues exactly from its latest snapshot;
* new data (content hash), same options → a new directory that starts from the previous run's latest snapshot
  (fine-tuning on the current data, when image channels and labels still fit), keeping the old directory;
* changed options → a new directory trained from scratch.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dagster_project.metadata import sha256_text
from dagster_project.resources import REPO_ROOT, StyleGANResource
from dagster_project.train_worker import HOOKS as PIPES_HOOKS
from stylegan_core.config import TrainOptions
from stylegan_core.io.atomic import write_json_atomic
from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.options import OptionError, yaml_name
from stylegan_core.presets import resolve_options
from stylegan_core.training.state import RUN_CONTROL_FIELDS
from stylegan_core.training.worker import OPTIONS_FILE as WORKER_OPTIONS_FILE

RUN_INFO_FILE = "dagster_run.json"
CURRENT_RUN_FILE = "current.json"
OPTIONS_FILE = WORKER_OPTIONS_FILE  # what the worker reads when no --options is given
_RUN_DIR = re.compile(r"^(\d{5})-d([0-9a-f]{8})-o([0-9a-f]{8})$")


@dataclass(frozen=True)
class DatasetFacts:
    """What a training plan needs to know about the dataset partition it trains on."""

    zip_path: Path
    manifest_path: Path
    content_hash: str
    channels: int
    label_dim: int


@dataclass(frozen=True)
class TrainingPlan:
    run_dir: Path
    options: TrainOptions
    """Resolved options, including `resume` when there is a snapshot to start from."""
    resume: Path | None
    mode: Literal["new", "continue", "fine-tune"]
    """fine-tune: a new run initialised from the previous run's latest snapshot (new data, same options)."""
    identity: str
    """options_identity of the options before `resume` was added (what the directory name encodes)."""


def options_identity(options: TrainOptions) -> str:
    """sha256 of the options that shape the training trajectory (run-control fields excluded)."""
    plain = options.to_dict()
    for section, names in RUN_CONTROL_FIELDS.items():
        for name in names:
            plain[section].pop(name, None)
    return sha256_text(json.dumps(plain, sort_keys=True, default=str))


def plan_training(
    run_root: Path,
    preset: str,
    overrides: Mapping[str, object],
    resolution: int,
    world_size: int,
    dataset: DatasetFacts,
    source: str,
) -> TrainingPlan:
    """Choose the run directory and resume snapshot for one training partition (see the module docstring)."""
    wanted = {**overrides, "data": str(dataset.zip_path)}
    try:
        options = resolve_options(preset, resolution, world_size, wanted, source=source)  # type: ignore[arg-type]
    except OptionError as error:
        # The spec loaded (checked with one GPU); this world size is what makes it fail: say so, by YAML key.
        raise ValueError(f"{source}.{error.key}: {error.message(yaml_name)} (with {world_size} GPUs)") from None
    identity = options_identity(options)
    data_id, options_id = dataset.content_hash[:8], identity[:8]
    runs = _existing_runs(run_root)
    same = [path for path, ids in runs if ids == (data_id, options_id)]
    if same:
        snapshot = find_latest_snapshot(same[-1])
        mode = "continue" if snapshot else "new"
        run_dir = same[-1]
    else:
        run_dir = run_root / f"{_next_index(runs):05d}-d{data_id}-o{options_id}"
        snapshot = _fine_tune_source(runs, options_id, dataset)
        mode = "fine-tune" if snapshot else "new"
    if snapshot is not None:
        options = resolve_options(preset, resolution, world_size, {**wanted, "resume": str(snapshot)}, source=source)  # type: ignore[arg-type]
    return TrainingPlan(run_dir, options, snapshot, mode, identity)


def _existing_runs(run_root: Path) -> list[tuple[Path, tuple[str, str]]]:
    """Run directories in creation order, with their (data, options) identities."""
    if not run_root.is_dir():
        return []
    found = []
    for path in sorted(run_root.iterdir()):
        match = _RUN_DIR.match(path.name)
        if match and path.is_dir():
            found.append((path, (match.group(2), match.group(3))))
    return found


def _next_index(runs: list[tuple[Path, tuple[str, str]]]) -> int:
    return max((int(path.name[:5]) for path, _ in runs), default=-1) + 1


def _fine_tune_source(runs: list[tuple[Path, tuple[str, str]]], options_id: str, dataset: DatasetFacts) -> Path | None:
    """The latest snapshot of the newest run with the same options whose networks fit the new data."""
    for path, (_, run_options_id) in reversed(runs):
        if run_options_id != options_id:
            continue
        info = read_run_info(path)
        if info.get("channels") != dataset.channels or info.get("label_dim") != dataset.label_dim:
            continue
        snapshot = find_latest_snapshot(path)
        if snapshot is not None:
            return snapshot
    return None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}


def prepare_run_dir(plan: TrainingPlan, dataset: DatasetFacts, partition_key: str) -> None:
    """Write what the worker reads (resolved options) and what later plans read (identity facts)."""
    write_json_atomic(plan.run_dir / OPTIONS_FILE, plan.options.to_dict())
    info = {
        "partition": partition_key,
        "content_hash": dataset.content_hash,
        "channels": dataset.channels,
        "label_dim": dataset.label_dim,
        "options_identity": plan.identity,
    }
    write_json_atomic(plan.run_dir / RUN_INFO_FILE, info)


def torchrun_command(sg: StyleGANResource, run_dir: Path, node_rank: int = 0) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", *sg.torchrun_args(node_rank),
        "-m", "stylegan_core.training.worker", "--run-dir", str(run_dir), "--hooks", PIPES_HOOKS,
    ]  # fmt: skip


def worker_env() -> dict[str, str]:
    # The worker imports dagster_project from the repository even when the package is not installed.
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}


def record_current_run(run_root: Path, run_dir: Path, snapshot: str) -> None:
    """Point metrics, samples and checks at the run (and snapshot) the network asset last materialised."""
    write_json_atomic(run_root / CURRENT_RUN_FILE, {"run_dir": str(run_dir), "snapshot": snapshot})


def current_snapshot(run_root: Path) -> tuple[Path, Path]:
    """(run_dir, snapshot) of the partition's last materialised network, or a clear error."""
    pointer = run_root / CURRENT_RUN_FILE
    try:
        current = json.loads(pointer.read_text())
    except (OSError, ValueError):
        raise FileNotFoundError(
            f"{pointer}: no trained network for this partition yet; materialise `network` first"
        ) from None
    snapshot = Path(current["snapshot"])
    if not snapshot.is_file():
        raise FileNotFoundError(f"{pointer} names snapshot {snapshot}, which does not exist; re-materialise `network`")
    return Path(current["run_dir"]), snapshot
