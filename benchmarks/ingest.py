"""Ingestion wall time of `stylegan dataset prepare` with one worker and with all cores, optionally side by side
with NVIDIA's `dataset_tool.py` on the same folder, and the ratios.

Default folder: 2000 512x512 JPEGs (quality 90; the shapes set drawn at 128 px and enlarged bicubically) in five class
sub-folders, ingested with center-crop + Lanczos to 128x128. Drawing the source is not timed. Every tool runs as its
own process, so start-up (imports, the worker pool) counts as a user sees it; the tools are interleaved in each
repeat and the minimum over the repeats is compared, which suits a shared machine. The "CPU headroom" line says how
much parallelism the machine offered at the time (a busy shared box has little).

    python benchmarks/ingest.py                                     # ours only
    python benchmarks/ingest.py --nvidia-tool ../nvidia/dataset_tool.py --repeats 5
    python benchmarks/ingest.py --source DIR --resolution 256 --workers 8

NVIDIA's tool needs click, numpy, Pillow and tqdm in `--nvidia-python` (default: this interpreter). Both are run
unlabelled (NVIDIA's tool reads labels only from dataset.json), and the zips are compared entry by entry afterwards.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import PIL.Image

from stylegan_core.data.parallel import default_workers, ordered_map
from stylegan_core.data.shapes import SHAPE_CLASSES, render_shape_image

_REPO = Path(__file__).resolve().parents[1]


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


def _timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the process and its children) of one command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _commands(args: argparse.Namespace, source: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Label → (command line, the zip it writes)."""
    size = str(args.resolution)
    commands = {}
    if args.nvidia_tool is not None:
        dest = out / "nvidia.zip"
        nvidia = [args.nvidia_python, str(args.nvidia_tool.resolve()), "--source", str(source), "--dest", str(dest)]
        commands["nvidia"] = ([*nvidia, "--width", size, "--height", size, "--transform", "center-crop"], dest)
    for workers in sorted({1, args.workers}):
        dest = out / f"ours-{workers}.zip"
        ours = [sys.executable, "-m", "stylegan_core.cli", "dataset", "prepare", "--source", str(source)]
        ours += ["--dest", str(dest), "--resolution", size, "--transform", "center-crop", "--labels", "none"]
        commands[f"ours, {workers} worker{'s' if workers > 1 else ''}"] = ([*ours, "--workers", str(workers)], dest)
    return commands


def _same_entries(ours: Path, theirs: Path) -> str:
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        names = a.namelist()
        if names != b.namelist():
            return "DIFFERENT entry lists"
        different = [name for name in names if a.read(name) != b.read(name)]
    return f"{len(names)} entries, all identical" if not different else f"DIFFERENT: {different[:3]}..."


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
        headroom = cpu_headroom(args.workers)
        print(f"CPU headroom: a pure CPU loop runs {headroom:.2f}x faster on {args.workers} processes")
        commands = _commands(args, source, scratch)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        labels = list(commands)
        for repeat in range(args.repeats):
            # Rotated each repeat so no tool always runs right after the same one.
            for label in labels[repeat % len(labels) :] + labels[: repeat % len(labels)]:
                times[label].append(_timed(commands[label][0], scratch))
        print(f"load average after: {os.getloadavg()[0]:.1f}; {args.repeats} interleaved repeats, seconds:")
        best = {label: min(wall for wall, _ in runs) for label, runs in times.items()}
        for label, runs in times.items():
            walls = [wall for wall, _ in runs]
            cpu = min(cpu for _, cpu in runs)
            line = f"  {label:18s} wall min {best[label]:6.2f}  median {statistics.median(walls):6.2f}"
            line += f"  CPU min {cpu:6.2f}"
            if "nvidia" in best and label != "nvidia":
                line += f"  wall ratio to NVIDIA {best[label] / best['nvidia']:.2f}x"
            print(line)
        if "nvidia" in commands:
            for label, (_, dest) in commands.items():
                if label != "nvidia":
                    print(f"zip of {label} vs NVIDIA's: {_same_entries(dest, commands['nvidia'][1])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
