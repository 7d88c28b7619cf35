"""Time the ADA augmentation pipeline on the CPU: forward, and forward + backward as D's loss uses it.

    python benchmarks/augment_cpu.py [--resolution 32] [--batch 32] [--threads 1] [--presets bgc bgcf]

Prints the best of ``--repeats`` runs in milliseconds per batch for p = 0, 0.2 and 0.6. Early ADA training runs at
small p, where only the augmented samples are resampled.
"""

from __future__ import annotations

import argparse
import time

import torch

from stylegan_core.augment import build_augment_pipe


def best_ms(pipe: torch.nn.Module, images: torch.Tensor, repeats: int, backward: bool) -> float:
    best = float("inf")
    for _ in range(repeats):
        x = images.clone().requires_grad_(backward)
        start = time.perf_counter()
        out = pipe(x)
        if backward:
            out.square().sum().backward()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["bgc", "bgcf"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand([args.batch, args.channels, args.resolution, args.resolution]) * 2 - 1
    shape = f"{args.batch}x{args.channels}x{args.resolution}x{args.resolution}"
    print(f"{shape}, {args.threads} thread(s), best of {args.repeats}")
    for name in args.presets:
        for p in (0.0, 0.2, 0.6):
            pipe = build_augment_pipe(name, p)
            forward = best_ms(pipe, images, args.repeats, backward=False)
            both = best_ms(pipe, images, args.repeats, backward=True)
            print(f"{name:7s} p={p:.1f}  forward {forward:8.1f} ms   forward+backward {both:8.1f} ms")


if __name__ == "__main__":
    main()
