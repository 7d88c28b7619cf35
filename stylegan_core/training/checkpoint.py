"""Writing snapshots during training, and restoring a run from one (continue) or copying its weights (transfer)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from stylegan_core.io.snapshot import DatasetInfo, Progress, Snapshot, save_snapshot, snapshot_label, snapshot_path
from stylegan_core.training.callbacks import SnapshotInfo, TrainCallbacks
from stylegan_core.training.distributed import gather_objects
from stylegan_core.training.state import capture_rng_state, copy_weights, restore_rng_state

if TYPE_CHECKING:
    from pathlib import Path

    from stylegan_core.training.setup import TrainingRun


def write_snapshot(run: TrainingRun, callbacks: TrainCallbacks) -> None:
    """Snapshot file and fakes grid (rank 0), metrics (all ranks, sharded), then `on_snapshot` (rank 0)."""
    rank_states = gather_objects(_rank_state(run), run.world)
    progress = run.progress
    path = snapshot_path(run.run_dir, progress.cur_nimg)
    image_path = run.run_dir / f"fakes{snapshot_label(progress.cur_nimg)}.png"
    if run.world.is_main:
        save_snapshot(path, snapshot_state(run, rank_states))
        run.last_snapshot = path
        run.grid.write_fakes(run.G_ema, image_path, run.batch_gpu)
    run.last_metrics = _skip_metrics_on_abort(run, path) if run.aborted else evaluate_metrics(run, path)
    if run.tracker is not None:
        values = {f"Metrics/{key}": value for result in run.last_metrics.values() for key, value in result.items()}
        run.tracker.scalars(values, progress.cur_nimg, time.time())
        run.tracker.artifact(image_path)
    if run.world.is_main:
        callbacks.on_snapshot(SnapshotInfo(
            tick=progress.cur_tick, cur_nimg=progress.cur_nimg, kimg=progress.cur_nimg / 1000, snapshot_path=path,
            image_path=image_path, metrics=run.last_metrics,
        ))  # fmt: skip


def _skip_metrics_on_abort(run: TrainingRun, path: Path) -> dict[str, dict[str, float]]:
    # Whoever stops a run wants it to stop: a 50k metric takes hours on a CPU. Say how to evaluate it later.
    names = ",".join(run.options.metrics.names)
    if names and run.world.is_main:
        command = f"stylegan metrics --network {path} --data {run.options.data.path} --metrics {names}"
        run.log.write(f"Metrics of this final snapshot are not evaluated (the run was stopped); later: {command}")
    return {}


def _rank_state(run: TrainingRun) -> dict[str, Any]:
    # The ADA sign accumulator is per rank between updates, like the RNG and pl_mean.
    ada = run.ada.state_dict() if run.ada is not None else None
    return {"rng": capture_rng_state(), "pl_mean": run.loss.pl_mean.detach().cpu().clone(), "ada": ada}


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}


def snapshot_state(run: TrainingRun, rank_states: list[dict[str, Any]]) -> Snapshot:
    """The whole training state as plain data and CPU tensors (the one Snapshot type of stylegan_core.io.snapshot)."""
    dataset, pipe = run.dataset, run.augment_pipe
    return Snapshot(
        G_kwargs=run.G.init_kwargs, D_kwargs=run.D.init_kwargs,
        G=_cpu_state(run.G), D=_cpu_state(run.D), G_ema=_cpu_state(run.G_ema),
        G_opt=run.G_opt.state_dict(), D_opt=run.D_opt.state_dict(),
        augment_pipe=run.options.augment.pipe if pipe is not None else None,
        augment_p=float(pipe.p.detach().cpu()) if pipe is not None else None,
        ada=tuple(state["ada"] for state in rank_states) if run.ada is not None else None,
        progress=Progress(run.progress.cur_nimg, run.progress.cur_tick, run.progress.batch_idx),
        pl_mean=torch.stack([state["pl_mean"] for state in rank_states]),
        rng=tuple(state["rng"] for state in rank_states), world_size=run.world.world_size,
        options=run.options.to_dict(),
        dataset=DatasetInfo(dataset.content_hash, dataset.resolution, dataset.num_channels, dataset.label_dim,
                            dataset_class_names(run.options.data.path)),
    )  # fmt: skip


def dataset_class_names(data_path: str) -> list[str] | None:
    """Class names from the manifest beside the dataset zip (sub-folder labels), so `--class NAME` works later."""
    from stylegan_core.data.ingest import manifest_path_for
    from stylegan_core.data.manifest import read_manifest_report

    manifest = manifest_path_for(data_path)
    try:
        names = read_manifest_report(manifest).get("class_names") if manifest.is_file() else None
    except (OSError, ValueError, KeyError):
        return None  # the names are a convenience; an unreadable manifest must not stop a snapshot
    return [str(name) for name in names] if names else None


def restore(run: TrainingRun, snapshot: Snapshot) -> None:
    """Continue: put every piece of saved state back (this rank's RNG and pl_mean when the world size matches)."""
    assert snapshot.progress is not None and snapshot.pl_mean is not None and snapshot.rng is not None
    for module, state in ((run.G, snapshot.G), (run.D, snapshot.D), (run.G_ema, snapshot.G_ema)):
        module.load_state_dict(state)
    _load_optimizer(run.G_opt, snapshot.G_opt)
    _load_optimizer(run.D_opt, snapshot.D_opt)
    if run.augment_pipe is not None and snapshot.augment_p is not None:
        run.augment_pipe.p.fill_(snapshot.augment_p)
    if run.ada is not None and snapshot.ada is not None:
        run.ada.load_state_dict(_ada_state_for_rank(list(snapshot.ada), run.world.rank, run.world.world_size))
    progress = snapshot.progress
    run.progress.cur_nimg = run.progress.tick_start_nimg = progress.cur_nimg
    run.progress.batch_idx = progress.batch_idx
    run.progress.cur_tick = progress.cur_tick + 1  # the snapshot was written at the end of that tick
    same_world = snapshot.world_size == run.world.world_size
    rank = run.world.rank if same_world else 0
    run.loss.pl_mean.copy_(snapshot.pl_mean[rank])
    if same_world:
        restore_rng_state(snapshot.rng[rank])


def _ada_state_for_rank(per_rank: list[dict[str, float]], rank: int, world_size: int) -> dict[str, float]:
    """This rank's pending ADA signs; with another world size the totals go to rank 0, so none are lost."""
    if len(per_rank) == world_size:
        return per_rank[rank]
    if rank != 0:
        return {"sign_sum": 0.0, "sign_count": 0.0}
    return {key: sum(state[key] for state in per_rank) for key in ("sign_sum", "sign_count")}


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    # Moments and step counts come from the snapshot; learning rate and betas from the current options.
    hyperparameters = [
        {key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(state)
    for group, values in zip(optimizer.param_groups, hyperparameters, strict=True):
        group.update(values)


def transfer(run: TrainingRun, snapshot: Snapshot) -> None:
    """Fine-tune: copy G, D and G_ema weights by name; optimisers, progress and augment p start afresh."""
    source = run.options.loop.resume
    targets = {"G": run.G, "D": run.D, "G_ema": run.G_ema}
    kept = copy_weights(targets, snapshot.to_dict(), f"--resume {source}")
    if kept:
        more = " ..." if len(kept) > 20 else ""
        run.log.write(f"Not in {source}, left at their initial values: {', '.join(kept[:20])}{more}")


def evaluate_metrics(run: TrainingRun, snapshot_file: Path) -> dict[str, dict[str, float]]:
    """Metrics of G_ema at a snapshot, sharded over all ranks; rank 0 appends them to metric-<name>.jsonl."""
    names = list(run.options.metrics.names)
    if not names:
        return {}
    from stylegan_core.metrics import compute_metrics
    from stylegan_core.metrics.progress import LineProgress

    # Lines, not a bar: they reach log.txt and, through the log callback, an orchestrator's run log.
    progress = LineProgress(run.log.write) if run.world.is_main else False
    results = compute_metrics(
        run.G_ema, run.options.data.path, names, run.device, cache_dir=run.options.metrics.cache_dir,
        detector=run.options.metrics.detector, vgg16=run.options.metrics.vgg16, rank=run.world.rank,
        world_size=run.world.world_size, progress=progress, run_dir=run.run_dir if run.world.is_main else None,
        snapshot_path=snapshot_file,
    )  # fmt: skip
    return {name: {key: float(value) for key, value in result.items()} for name, result in results.items()}
