"""Ingestion throughput: images/s of `prepare_dataset` with one worker and with all cores, and their ratio.

Default folder: 2000 512x512 JPEGs (quality 90; the shapes set drawn at 128 px and enlarged bicubically; labels
from class sub-folders), ingested with center-crop + Lanczos to 128x128. Drawing the source is not timed. The
"CPU headroom" line says how much parallelism the machine had at the time (a busy shared box has little).

    python benchmarks/ingest.py                      # the stated folder
    python benchmarks/ingest.py --source DIR --resolution 256 --workers 8
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import PIL.Image

from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.options import IngestOptions
from stylegan_core.data.parallel import default_workers, ordered_map
from stylegan_core.data.shapes import SHAPE_CLASSES, render_shape_image


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


def time_ingest(source: Path, out: Path, resolution: int, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    result = prepare_dataset(source, out, resolution, IngestOptions(labels="subfolders"), workers=workers)
    return time.perf_counter() - start, result.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None, help="folder to ingest (default: generate one)")
    parser.add_argument("--count", type=int, default=2000, help="generated images")
    parser.add_argument("--size", type=int, default=512, help="generated image size")
    parser.add_argument("--resolution", type=int, default=128, help="output resolution")
    parser.add_argument("--workers", type=int, default=default_workers(), help="the 'all workers' run")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        if args.source is None:
            start = time.perf_counter()
            source = make_source(scratch / "source", args.count, args.size, args.workers)
            print(f"drew {args.count} {args.size}px JPEGs in {time.perf_counter() - start:.1f} s (not timed below)")
        else:
            source = args.source
        print(
            f"machine: {platform.processor() or platform.machine()}, {default_workers()} usable cores, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"CPU headroom: a pure CPU loop runs {cpu_headroom(args.workers):.2f}x faster on {args.workers} processes"
        )
        rates = {}
        for workers in sorted({1, args.workers}):
            seconds, count = time_ingest(source, scratch / f"out-{workers}.zip", args.resolution, workers)
            rates[workers] = count / seconds
            print(
                f"workers={workers:3d}: {count} images -> {args.resolution}px in {seconds:6.1f} s = "
                f"{rates[workers]:7.1f} images/s"
            )
        if len(rates) == 2:
            print(f"speed-up with {args.workers} workers: {rates[args.workers] / rates[1]:.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
