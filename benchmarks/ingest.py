"""Ingestion wall time of `stylegan dataset prepare` with one worker and with all cores, optionally side by side
with NVIDIA's `dataset_tool.py` on the same folder, and the ratios.

Default folder: 2000 512x512 JPEGs (quality 90; the shapes set drawn at 128 px and enlarged bicubically) in five class
sub-folders, ingested with center-crop + Lanczos to 128x128. Drawing the source is not timed. Every tool runs as its
own process, so start-up (imports, the worker pool) counts as a user sees it; the tools are interleaved in each
repeat and the minimum over the repeats is compared, which suits a shared machine. The "CPU headroom" line says how
much parallelism the machine offered at the time (a busy shared box has little).

Ours runs through `ingest_probe.py` (the same command line plus a timeline), so for the fastest run of ours the
script also prints where the wall time went: start-up (launch to first result), steady (first to last result), tail
(last result to exit), and the CPU seconds of the parent and of the pool (its workers, and the forkserver and
resource tracker where used). CPU columns count the whole process tree; on a loaded machine they, not the wall times,
are the comparable numbers.

    python benchmarks/ingest.py                                     # ours only
    python benchmarks/ingest.py --nvidia-tool ../nvidia/dataset_tool.py --repeats 5
    python benchmarks/ingest.py --source DIR --resolution 256 --workers 8
    python benchmarks/ingest.py --nvidia-tool ../nvidia/dataset_tool.py --baseline ../checkout-of-an-older-commit

NVIDIA's tool needs click, numpy, Pillow and tqdm in `--nvidia-python` (default: this interpreter). Both are run
unlabelled (NVIDIA's tool reads labels only from dataset.json), and the zips are compared entry by entry afterwards.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image

from stylegan_core.data.ingest import manifest_path_for
from stylegan_core.data.parallel import default_workers, ordered_map
from stylegan_core.data.shapes import SHAPE_CLASSES, render_shape_image

_REPO = Path(__file__).resolve().parents[1]
_PROBE = Path(__file__).resolve().with_name("ingest_probe.py")


def _write_jpeg(context: tuple[Path, int], index: int) -> None:
    folder, size = context
    # Drawn at 128 px and enlarged (bicubic): only the decoding cost of a size-px JPEG matters here.
    image, label = render_shape_image(index, 128, seed=0)
    enlarged = PIL.Image.fromarray(image).resize((size, size), PIL.Image.Resampling.BICUBIC)
    enlarged.save(folder / SHAPE_CLASSES[label] / f"{index:05d}.jpg", quality=90)


def make_source(folder: Path, count: int, size: int, workers: int) -> Path:
    for name in SHAPE_CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for _ in ordered_map(_write_jpeg, (folder, size), range(count), workers):
        pass
    return folder


def _spin(count: int) -> int:
    total = 0
    for value in range(count):
        total += value * value
    return total


def cpu_headroom(workers: int, count: int = 2_000_000) -> float:
    """Speed-up of a pure CPU loop on `workers` processes: how much parallelism the machine offers right now."""
    start = time.perf_counter()
    for _ in range(workers):
        _spin(count)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [1] * workers)  # start-up excluded
        start = time.perf_counter()
        pool.map(_spin, [count] * workers)
        parallel = time.perf_counter() - start
    return serial / parallel


@dataclass
class Run:
    """One timed run of one tool; `events` is the probe's timeline (ours only)."""

    wall: float
    cpu: float  # user + system of the whole process tree (ours: parent, workers, any pool server and tracker)
    load: float  # 1-minute load average when it started
    launched: float
    ended: float
    events: dict[str, tuple[float, float]] = field(default_factory=dict)
    forkserver: bool = False  # the pool's workers came from a forkserver (else forked from ours)

    @property
    def pool_cpu(self) -> float:
        """Everything but the parent: workers, and the forkserver and resource tracker where there were any."""
        return self.cpu - self.parent_cpu

    def at(self, event: str) -> float:
        """Seconds from launch to the event."""
        return self.events[event][0] - self.launched

    @property
    def parent_cpu(self) -> float:
        return self.events["exit"][1]


