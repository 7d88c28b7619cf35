"""Everything the training loop needs, built in NVIDIA's order: seeds, dataset, networks, G_ema, resume, augment
pipe and ADA, loss, optimisers with the lazy-regularisation adjustment, the data stream and the fixed image grid."""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_core.config import DataConfig, LoopConfig, OptimizerConfig, TrainOptions
from stylegan_core.io.atomic import write_text_atomic
from stylegan_core.io.snapshot import Snapshot
from stylegan_core.presets import batch_geometry, resolve_precision, validate_options
from stylegan_core.training import checkpoint
from stylegan_core.training.callbacks import TrainResult
from stylegan_core.training.distributed import DistributedContext, broadcast_module
from stylegan_core.training.loss import StyleGAN2Loss
from stylegan_core.training.report import RunLog, SnapshotGrid, setup_snapshot_grid
from stylegan_core.training.sampling import IterationBatchSampler
from stylegan_core.training.state import _load_resume_state, can_continue, continued_options
from stylegan_core.training.stats import StatsCollector
from stylegan_core.training.tracking import Tracker


@dataclass
class Phase:
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int


@dataclass
class Progress:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    start_nimg: int = 0
    """cur_nimg when this invocation started training (after a resume), for the ETA."""
    start_time: float = 0.0
    tick_start_time: float = 0.0
    maintenance_s: float = 0.0

    def start_timers(self) -> None:
        self.start_time = self.tick_start_time = time.time()

    def tick_due(self, kimg_per_tick: float) -> bool:
        # As NVIDIA's: tick 0 ends after the first iteration, later ticks every kimg_per_tick.
        return self.cur_tick == 0 or self.cur_nimg >= self.tick_start_nimg + kimg_per_tick * 1000

    def next_tick(self, tick_end_time: float) -> None:
        self.cur_tick += 1
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance_s = self.tick_start_time - tick_end_time


@dataclass
class TrainingRun:
    """The mutable state of one training invocation (one per rank)."""

    options: TrainOptions
    run_dir: Path
    world: DistributedContext
    log: RunLog
    dataset: Any
    batch_gpu: int
    rounds: int
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    G_opt: torch.optim.Optimizer
    D_opt: torch.optim.Optimizer
    phases: list[Phase]
    augment_pipe: torch.nn.Module | None
    ada: Any
    loss: StyleGAN2Loss
    stats: StatsCollector
    first_nonfinite: torch.Tensor
    """Per phase: the first iteration whose averaged gradient was not finite, or -1."""
    progress: Progress = field(default_factory=Progress)
    data_iter: Iterator | None = None
    grid: SnapshotGrid | None = None
    last_snapshot: Path | None = None
    last_losses: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    aborted: bool = False
    tracker: Tracker | None = None
    """TensorBoard (and MLflow when configured) writers, rank 0 only."""

    @property
    def device(self) -> torch.device:
        return self.world.device

    def random_labels(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        """Labels of random dataset items (NVIDIA's way of drawing c for generated images): [count, label_dim]."""
        indices = rng.integers(len(self.dataset), size=count)
        labels = np.stack([self.dataset.get_label(int(index)) for index in indices]).astype(np.float32)
        return torch.from_numpy(labels).to(self.device)

    def augment_p(self) -> float:
        return float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0

    def result(self) -> TrainResult:
        return TrainResult(
            run_dir=self.run_dir, cur_nimg=self.progress.cur_nimg, kimg=self.progress.cur_nimg / 1000,
            ticks=self.progress.cur_tick, last_snapshot=self.last_snapshot, aborted=self.aborted,
            augment_p=self.augment_p(), losses=dict(self.last_losses), metrics=dict(self.last_metrics),
        )  # fmt: skip

    def close(self) -> None:
        self.data_iter = None  # shuts the DataLoader's worker processes down
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        close = getattr(self.dataset, "close", None)
        if close is not None:
            close()


def setup_training(
    options: TrainOptions, run_dir: Path, world: DistributedContext, echo: Callable[[str], None] | None = None
) -> TrainingRun:
    """`echo`: where log lines go besides log.txt (default: stdout/stderr), e.g. an orchestrator's run log."""
    validate_options(options, world.world_size, "training options")
    options = resolve_precision(options, world.device.type)  # float32 on the CPU unless fp16_on_cpu; recorded below
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir, world.is_main, echo)
    _seed_process(options.loop.seed, world)
    _configure_backends(options.loop, world.device)
    dataset = open_dataset(options.data, options.loop.seed)
    G, D = _build_networks(options, dataset, world.device)
    G_ema = copy.deepcopy(G).eval()
    snapshot, continuing, options = _resolve_resume(options, G, D, dataset, log)
    batch_gpu, rounds = batch_geometry(options, world.world_size)
    augment_pipe, ada = _build_augment(options, world.device)
    _check_metric_names(options)
    stats = StatsCollector(world.device, world.distributed)
    loss = StyleGAN2Loss(G, D, options.loss, augment_pipe, report=_reporter(stats, ada))
    G_opt, D_opt, phases = _build_phases(options, G, D)
    run = TrainingRun(
        options=options, run_dir=run_dir, world=world, log=log, dataset=dataset, batch_gpu=batch_gpu, rounds=rounds,
        G=G, D=D, G_ema=G_ema, G_opt=G_opt, D_opt=D_opt, phases=phases, augment_pipe=augment_pipe, ada=ada,
        loss=loss, stats=stats, first_nonfinite=torch.full([len(phases)], -1, dtype=torch.int64, device=world.device),
    )  # fmt: skip
    if snapshot is not None:
        (checkpoint.restore if continuing else checkpoint.transfer)(run, snapshot)
    for module in (G, D, G_ema):
        broadcast_module(module, world)
    run.data_iter = _data_iterator(dataset, options, batch_gpu, world, run.progress.batch_idx)
    if loader_workers(options.data.workers) < options.data.workers:
        log.write(f"Data loader: {usable_cores()} worker processes, one per usable CPU core "
                  f"({options.data.workers} requested).")  # fmt: skip
    if world.is_main:
        _write_options(run_dir, options)
        run.tracker = Tracker(run_dir, options.to_dict(), options.loop.kimg_per_tick < 1, log.write)
        run.tracker.artifact(run_dir / "training_options.json")
        run.grid = setup_snapshot_grid(
            dataset, options.loop.grid_seed, G.z_dim, world.device, options.loop.grid
        )
        # A run continued in its own directory keeps the grids of its start: files are written once.
        if not (run_dir / "reals.png").exists():
            run.grid.write_reals(run_dir / "reals.png")
        if not (run_dir / "fakes_init.png").exists():
            run.grid.write_fakes(G_ema, run_dir / "fakes_init.png", batch_gpu)
    return run


