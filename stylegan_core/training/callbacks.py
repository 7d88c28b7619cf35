"""What the training loop tells its caller (Dagster, a CLI, a notebook) and how the caller can stop it.

The loop never knows who listens: it calls `on_tick` after every tick and `on_snapshot` after every snapshot (rank 0
only), and polls `should_abort` once per tick on every rank (any rank asking stops all ranks, with a final snapshot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TickInfo:
    """The status of one tick, as printed in the tick line (NVIDIA's fields) plus the mean losses."""

    tick: int
    cur_nimg: int
    kimg: float
    total_kimg: float
    time_s: float
    """Wall time since training (this invocation) started."""
    sec_per_tick: float
    sec_per_kimg: float
    maintenance_s: float
    """Time spent outside training steps (snapshots, metrics, grids) since the previous tick."""
    cpu_mem_gb: float
    gpu_mem_gb: float
    """Peak GPU memory allocated during the tick (0 on CPU)."""
    augment_p: float
    losses: dict[str, float] = field(default_factory=dict)
    """Mean of every `Loss/...` statistic over the tick (e.g. `Loss/G/loss`, `Loss/D/loss`, `Loss/signs/real`)."""
    done: bool = False
    percent: float = 0.0
    """cur_nimg as a percentage of total_kimg."""
    eta_s: float = 0.0
    """Estimated seconds until total_kimg, at this invocation's average pace so far."""


@dataclass(frozen=True)
class SnapshotInfo:
    tick: int
    cur_nimg: int
    kimg: float
    snapshot_path: Path
    image_path: Path | None
    """The `fakes<kimg>.png` grid written with this snapshot (None if no grid was written)."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def _ignore(*args: object) -> None:
    pass


def _never() -> bool:
    return False


@dataclass(frozen=True)
class TrainCallbacks:
    on_tick: Callable[[TickInfo], None] = _ignore
    on_snapshot: Callable[[SnapshotInfo], None] = _ignore
    should_abort: Callable[[], bool] = _never
    on_log: Callable[[str], None] | None = None
    """Every log.txt line (tick lines, metric announcements and progress) instead of stdout; None = print."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    cur_nimg: int
    kimg: float
    ticks: int
    """Ticks completed in this invocation's run (including ticks before a resume)."""
    last_snapshot: Path | None
    aborted: bool
    augment_p: float
    losses: dict[str, float] = field(default_factory=dict)
    """Mean losses of the last tick."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """Metrics of the last snapshot (empty if none were evaluated)."""
