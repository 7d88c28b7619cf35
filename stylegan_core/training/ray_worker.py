"""What each Ray Train worker runs: join the process group Ray created, check the run directory is shared, train.

`ray_train_loop(config)` is the `train_loop_per_worker` of `ray_launcher`'s `TorchTrainer`. Ray Train has already
called `init_process_group` (gloo on CPU, NCCL on GPU) and set RANK/WORLD_SIZE/LOCAL_RANK, so the worker only
describes that group to our loop (`DistributedContext`) and calls the same entry point torchrun's worker calls,
`worker.run_training`, which continues from the run directory's latest snapshot. That is the whole recovery story:
when Ray restarts a lost worker group, every new worker lands here again and resumes exactly.

Outcomes that a restart cannot fix (storage not shared, a diverged run) are *returned* as a status instead of raised,
so Ray does not spend `max_failures` retrying them; rank 0's return value reaches the driver as `Result.return_value`.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import torch

from stylegan_core.config import TrainOptions
from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.training.callbacks import TickInfo, TrainCallbacks
from stylegan_core.training.distributed import DistributedContext, gather_objects
from stylegan_core.training.loop import TrainingDivergedError
from stylegan_core.training.ray_launcher import ABORT_FILE, probe_file
from stylegan_core.training.worker import run_training


def ray_train_loop(config: dict[str, Any]) -> dict[str, Any]:
    import ray.train

    context = ray.train.get_context()
    world = DistributedContext(
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        local_rank=context.get_local_rank(),
        device=_device(bool(config["use_gpu"]), context.get_local_rank()),
    )
    run_dir = Path(config["run_dir"])
    problem = probe_shared_storage(run_dir, world, config["nonce"])
    if problem:
        return {"status": "refused", "message": problem}
    options = TrainOptions.from_dict(config["options"])
    last_tick: list[TickInfo] = []
    callbacks = TrainCallbacks(
        on_tick=lambda tick: last_tick.__setitem__(slice(None), [tick]),
        should_abort=lambda: (run_dir / ABORT_FILE).exists(),
    )
    resumed_from = find_latest_snapshot(run_dir)  # what run_training continues from (None: a fresh start)
    try:
        result = run_training(options, run_dir, callbacks, world=world)
    except TrainingDivergedError as error:
        return {"status": "diverged", "message": str(error)}
    summary = {key: str(value) if isinstance(value, Path) else value for key, value in vars(result).items()}
    return {
        "status": "done",
        "result": summary,
        "last_tick": dataclasses.asdict(last_tick[0]) if last_tick else None,
        "resumed_from": str(resumed_from) if resumed_from else options.loop.resume,
        "world_size": world.world_size,
    }


def _device(use_gpu: bool, local_rank: int) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()


def probe_shared_storage(run_dir: Path, world: DistributedContext, nonce: str) -> str | None:
    """None if every rank sees the same `run_dir` (and the driver's probe file in it); else one sentence why not.

    Each rank writes a probe file, waits for the others, then checks that it can read every rank's file and the one
    the driver wrote before launching. On node-local disks the files of other nodes are missing, which is exactly
    the situation in which a restarted worker group would resume from the wrong (or no) snapshot.
    """
    host = socket.gethostname()
    error = None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe_file(run_dir, nonce, world.rank).write_text(f"{nonce} {world.rank}", encoding="utf-8")
    except OSError as caught:
        error = f"cannot write to it ({caught.strerror or caught})"
    gather_objects(None, world)  # a barrier: every rank has written before anyone reads
    if error is None:
        expected = {"driver": nonce, **{str(rank): f"{nonce} {rank}" for rank in range(world.world_size)}}
        missing = [name for name, text in expected.items() if _read(probe_file(run_dir, nonce, name)) != text]
        error = f"cannot see the probe files of {', '.join(missing)}" if missing else None
    verdicts = gather_objects((world.rank, host, error), world)
    gather_objects(None, world)  # every rank has read before anyone deletes its file
    try:
        probe_file(run_dir, nonce, world.rank).unlink(missing_ok=True)
    except OSError:
        pass
    bad = [(rank, where, what) for rank, where, what in verdicts if what is not None]
    if not bad:
        return None
    rank, where, what = bad[0]
    return (
        f"run directory {run_dir} is not shared storage: worker rank {rank} on {where} {what}"
        f"{f' (and {len(bad) - 1} more worker(s) disagree)' if len(bad) > 1 else ''}; "
        "put the run directory on a filesystem every Ray node mounts at the same path"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None