def _seed_process(seed: int, world: DistributedContext) -> None:
    # NVIDIA's per-rank seeds; every training step reseeds per chunk (training.sampling), so these only cover setup.
    process_seed = seed * world.world_size + world.rank
    random.seed(process_seed)
    np.random.seed(process_seed % 2**32)
    torch.manual_seed(process_seed)


def _configure_backends(loop: LoopConfig, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = loop.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = loop.allow_tf32
        torch.backends.cudnn.allow_tf32 = loop.allow_tf32


def open_dataset(data: DataConfig, seed: int) -> Any:
    """The training set as configured (`--data --cond --subset --mirror`), with NVIDIA's --cond check."""
    from stylegan_core.data.dataset import ImageDataset

    if not data.path:
        raise ValueError("no training data: set --data to a dataset zip or folder")
    dataset = ImageDataset(data.path, use_labels=data.cond, max_size=data.subset, xflip=data.mirror, random_seed=seed)
    if data.cond and not dataset.has_labels:
        raise ValueError(f"--cond=True requires labels specified in dataset.json, and {data.path} has none "
                         "(`stylegan dataset prepare --labels subfolders` labels class sub-folders)")  # fmt: skip
    _ = dataset.content_hash  # reads every member once now (CRC-checked), so a corrupt one fails before training
    dataset.verify_images()  # and decodes every image of a small dataset (corrupt compressed data)
    return dataset


def _build_networks(options: TrainOptions, dataset: Any, device: torch.device) -> tuple[torch.nn.Module, ...]:
    from stylegan_core.networks import build_discriminator, build_generator

    shape = (options.network, dataset.resolution, dataset.num_channels, dataset.label_dim)
    # Initial weights depend on the seed only (not on the rank or the number of ranks); rank 0's are broadcast.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.loop.seed)
        G = build_generator(*shape)
        D = build_discriminator(*shape)
    return G.train().requires_grad_(False).to(device), D.train().requires_grad_(False).to(device)


def _resolve_resume(
    options: TrainOptions, G: torch.nn.Module, D: torch.nn.Module, dataset: Any, log: RunLog
) -> tuple[Snapshot | None, bool, TrainOptions]:
    if not options.loop.resume:
        return None, False, options
    snapshot = _load_resume_state(options.loop.resume)
    if not can_continue(snapshot, G.init_kwargs, D.init_kwargs, dataset.content_hash):
        log.write(f"Fine-tuning from the weights in {options.loop.resume} (different data or networks: progress, "
                  "optimiser state and augment p start afresh).")  # fmt: skip
        return snapshot, False, options
    options, changes = continued_options(options, snapshot.options)
    kimg = snapshot.progress.cur_nimg / 1000
    log.write(f"Continuing the training in {options.loop.resume} from kimg {kimg:g}.")
    if changes:
        log.write("Options changed since the snapshot (the continuation is not exact): " + "; ".join(changes))
    return snapshot, True, options


def _build_augment(options: TrainOptions, device: torch.device) -> tuple[torch.nn.Module | None, Any]:
    """The augment pipe (as NVIDIA: only with ADA or a fixed p > 0) and, for --aug=ada, the p controller."""
    augment = options.augment
    if augment.mode == "noaug" or (augment.mode == "fixed" and augment.p == 0):
        return None, None
    from stylegan_core.augment.presets import build_augment_pipe

    pipe = build_augment_pipe(augment.pipe, p=augment.p).train().requires_grad_(False).to(device)
    if augment.mode != "ada":
        return pipe, None
    from stylegan_core.augment.ada import AdaController

    ada = AdaController(
        target=options.ada.target, interval=options.ada.interval, kimg=options.ada.kimg, batch_size=options.loop.batch
    )
    return pipe, ada


def _reporter(stats: StatsCollector, ada: Any):
    def report(name: str, values: torch.Tensor) -> None:
        stats.report(name, values)
        if ada is not None and name == "Loss/signs/real":
            ada.accumulate(values)

    return report


def lazy_regularization(optimizer: OptimizerConfig, lr: float, interval: int | None) -> tuple[float, tuple]:
    """Adam lr and betas for a module regularised every `interval` steps (StyleGAN2 appendix B).

    With c = interval / (interval + 1), lr becomes lr * c and each beta becomes beta ** c, so that main plus
    regularisation steps together move the moments as `interval` plain steps would.
    """
    if interval is None:
        return lr, tuple(optimizer.betas)
    ratio = interval / (interval + 1)
    return lr * ratio, tuple(beta**ratio for beta in optimizer.betas)


def _build_phases(options: TrainOptions, G: torch.nn.Module, D: torch.nn.Module):
    phases: list[Phase] = []
    optimizers = []
    opt_cfg = options.optimizer
    for name, module, lr, interval in (
        ("G", G, opt_cfg.g_lr, options.loss.g_reg_interval),
        ("D", D, opt_cfg.d_lr, options.loss.d_reg_interval),
    ):
        lr, betas = lazy_regularization(opt_cfg, lr, interval)
        opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=opt_cfg.eps)
        optimizers.append(opt)
        if interval is None:
            phases.append(Phase(f"{name}both", module, opt, 1))
        else:
            phases += [Phase(f"{name}main", module, opt, 1), Phase(f"{name}reg", module, opt, interval)]
    return optimizers[0], optimizers[1], phases


