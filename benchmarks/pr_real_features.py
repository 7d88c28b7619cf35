"""PR's real-feature pass: the statistics cache it used before (mean, covariance, features) vs its own entry.

    python benchmarks/pr_real_features.py [--images 2000] [--dim 4096] [--repeats 3] [--threads 1]

A cheap random-projection detector with VGG16's feature size (4096) stands in for VGG16, so the time left is the
cache's own work: the float64 covariance accumulation and the file write. Both paths run interleaved in one process
on the same dataset zip (cold cache each time); prints the best time of each, their ratio and the cache file sizes.
The detector pass is in both times; with the real VGG16 it dominates on a CPU, so these ratios are upper bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.metrics.cache import real_statistics
from stylegan_core.metrics.feature_cache import real_features


class ProjectionDetector(torch.nn.Module):
    """uint8 images [N, 3, 8, 8] -> fixed random projection of the pixels to `dim` features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim
        self.sha256 = "b" * 64
        self.weight = torch.nn.Parameter(torch.randn([3 * 8 * 8, dim], generator=torch.Generator().manual_seed(0)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(torch.float32).flatten(1) / 255) @ self.weight


def write_dataset(path: Path, count: int) -> Path:
    pixels = np.random.RandomState(0).randint(0, 256, size=[count, 8, 8, 3], dtype=np.uint8)
    with zipfile.ZipFile(path, "w") as archive:
        for index, image in enumerate(pixels):
            buffer = io.BytesIO()
            PIL.Image.fromarray(image).save(buffer, format="PNG")
            archive.writestr(f"{index // 1000:05d}/img{index:08d}.png", buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": None}))
    return path


def timed(function, cache: Path) -> tuple[float, int]:
    start = time.perf_counter()
    function(cache)
    seconds = time.perf_counter() - start
    return seconds, sum(file.stat().st_size for file in cache.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = ProjectionDetector(args.dim)
    with tempfile.TemporaryDirectory() as folder:
        data = write_dataset(Path(folder) / "data.zip", args.images)
        paths = {
            "before (statistics + features)": lambda cache: real_statistics(
                data, detector, cache, need_features=True, batch_size=64, progress=False
            ),
            "after (features only)": lambda cache: real_features(data, detector, cache, batch_size=64, progress=False),
        }
        best = {name: (float("inf"), 0) for name in paths}
        for repeat in range(args.repeats):
            for name, function in paths.items():  # interleaved, so machine load hits both alike
                seconds, size = timed(function, Path(folder) / f"cache-{repeat}-{len(name)}")
                best[name] = (min(best[name][0], seconds), size)
    print(f"{args.images} images, {args.dim}-d features, {args.threads} thread(s), best of {args.repeats}")
    for name, (seconds, size) in best.items():
        print(f"  {name:32s} {seconds:7.2f} s   cache {size / 1e6:8.1f} MB")
    before, after = (seconds for seconds, _ in best.values())
    print(f"  time ratio before/after: {before / after:.2f}")


if __name__ == "__main__":
    main()
