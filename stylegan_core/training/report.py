"""Run-directory bookkeeping: log.txt, the tick line, stats.jsonl, memory figures and the fixed image grid."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from stylegan_core.export.grid import save_image_grid, setup_snapshot_image_grid
from stylegan_core.metrics.progress import format_time
from stylegan_core.training.stats import StatSummary


class RunLog:
    """Prints lines and appends them to `run_dir/log.txt` (only where `enabled`, i.e. on rank 0).

    With `echo`, lines go there instead of stdout/stderr: a caller that forwards them (Dagster Pipes) would otherwise
    show each line twice, once from the captured stdout and once from its own log.
    """

    def __init__(self, run_dir: Path, enabled: bool, echo: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / "log.txt"
        self.enabled = enabled
        self.echo = echo

    def write(self, line: str, error: bool = False) -> None:
        if not self.enabled:
            return
        if self.echo is not None:
            self.echo(line)
        else:
            print(line, file=sys.stderr if error else sys.stdout, flush=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


def tick_line(fields: Mapping[str, float], kimg_digits: int) -> str:
    """The status line: tick, kimg, time, sec/tick, sec/kimg, maintenance, cpumem, gpumem, augment, % done, ETA."""
    return " ".join([
        f"tick {int(fields['tick']):<5d}",
        f"kimg {fields['kimg']:<8.{kimg_digits}f}",
        f"time {format_time(fields['time']):<12s}",
        f"sec/tick {fields['sec_per_tick']:<7.1f}",
        f"sec/kimg {fields['sec_per_kimg']:<7.2f}",
        f"maintenance {fields['maintenance']:<6.1f}",
        f"cpumem {fields['cpu_mem_gb']:<6.2f}",
        f"gpumem {fields['gpu_mem_gb']:<6.2f}",
        f"augment {fields['augment_p']:.3f}",
        *_progress_fields(fields),
    ])  # fmt: skip


def _progress_fields(fields: Mapping[str, float]) -> list[str]:
    # After NVIDIA's fields, so tools that parse those keep working: "12.5% ETA 3m 05s" (the last tick: "100%").
    if "percent" not in fields:
        return []
    percent = f"{fields['percent']:.1f}%"
    return [percent] if fields["percent"] >= 100 else [percent, f"ETA {format_time(fields['eta'])}"]


def append_stats_line(run_dir: Path, summaries: Mapping[str, StatSummary]) -> None:
    """One stats.jsonl line: {name: {num, mean, std}, ..., timestamp} as NVIDIA's."""
    line = {name: summary.to_dict() for name, summary in summaries.items()}
    line["timestamp"] = time.time()
    with (run_dir / "stats.jsonl").open("a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


def cpu_memory_gb() -> float:
    """Resident set size of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def peak_gpu_memory_gb(device: torch.device) -> float:
    """Peak allocated GPU memory since the last call (the counter is reset each time)."""
    if device.type != "cuda":
        return 0.0
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


class SnapshotGrid:
    """The fixed real images, latents and labels of reals.png / fakes*.png (same for the whole run)."""

    def __init__(self, size: tuple[int, int], reals: np.ndarray, z: torch.Tensor, c: torch.Tensor) -> None:
        self.size = size
        self.reals = reals
        self.z = z
        self.c = c

    def write_reals(self, path: Path) -> None:
        save_image_grid(self.reals, path, drange=(0, 255), grid_size=self.size)

    @torch.no_grad()
    def write_fakes(self, G_ema: torch.nn.Module, path: Path, batch: int) -> None:
        """G_ema's images of the grid latents (constant noise), generated `batch` at a time (64 on the CPU)."""
        if self.z.device.type == "cpu":
            batch = max(batch, 64)  # CPU runs are tiny; larger batches are several times faster per image
        images = [
            G_ema(z, c, noise_mode="const").cpu() for z, c in zip(self.z.split(batch), self.c.split(batch), strict=True)
        ]
        save_image_grid(torch.cat(images).numpy(), path, drange=(-1, 1), grid_size=self.size)


def setup_snapshot_grid(
    dataset, seed: int, z_dim: int, device: torch.device, grid_size: tuple[int, int] | None = None
) -> SnapshotGrid:
    """NVIDIA's grid of real images chosen by `seed`, and latents drawn from a generator seeded with `seed`."""
    size, reals, labels = setup_snapshot_image_grid(dataset, seed, grid_size)
    z = torch.randn([len(reals), z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    c = torch.from_numpy(labels.astype(np.float32)).to(device)
    return SnapshotGrid(size, reals, z, c)