def _data_iterator(
    dataset: Any, options: TrainOptions, batch_gpu: int, world: DistributedContext, start_iteration: int
) -> Iterator:
    sampler = IterationBatchSampler(len(dataset), options.loop.seed, options.loop.batch, batch_gpu, world.rank,
                                    world.world_size, start_iteration)  # fmt: skip
    workers = loader_workers(options.data.workers)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=world.device.type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
    )  # fmt: skip
    return iter(loader)


def _check_metric_names(options: TrainOptions) -> None:
    # Fail at start-up, not at the first snapshot hours later: names, and the detector files they need (no weights
    # are read here; IS's classification head is checked in the file's TorchScript code).
    from stylegan_core.metric_names import parse_metric_name, require_detectors

    for name in options.metrics.names:
        parse_metric_name(name)
    require_detectors(options.metrics.names, options.metrics.detector, options.metrics.vgg16)


def _write_options(run_dir: Path, options: TrainOptions) -> None:
    write_text_atomic(run_dir / "training_options.json", options.to_json() + "\n")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as torch's DataLoader counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loader_workers(requested: int) -> int:
    """`--workers` capped by the usable cores: more processes than cores only compete with training (and torch warns
    about it, once per loader and again per iterator). Data order does not depend on the worker count."""
    return min(requested, usable_cores())
