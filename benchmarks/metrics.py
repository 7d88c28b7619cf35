"""Inception detector throughput (images/s) and FID formula timings on this machine.

    python benchmarks/metrics.py [--batch-size 32] [--batches 3] [--resolution 32] [--device cpu]

Images go through the whole detector path used by the metrics (uint8 -> TF1 resize to 299 -> normalise -> pool3),
so the input resolution hardly matters. The first batch is a warm-up and is not timed. For the default ("pool3")
detector it also times the bare network on NCHW input, the layout before the CPU channels_last change, as the baseline
of the same run, and prints the ratio and how far the features moved.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stylegan_core.metrics import feature_statistics, frechet_distance, frechet_distance_from_features, load_detector


def detector_speed(batch_size: int, batches: int, resolution: int, device: str) -> float:
    detector = load_detector(device=device)
    images = torch.randint(0, 256, [batch_size, 3, resolution, resolution], dtype=torch.uint8, device=device)
    with torch.inference_mode():
        detector(images)  # warm-up (TorchScript profiling runs, allocator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            detector(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def layout_ratio(batch_size: int, batches: int, device: str) -> None:
    """Bare pool3 network: NCHW (the baseline) against the layout the detector uses on `device`."""
    from stylegan_core.metrics.inception import _cpu_channels_last

    detector = load_detector(device=device)
    if detector.kind != "pool3":
        return
    x = torch.rand([batch_size, 3, 299, 299], device=device) * 2 - 1
    speeds, outputs = {}, {}
    for name, layout in (("NCHW", lambda t: t), ("detector", _cpu_channels_last)):
        with torch.inference_mode():
            outputs[name] = detector.network(layout(x))  # warm-up, and the features compared below
            start = time.perf_counter()
            for _ in range(batches):
                detector.network(layout(x))
        speeds[name] = batch_size * batches / (time.perf_counter() - start)
    moved = (outputs["detector"] - outputs["NCHW"]).abs().max() / outputs["NCHW"].abs().max()
    print(
        f"pool3 network alone: NCHW {speeds['NCHW']:.2f} images/s, detector layout {speeds['detector']:.2f} "
        f"images/s, ratio {speeds['detector'] / speeds['NCHW']:.2f}x; features moved {moved:.1e} relative"
    )


def fid_timings(num_generated: int, dim: int = 2048) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    real_mu, real_sigma = feature_statistics(rng.standard_normal([3000, dim]).astype(np.float32))
    generated = rng.standard_normal([num_generated, dim]).astype(np.float32)
    start = time.perf_counter()
    frechet_distance(*feature_statistics(generated), real_mu, real_sigma)
    eig_seconds = time.perf_counter() - start
    start = time.perf_counter()
    frechet_distance_from_features(generated, real_mu, real_sigma)
    return eig_seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    speed = detector_speed(args.batch_size, args.batches, args.resolution, args.device)
    print(f"detector: {speed:.2f} images/s on {args.device} ({torch.get_num_threads()} threads), batch "
          f"{args.batch_size}, {args.resolution}px input, {args.batches} timed batches")  # fmt: skip
    layout_ratio(args.batch_size, args.batches, args.device)
    eig_seconds, gram_seconds = fid_timings(200)
    print(f"FID formula, 200 generated vs 2048-d real statistics: eigvals(Σ1Σ2) {eig_seconds:.2f} s, "
          f"Gram route {gram_seconds:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