def _adopt_orphans() -> bool:
    """Make this process the parent of its descendants' orphans (Linux), so that the worker pool's server, which
    outlives ours by a moment, can be waited for and its CPU time (and its workers') counted."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_child_subreaper = 36
    return ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0


def _timed(command: list[str], cwd: Path, events_path: Path | None = None, tree: Path = _REPO) -> Run:
    """Wall and CPU seconds (user + system, the process and its waited-for descendants) of one command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Output to a file, not a pipe: the pool's server inherits it, and reading a pipe to its end would wait for the
    # server's exit too, which a shell (waiting for the process only) does not.
    with tempfile.TemporaryFile() as output:
        launched, start = time.time(), time.perf_counter()
        code = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
        if code != 0:
            output.seek(0)
            sys.exit(f"failed ({code}): {' '.join(command)}\n{output.read()[-2000:].decode(errors='replace')}")
    probe = json.loads(events_path.read_text()) if events_path is not None else {}
    for pid in probe.get("helper_pids", []):
        try:
            os.waitpid(pid, 0)  # ours once orphaned (see _adopt_orphans)
        except ChildProcessError:
            pass  # not adopted: its CPU time stays unknown
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run = Run(wall, cpu, load, launched, launched + wall)
    if probe:
        run.events = {name: tuple(value) for name, value in probe["events"].items()}
        run.forkserver = bool(probe.get("helper_pids"))
    return run


def _breakdown(label: str, run: Run, workers: int) -> str:
    """Where the wall time of one run of ours went, and how busy the cores were."""
    first, last = run.at("first_result"), run.at("last_result")
    server = f"pool server launched {run.at('workers_started'):.2f} s, " if run.forkserver else ""
    busy = run.cpu / (run.wall * workers)
    return (
        f"  {label}: start-up {first:.2f} s ({server}first chunk submitted {run.at('map_called'):.2f} s), "
        f"steady {last - first:.2f} s, tail {run.wall - last:.2f} s (zip closed +{run.at('zip_closed') - last:.2f} s, "
        f"exit +{run.at('exit') - last:.2f} s); CPU parent {run.parent_cpu:.2f} s, pool {run.pool_cpu:.2f} s, "
        f"total {run.cpu:.2f} s = {busy:.0%} of {workers} core{'s' if workers > 1 else ''} over the wall time; "
        f"load {run.load:.1f}"
    )


def _commands(args: argparse.Namespace, source: Path, out: Path) -> dict[str, tuple[list[str], Path, Path]]:
    """Label → (command line, the zip it writes, the checkout whose code it runs). Ours (and the baseline's) runs
    through the probe (`ingest_probe.py`), which writes its timeline to `<zip>.events.json`."""
    size = str(args.resolution)
    commands = {}
    if args.nvidia_tool is not None:
        dest = out / "nvidia.zip"
        nvidia = [args.nvidia_python, str(args.nvidia_tool.resolve()), "--source", str(source), "--dest", str(dest)]
        commands["nvidia"] = ([*nvidia, "--width", size, "--height", size, "--transform", "center-crop"], dest, _REPO)
    trees = {"ours": _REPO} | ({"baseline": args.baseline.resolve()} if args.baseline is not None else {})
    for name, tree in trees.items():
        for workers in sorted({1, args.workers}):
            dest = out / f"{name}-{workers}.zip"
            probe = [sys.executable, str(tree / "benchmarks" / _PROBE.name), str(dest.with_suffix(".events.json"))]
            command = [*probe, "dataset", "prepare", "--source", str(source), "--dest", str(dest)]
            command += ["--resolution", size, "--transform", "center-crop", "--labels", "none"]
            command += ["--workers", str(workers)]
            commands[f"{name}, {workers} worker{'s' if workers > 1 else ''}"] = (command, dest, tree)
    return commands


def _same_entries(ours: Path, theirs: Path) -> str:
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        names = a.namelist()
        if names != b.namelist():
            return "DIFFERENT entry lists"
        different = [name for name in names if a.read(name) != b.read(name)]
    return f"{len(names)} entries, all identical" if not different else f"DIFFERENT: {different[:3]}..."


def _summary(run: Run) -> str:
    return f"wall {run.wall:.2f} s, CPU {run.cpu:.2f} s, load {run.load:.1f}"


