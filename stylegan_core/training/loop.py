"""The StyleGAN2-ADA training loop (NVIDIA's `training_loop.py` structure), as a table of contents of small steps.

One iteration: fetch one real batch (reused by every phase) -> phases Gmain, Greg (every g_reg_interval), Dmain,
Dreg (every d_reg_interval), each zero_grad -> accumulation rounds -> gradient all-reduce -> Adam step -> G_ema
update -> ADA update every ada.interval iterations -> at the end of a tick: status line, stats.jsonl, callbacks,
grids and snapshots. Setup lives in `training.setup`; snapshot writing in `training.checkpoint`.

Deliberate differences from NVIDIA (see also `training.sampling`):
* each accumulation round's loss is scaled by 1/rounds, so gradients are the mean over the whole global batch
  however it is split over ranks and rounds (NVIDIA sums over rounds; with Adam that only rescales epsilon);
* randomness is reseeded per (iteration, phase, chunk), which makes resume exact and runs independent of the GPU count;
* non-finite gradients stop the run at the end of the tick with an error naming the phase (NVIDIA zeroes them).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stylegan_core.config import LoopConfig, TrainOptions
from stylegan_core.training import checkpoint
from stylegan_core.training.callbacks import TickInfo, TrainCallbacks, TrainResult
from stylegan_core.training.distributed import (
    DistributedContext,
    all_reduce_gradients,
    any_rank,
    init_distributed,
    shutdown_distributed,
)
from stylegan_core.training.report import append_stats_line, cpu_memory_gb, peak_gpu_memory_gb, tick_line
from stylegan_core.training.sampling import chunk_indices, seed_chunk
from stylegan_core.training.setup import Phase, TrainingRun, setup_training
from stylegan_core.training.stats import StatSummary


class TrainingDivergedError(RuntimeError):
    """A loss or gradient became NaN or infinite; the run stopped without writing a snapshot of the bad state."""


def train(
    options: TrainOptions,
    run_dir: str | Path,
    callbacks: TrainCallbacks | None = None,
    *,
    world: DistributedContext | None = None,
) -> TrainResult:
    """Train (or continue training) into `run_dir`; returns when total_kimg is reached or an abort is requested."""
    owns_process_group = world is None
    world = world or init_distributed(timeout_s=options.loop.dist_timeout_s)
    callbacks = callbacks or TrainCallbacks()
    try:
        run = setup_training(options, Path(run_dir), world, callbacks.on_log)
        try:
            return _training_loop(run, callbacks)
        finally:
            run.close()
    finally:
        if owns_process_group:
            shutdown_distributed(world)


def _training_loop(run: TrainingRun, callbacks: TrainCallbacks) -> TrainResult:
    if run.progress.cur_nimg >= run.options.loop.total_kimg * 1000:
        run.log.write(f"Nothing to do: {run.options.loop.resume} is already at kimg {run.progress.cur_nimg / 1000:g}.")
        run.last_snapshot = Path(run.options.loop.resume)
        return run.result()
    run.log.write(f"Training for {run.options.loop.total_kimg:g} kimg from kimg {run.progress.cur_nimg / 1000:g}...")
    _note_slow_metrics(run)
    run.progress.start_timers()
    run.progress.start_nimg = run.progress.cur_nimg
    while True:
        real_img, real_c = _fetch_reals(run)
        for phase_idx, phase in enumerate(run.phases):
            if run.progress.batch_idx % phase.interval == 0:
                _run_phase(run, phase_idx, phase, real_img, real_c)
        _update_ema(run)
        run.progress.cur_nimg += run.options.loop.batch
        run.progress.batch_idx += 1
        _update_ada(run)
        done = run.progress.cur_nimg >= run.options.loop.total_kimg * 1000
        if not done and not run.progress.tick_due(run.options.loop.kimg_per_tick):
            continue
        if _end_of_tick(run, callbacks, done):
            break
    return run.result()


def _note_slow_metrics(run: TrainingRun) -> None:
    """On a CPU, say before the first tick how long each snapshot's metrics will take, and how to pick smaller ones."""
    from stylegan_core.metric_names import parse_metric_name
    from stylegan_core.metrics.progress import slow_metric_note

    names = list(run.options.metrics.names)
    note = slow_metric_note(names, {name: parse_metric_name(name).num_gen for name in names}, run.device.type)
    if note is not None:
        run.log.write(note)


