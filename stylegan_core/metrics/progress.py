"""Progress of long metric work as plain lines (a terminal, log.txt, a Dagster run log), and time estimates.

A tqdm bar is right for an interactive `stylegan metrics`; inside training or a Dagster asset the bar is switched off
and nothing would be seen for minutes or hours. `LineProgress` instead hands a line such as
``fakes 1024/50000 images (2%), 3m 25s so far, about 2h 43m left`` to a callback at most every `interval_s` seconds
and once at the end. No torch import here: the CLI and the training start-up use the estimates cheaply.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Inception throughput used before anything was measured in this process. CPU: benchmarks/RESULTS.md ("Inception
# detector on CPU", 4-8 images/s on an idle 2-core machine, channels_last); 5 is the middle, an honest order of
# magnitude. GPUs vary too much for one number, so there the first progress line gives the estimate instead.
CPU_IMAGES_PER_SECOND = 5.0
# Above this estimated time per evaluation a CPU training run is told to pick a smaller metric.
SLOW_METRIC_SECONDS = 600.0


def format_duration(seconds: float) -> str:
    """42s, 3m 05s, 2h 03m, 1d 02h (two units are enough for an estimate)."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h"


def format_time(seconds: float) -> str:
    """NVIDIA's duration in tick lines and metric records: 42s, 3m 05s, 2h 03m 05s, 1d 02h 03m."""
    s = int(round(seconds))  # round half to even, as NVIDIA's np.rint
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


@dataclass
class _Rate:
    """Images per second measured in this process (the last detector pass), shared by all estimates."""

    images_per_second: float | None = None


MEASURED = _Rate()


def images_per_second(device_type: str) -> float | None:
    """The measured rate if any, else the CPU default (None on GPUs before the first measurement)."""
    if MEASURED.images_per_second is not None:
        return MEASURED.images_per_second
    return CPU_IMAGES_PER_SECOND if device_type == "cpu" else None


def estimate_seconds(num_images: int, device_type: str) -> float | None:
    rate = images_per_second(device_type)
    return None if rate is None else num_images / rate


@dataclass
class LineProgress:
    """Reports progress of a counted task as lines to `emit`, at most every `interval_s` seconds, and at the end."""

    emit: Callable[[str], None]
    interval_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _description: str = field(default="", init=False)
    _total: int = field(default=0, init=False)
    _done: int = field(default=0, init=False)
    _start: float = field(default=0.0, init=False)
    _last: float = field(default=0.0, init=False)

    def start(self, description: str, total: int) -> None:
        self._description, self._total, self._done = description, int(total), 0
        self._start = self._last = self.clock()

    def update(self, count: int) -> None:
        self._done += int(count)
        now = self.clock()
        finished = self._done >= self._total
        if finished or now - self._last >= self.interval_s:
            self._last = now
            self.emit(self._line(now - self._start, finished))
        if finished and now > self._start:
            MEASURED.images_per_second = self._done / (now - self._start)

    def _line(self, elapsed: float, finished: bool) -> str:
        percent = 100.0 * self._done / max(self._total, 1)
        head = f"{self._description} {self._done}/{self._total} images ({percent:.0f}%), {format_duration(elapsed)}"
        if finished:
            return f"{head}, done"
        left = elapsed / max(self._done, 1) * (self._total - self._done)
        return f"{head} so far, about {format_duration(left)} left"


def metric_announcement(name: str, num_gen: int, num_real: int, reals_cached: bool, device_type: str) -> str:
    """`Evaluating fid50k_full: 50000 generated + 1000 real images (real statistics cached), about 2h 46m on cpu`."""
    reals = "real statistics cached" if reals_cached else f"{num_real} real images to embed first"
    todo = num_gen + (0 if reals_cached else num_real)
    seconds = estimate_seconds(todo, device_type)
    when = f"about {format_duration(seconds)} on {device_type}" if seconds is not None else "estimate follows"
    return f"Evaluating {name}: {num_gen} generated images ({reals}), {when}..."


def slow_metric_note(names: list[str], num_gen: dict[str, int], device_type: str) -> str | None:
    """On a CPU, one line saying how long the configured metrics take per snapshot and how to pick smaller ones."""
    if device_type != "cpu" or not names:
        return None
    seconds = estimate_seconds(sum(num_gen.values()), device_type) or 0.0
    if seconds < SLOW_METRIC_SECONDS:
        return None
    return (
        f"Note: --metrics {','.join(names)} evaluates {sum(num_gen.values())} generated images at every snapshot, "
        f"about {format_duration(seconds)} each on this CPU (~{CPU_IMAGES_PER_SECOND:g} images/s). For a CPU run "
        f"choose a small variant such as --metrics fid1k_full, or --metrics none."
    )


def say(progress: bool | LineProgress, line: str) -> None:
    """One line to where this evaluation reports: the LineProgress callback, stderr, or nowhere (progress=False)."""
    if isinstance(progress, LineProgress):
        progress.emit(line)
    elif progress is not False:
        print(line, file=sys.stderr, flush=True)