def _print_results(runs: dict[str, list[Run]], workers: int) -> None:
    print(f"load average after: {os.getloadavg()[0]:.1f}; {len(next(iter(runs.values())))} interleaved repeats:")
    best = {label: min(runs[label], key=lambda run: run.wall) for label in runs}
    median = {label: statistics.median(run.wall for run in tool_runs) for label, tool_runs in runs.items()}
    least_cpu = {label: min(run.cpu for run in tool_runs) for label, tool_runs in runs.items()}
    for label in runs:
        line = f"  {label:22s} wall min {best[label].wall:6.2f}  median {median[label]:6.2f}"
        line += f"  CPU min {least_cpu[label]:6.2f}"
        if "nvidia" in runs and label != "nvidia":
            line += f"  wall ratio to NVIDIA {best[label].wall / best['nvidia'].wall:.2f}x"
            line += f" (medians {median[label] / median['nvidia']:.2f}x,"
            line += f" CPU {least_cpu[label] / least_cpu['nvidia']:.2f}x)"
        baseline = label.replace("ours,", "baseline,")
        if label.startswith("ours,") and baseline in runs:
            line += f"; to the baseline {best[label].wall / best[baseline].wall:.3f}x"
            line += f" (medians {median[label] / median[baseline]:.3f}x)"
        print(line)
    print("where the time went (the fastest run of each; start-up = launch to first result, tail = after it):")
    for label, run in best.items():
        if run.events:
            print(_breakdown(label, run, 1 if label.endswith(" 1 worker") else workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None, help="folder to ingest (default: generate one)")
    parser.add_argument("--count", type=int, default=2000, help="generated images")
    parser.add_argument("--size", type=int, default=512, help="generated image size")
    parser.add_argument("--resolution", type=int, default=128, help="output resolution")
    parser.add_argument("--workers", type=int, default=default_workers(), help="the 'all cores' run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each tool (the minimum counts)")
    parser.add_argument("--nvidia-tool", type=Path, default=None, help="NVIDIA's dataset_tool.py, to run alongside")
    parser.add_argument("--nvidia-python", default=sys.executable, help="interpreter for NVIDIA's tool")
    baseline_help = "another checkout of this repository (an earlier commit) to run alongside ours"
    parser.add_argument("--baseline", type=Path, default=None, help=baseline_help)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        if args.source is None:
            start = time.perf_counter()
            source = make_source(scratch / "source", args.count, args.size, args.workers)
            print(f"drew {args.count} {args.size}px JPEGs in {time.perf_counter() - start:.1f} s (not timed below)")
        else:
            source = args.source.resolve()
        print(
            f"machine: {platform.processor() or platform.machine()}, {default_workers()} usable cores, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        if not _adopt_orphans():
            print("(the worker pool's CPU time cannot be collected on this system: CPU columns count the parent only)")
        headroom = cpu_headroom(args.workers)
        print(f"CPU headroom: a pure CPU loop runs {headroom:.2f}x faster on {args.workers} processes")
        commands = _commands(args, source, scratch)
        runs: dict[str, list[Run]] = {label: [] for label in commands}
        labels = list(commands)
        for repeat in range(args.repeats):
            # Rotated each repeat so no tool always runs right after the same one.
            for label in labels[repeat % len(labels) :] + labels[: repeat % len(labels)]:
                command, dest, tree = commands[label]
                # Each run writes a new zip, as a user ingesting into a new path does: ext4 flushes a file that is
                # renamed (ours) or truncated (NVIDIA's) over an existing one, ~50 ms of wall time for 98 MB.
                for previous in (dest, manifest_path_for(dest)):
                    previous.unlink(missing_ok=True)
                events = dest.with_suffix(".events.json") if label != "nvidia" else None
                runs[label].append(_timed(command, scratch, events, tree))
                print(f"  run {repeat + 1} {label}: {_summary(runs[label][-1])}", flush=True)
        _print_results(runs, args.workers)
        if "nvidia" in commands:
            for label, (_, dest, _) in commands.items():
                if label != "nvidia":
                    print(f"zip of {label} vs NVIDIA's: {_same_entries(dest, commands['nvidia'][1])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