def _fetch_reals(run: TrainingRun) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """This rank's real images for all rounds of the iteration, as [-1, 1] floats split into batch_gpu chunks."""
    images, labels = next(run.data_iter)
    images = images.to(run.device, non_blocking=True).to(torch.float32) / 127.5 - 1
    labels = labels.to(run.device, non_blocking=True).to(torch.float32)
    return list(images.split(run.batch_gpu)), list(labels.split(run.batch_gpu))


def _run_phase(
    run: TrainingRun, phase_idx: int, phase: Phase, real_img: list[torch.Tensor], real_c: list[torch.Tensor]
) -> None:
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    chunks = chunk_indices(run.rounds, run.world.rank, run.world.world_size)
    for round_idx, chunk in enumerate(chunks):
        labels_rng = seed_chunk(run.options.loop.seed, run.progress.batch_idx, phase_idx, chunk)
        gen_z = torch.randn([run.batch_gpu, run.G.z_dim], device=run.device)
        gen_c = run.random_labels(labels_rng, run.batch_gpu)
        run.loss.accumulate_gradients(
            phase.name, real_img[round_idx], real_c[round_idx], gen_z, gen_c, gain=phase.interval / run.rounds
        )
    phase.module.requires_grad_(False)
    flat_grad = all_reduce_gradients(phase.module.parameters(), run.world)
    if flat_grad is not None:
        _track_nonfinite(run, phase_idx, flat_grad)
    phase.opt.step()


def _track_nonfinite(run: TrainingRun, phase_idx: int, flat_grad: torch.Tensor) -> None:
    # Recorded on the device (no synchronisation per step); checked once per tick, before any snapshot is written.
    bad = ~torch.isfinite(flat_grad).all()
    first = run.first_nonfinite[phase_idx]
    run.first_nonfinite[phase_idx] = torch.where(bad & (first < 0), run.progress.batch_idx, first)


def ema_beta(batch: int, cur_nimg: int, loop: LoopConfig) -> float:
    """Per-step decay of G_ema: half-life ema_kimg thousand images, ramped up as cur_nimg * ema_rampup if set."""
    ema_nimg = loop.ema_kimg * 1000
    if loop.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * loop.ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def _update_ema(run: TrainingRun) -> None:
    beta = ema_beta(run.options.loop.batch, run.progress.cur_nimg, run.options.loop)
    ema_params, params = list(run.G_ema.parameters()), list(run.G.parameters())
    torch._foreach_lerp_(ema_params, params, 1 - beta)  # ema = beta * ema + (1 - beta) * param
    for ema_buffer, buffer in zip(run.G_ema.buffers(), run.G.buffers(), strict=True):
        ema_buffer.copy_(buffer)  # w_avg and noise constants follow G directly


def _update_ada(run: TrainingRun) -> None:
    if run.ada is not None and run.ada.is_due(run.progress.batch_idx):
        run.ada.update(run.augment_pipe)  # every rank calls it: r_t is all-reduced inside


def _end_of_tick(run: TrainingRun, callbacks: TrainCallbacks, done: bool) -> bool:
    """Report the tick, check for divergence, write grids and snapshots; return True when training should stop."""
    progress, loop = run.progress, run.options.loop
    tick_end_time = time.time()
    fields = _tick_fields(run, tick_end_time)
    run.log.write(tick_line(fields, kimg_digits=1 if min(loop.kimg_per_tick, loop.total_kimg) >= 1 else 3))
    for name, key in _PROGRESS_STATS.items():
        run.stats.report(name, torch.tensor(fields[key], dtype=torch.float64))
    aborted = any_rank(callbacks.should_abort(), run.world, run.device)
    summaries = run.stats.summarize()
    if run.world.is_main:
        append_stats_line(run.run_dir, summaries)
    if run.tracker is not None:
        run.tracker.scalars({name: s.mean for name, s in summaries.items()}, progress.cur_nimg, tick_end_time)
    _check_finite(run, summaries)
    losses = {name: s.mean for name, s in summaries.items() if name.startswith("Loss/")}
    run.last_losses = losses
    if run.world.is_main:
        callbacks.on_tick(_tick_info(fields, loop.total_kimg, losses, done or aborted))
    if aborted and not done:
        run.log.write(f"Abort requested at kimg {progress.cur_nimg / 1000:g}; writing a final snapshot.")
        run.aborted = True
    done = done or aborted
    if done or (loop.snap is not None and progress.cur_tick % loop.snap == 0):
        checkpoint.write_snapshot(run, callbacks)
        # A signal that came during the snapshot (its metrics can take minutes) stops here: the snapshot just
        # written is the last one, instead of training another tick and writing one more.
        if not done and any_rank(callbacks.should_abort(), run.world, run.device):
            run.log.write(f"Abort requested while writing the snapshot at kimg {progress.cur_nimg / 1000:g}; "
                          "it is the last one.")  # fmt: skip
            run.aborted = done = True
    progress.next_tick(tick_end_time)
    return done


