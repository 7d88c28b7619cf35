"""StyleGAN2-ADA training: loss, loop, snapshots, data parallel (see DESIGN.md section 5).

Launchers (CLI, Dagster, Ray, notebooks): `stylegan_core.training.worker.run_training`, the one training entry point
(continues from a run directory's latest snapshot; takes a process group created by the caller).
"""

from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.training.callbacks import SnapshotInfo, TickInfo, TrainCallbacks, TrainResult
from stylegan_core.training.distributed import DistributedContext, init_distributed
from stylegan_core.training.loop import TrainingDivergedError, train

__all__ = [
    "DistributedContext",
    "SnapshotInfo",
    "TickInfo",
    "TrainCallbacks",
    "TrainResult",
    "TrainingDivergedError",
    "find_latest_snapshot",
    "init_distributed",
    "train",
]
