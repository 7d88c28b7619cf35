"""What Ray costs over torchrun for the same tiny 2-worker CPU training: start-up seconds and sec/kimg.

    python benchmarks/ray_overhead.py [--workers 2] [--kimg 0.192] [--repeats 1]

Each repeat runs, interleaved: torchrun (`--standalone --nproc-per-node=N`, the worker torchrun always starts) and
Ray Train (`train_on_ray` with N workers on a private local Ray instance, no dashboard). Both train the same options
(16 px, 32-wide layers, batch 8 = N x batch_gpu) on one thread per worker. Reported per launcher:

* `wall`: from launch to the finished run (Ray: `ray.init` not included, it is shown apart as `cluster start`);
* `start-up`: wall minus the training loop's own time (`Timing/total_sec` of the last stats.jsonl line): process
  start, imports, process group, worker placement;
* `sec/kimg`: mean over ticks after tick 0 (tick 0 is one iteration and includes first-call overheads).

The ratio lines compare Ray with torchrun measured in the same run; absolute seconds depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' tiny NVIDIA-layout dataset writer

from training_support import TINY_OVERRIDES, write_tiny_dataset  # noqa: E402

from stylegan_core.presets import resolve_options  # noqa: E402


def training_seconds_and_sec_per_kimg(run_dir: Path) -> tuple[float, float]:
    lines = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    per_kimg = [line["Timing/sec_per_kimg"]["mean"] for line in lines[1:]]
    return lines[-1]["Timing/total_sec"]["mean"], statistics.mean(per_kimg)


def run_torchrun(options_path: Path, run_dir: Path, workers: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
               "-m", "stylegan_core.training.worker", "--options", str(options_path),
               "--run-dir", str(run_dir)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_ray(options, run_dir: Path, workers: int) -> float:  # noqa: ANN001
    from stylegan_core.training.ray_launcher import RayLaunchConfig, train_on_ray

    start = time.perf_counter()
    train_on_ray(options, run_dir, RayLaunchConfig(num_workers=workers))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kimg", type=float, default=0.192)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    data = write_tiny_dataset(work / "tiny.zip")
    batch_gpu = 8 // args.workers
    overrides = {**TINY_OVERRIDES, "data": str(data), "batch": 8, "batch_gpu": batch_gpu, "kimg": args.kimg,
                 "tick": 0.048, "snap": "none", "grid": "2x2", "mbstd_group": min(2, batch_gpu)}  # fmt: skip
    options = resolve_options("auto", 16, args.workers, overrides, source="ray_overhead")
    options_path = work / "options.json"
    options_path.write_text(options.to_json())
    print(f"load average before: {os.getloadavg()[0]:.1f}; {args.workers} workers, kimg {args.kimg}, batch 8")
    start = time.perf_counter()
    ray.init(num_cpus=max(2, args.workers), object_store_memory=100 * 2**20, include_dashboard=False,
             _temp_dir=tempfile.mkdtemp(prefix="rb", dir="/tmp"), log_to_driver=False)  # fmt: skip
    print(f"Ray cluster start (ray.init, local): {time.perf_counter() - start:.1f} s")
    rows: dict[str, list[tuple[float, float, float]]] = {"torchrun": [], "ray": []}
    try:
        for repeat in range(args.repeats):
            for name in ("torchrun", "ray"):
                run_dir = work / f"{name}-{repeat}"
                wall = run_torchrun(options_path, run_dir, args.workers) if name == "torchrun" else run_ray(
                    options, run_dir, args.workers)  # fmt: skip
                train_s, sec_per_kimg = training_seconds_and_sec_per_kimg(run_dir)
                rows[name].append((wall, wall - train_s, sec_per_kimg))
                print(f"{name:8s} repeat {repeat}: wall {wall:6.1f} s  start-up {wall - train_s:6.1f} s  "
                      f"sec/kimg {sec_per_kimg:7.2f}", flush=True)  # fmt: skip
    finally:
        ray.shutdown()
    mean = {name: [statistics.mean(column) for column in zip(*values, strict=True)] for name, values in rows.items()}
    for label, index in (("wall", 0), ("start-up", 1), ("sec/kimg", 2)):
        print(f"ray / torchrun {label:9s}: {mean['ray'][index] / mean['torchrun'][index]:.2f}x "
              f"({mean['ray'][index]:.1f} vs {mean['torchrun'][index]:.1f})")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