_PROGRESS_STATS = {
    "Progress/tick": "tick",
    "Progress/kimg": "kimg",
    "Progress/augment": "augment_p",
    "Timing/total_sec": "time",
    "Timing/sec_per_tick": "sec_per_tick",
    "Timing/sec_per_kimg": "sec_per_kimg",
    "Timing/maintenance_sec": "maintenance",
    "Timing/total_hours": "total_hours",
    "Timing/total_days": "total_days",
    "Resources/cpu_mem_gb": "cpu_mem_gb",
    "Resources/peak_gpu_mem_gb": "gpu_mem_gb",
}


def _tick_fields(run: TrainingRun, tick_end_time: float) -> dict[str, float]:
    progress = run.progress
    tick_seconds = tick_end_time - progress.tick_start_time
    tick_nimg = max(progress.cur_nimg - progress.tick_start_nimg, 1)
    total = tick_end_time - progress.start_time
    target_nimg = run.options.loop.total_kimg * 1000
    # ETA from this invocation's average pace (snapshots and metrics included), over the images still to train.
    pace = total / max(progress.cur_nimg - progress.start_nimg, 1)
    return {
        "percent": 100.0 * min(progress.cur_nimg / max(target_nimg, 1), 1.0),
        "eta": max(target_nimg - progress.cur_nimg, 0) * pace,
        "tick": progress.cur_tick,
        "cur_nimg": progress.cur_nimg,
        "kimg": progress.cur_nimg / 1000,
        "time": total,
        "sec_per_tick": tick_seconds,
        "sec_per_kimg": tick_seconds / tick_nimg * 1000,
        "maintenance": progress.maintenance_s,
        "cpu_mem_gb": cpu_memory_gb(),
        "gpu_mem_gb": peak_gpu_memory_gb(run.device),
        "augment_p": run.augment_p(),
        "total_hours": total / 3600,
        "total_days": total / 86400,
    }


def _tick_info(fields: dict[str, float], total_kimg: float, losses: dict[str, float], done: bool) -> TickInfo:
    return TickInfo(
        tick=int(fields["tick"]), cur_nimg=int(fields["cur_nimg"]), kimg=fields["kimg"], total_kimg=total_kimg,
        time_s=fields["time"], sec_per_tick=fields["sec_per_tick"], sec_per_kimg=fields["sec_per_kimg"],
        maintenance_s=fields["maintenance"], cpu_mem_gb=fields["cpu_mem_gb"], gpu_mem_gb=fields["gpu_mem_gb"],
        augment_p=fields["augment_p"], losses=losses, done=done, percent=fields["percent"], eta_s=fields["eta"],
    )  # fmt: skip


def _check_finite(run: TrainingRun, summaries: dict[str, StatSummary]) -> None:
    """Stop with a clear error if any phase produced non-finite gradients or any loss statistic is non-finite."""
    first = run.first_nonfinite.cpu().tolist()
    bad_phases = [(step, run.phases[i].name) for i, step in enumerate(first) if step >= 0]
    bad_stats = [name for name, s in summaries.items() if name.startswith("Loss/") and s.num and not _finite(s.mean)]
    if not bad_phases and not bad_stats:
        return
    where = f"tick {run.progress.cur_tick} (kimg {run.progress.cur_nimg / 1000:g})"
    if bad_phases:
        step, phase = min(bad_phases)
        problem = f"non-finite gradients in phase {phase} at iteration {step}"
    else:
        problem = f"non-finite loss statistics {bad_stats}"
    kept = run.last_snapshot or "none written yet"
    message = (
        f"training diverged: {problem}, {where}; no snapshot of this state was written; last good snapshot: {kept}"
    )
    run.log.write(message, error=True)
    raise TrainingDivergedError(message)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
