"""What the style-mixing matrix and the interpolation video add to the `samples` asset, against its sample grids.

    OMP_NUM_THREADS=1 python benchmarks/samples_extras.py [--resolution 16] [--repeats 5]

A generator shaped like the demo's cpu-tiny config (64 channels, 2 mapping layers, z/w 64, 5 classes; random
weights: the cost does not depend on them). Each repeat times, interleaved, the baseline (the two sample grids of
`write_sample_grids`, as the asset renders them) and the additions (`post_training.style_mixing_metadata` +
`video_metadata`, including the MP4 encode when imageio-ffmpeg is installed; its CPU time is counted). Prints the
median wall and CPU seconds of each and the ratio additions / baseline, measured in the same run (shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dagster_project import post_training
from dagster_project.stages import MAX_SAMPLE_ROWS, SAMPLE_COLUMNS, SAMPLE_TRUNCATIONS
from stylegan_core.export.grid import write_sample_grids
from stylegan_core.export.video_writer import mp4_encoder
from stylegan_core.networks import Generator


def cpu_seconds() -> float:
    """This process and its finished children (the ffmpeg encoder runs as one)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    work()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    G = Generator(z_dim=64, c_dim=5, w_dim=64, img_resolution=args.resolution, img_channels=3,
                  mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 1024, "channel_max": 64}).eval()  # fmt: skip
    rows = min(G.c_dim, MAX_SAMPLE_ROWS)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)

        def baseline() -> None:
            write_sample_grids(G, out, (SAMPLE_COLUMNS, rows), truncation_psis=SAMPLE_TRUNCATIONS)

        def additions() -> None:
            post_training.style_mixing_metadata(G, out, 0, None)
            post_training.video_metadata(G, out, 0, None)

        # The first calls pay for imports (scipy for the spline, the ffmpeg lookup) and first allocations: what the
        # asset pays, since each Dagster run is a fresh process. Reported apart from the medians.
        first = {"baseline": timed(baseline), "additions": timed(additions)}
        results: dict[str, list[tuple[float, float]]] = {"baseline": [], "additions": []}
        for _ in range(args.repeats):
            results["baseline"].append(timed(baseline))
            results["additions"].append(timed(additions))
    medians = {name: tuple(statistics.median(v[i] for v in runs) for i in (0, 1)) for name, runs in results.items()}
    print(f"{args.resolution} px, torch threads {torch.get_num_threads()}, MP4 encoder: {bool(mp4_encoder())}, "
          f"{args.repeats} interleaved repeats (medians)")  # fmt: skip
    for name, (wall, cpu) in medians.items():
        print(f"  {name:10s} wall {wall:6.2f} s  CPU {cpu:6.2f} s   (first call: {first[name][0]:.2f} s, "
              f"{first[name][1]:.2f} CPU-s)")  # fmt: skip
    ratio_wall = medians["additions"][0] / medians["baseline"][0]
    ratio_cpu = medians["additions"][1] / medians["baseline"][1]
    print(f"  additions / baseline: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x")


if __name__ == "__main__":
    main()
