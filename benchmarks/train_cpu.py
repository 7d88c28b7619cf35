"""Training throughput of a stated tiny configuration: sec/kimg and peak memory (RSS), for side-by-side comparisons.

Configuration (defaults; each can be changed on the command line):
  resolution 32 px RGB (a generated dataset of 64 images, or --data), unconditional, preset `auto` with
  channel_base 1024, channel_max 64 (channels 64/64/64/32 at 4/8/16/32 px: NVIDIA's G32 reference model), mapping
  depth 2, z_dim = w_dim = 512 (NVIDIA's fixed value), batch 8 (batch_gpu 8, mbstd group 4), --aug=ada --augpipe=bgc
  starting from p = 0.2 (so the pipe does real work), float32 everywhere, lazy regularisation as NVIDIA
  (Greg every 4, Dreg every 16), the auto preset's gamma 0.0064, lr 0.0025, EMA 10 kimg with ramp-up 0.05,
  no metrics, one snapshot at the end.

sec/kimg is measured over the ticks after the first (warm-up) one and excludes snapshot writing (maintenance), as
NVIDIA's tick line does. Peak memory is the process's peak resident set size.

NVIDIA's stylegan3 repository runs the same configuration as
  python train.py --outdir=out --data=DATA.zip --gpus=1 --cfg=stylegan2 --batch=8 --gamma=0.0064 --cbase=1024
    --cmax=64 --map-depth=2 --mbstd-group=4 --glr=0.0025 --dlr=0.0025 --aug=ada --p=0.2 --fp32=1
    --metrics=none --kimg=... --tick=...
(their code needs CUDA; run ours with --device=cuda on the same machine to compare). Usage:
  python benchmarks/train_cpu.py [--kimg 0.256] [--tick 0.064] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.presets import resolve_options
from stylegan_core.training import TrainCallbacks, train
from stylegan_core.training.distributed import DistributedContext


def write_dataset(path: Path, count: int, resolution: int) -> Path:
    rng = np.random.RandomState(0)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(count):
            pixels = (rng.rand(resolution // 4, resolution // 4, 3) * 255).astype(np.uint8)
            image = PIL.Image.fromarray(pixels, "RGB").resize((resolution, resolution), PIL.Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(f"00000/img{index:08d}.png", buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": None}))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset zip (default: a generated 32 px set)")
    parser.add_argument("--kimg", type=float, default=0.256)
    parser.add_argument("--tick", type=float, default=0.064)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cbase", type=int, default=1024)
    parser.add_argument("--cmax", type=int, default=64)
    parser.add_argument("--augpipe", default="bgc")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        data = Path(args.data) if args.data else write_dataset(Path(temp) / "bench32.zip", 64, 32)
        overrides = {"data": str(data), "kimg": args.kimg, "tick": args.tick, "batch": args.batch,
                     "cbase": args.cbase, "cmax": args.cmax, "map": 2, "augpipe": args.augpipe, "p": 0.2,
                     "metrics": "none", "workers": 0, "fp32": True, "snap": "none"}  # fmt: skip
        options = resolve_options("auto", 32, 1, overrides, source="benchmark")
        ticks = []
        start = time.time()
        world = DistributedContext(device=torch.device(args.device))
        train(options, Path(temp) / "run", TrainCallbacks(on_tick=ticks.append), world=world)
        total = time.time() - start
    steady = ticks[1:] or ticks
    nimg = sum(t.sec_per_tick / t.sec_per_kimg * 1000 for t in steady)
    sec_per_kimg = sum(t.sec_per_tick for t in steady) / nimg * 1000
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({
        "config": {"resolution": 32, "channel_base": args.cbase, "channel_max": args.cmax, "map": 2,
                   "batch": args.batch, "augpipe": args.augpipe, "p_start": 0.2, "threads": args.threads,
                   "device": args.device, "torch": torch.__version__},
        "kimg": args.kimg, "sec_per_kimg": round(sec_per_kimg, 2), "peak_rss_gb": round(peak_rss_gb, 3),
        "peak_gpu_gb": round(max((t.gpu_mem_gb for t in ticks), default=0.0), 3), "wall_s": round(total, 1),
        "final_augment_p": ticks[-1].augment_p,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
