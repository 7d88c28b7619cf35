"""Training throughput of one configuration on one device: steady-state sec/kimg, peak RSS, peak GPU memory.

Replaces `train_cpu.py` (whose fixed tiny configuration was `--resolution 32 --cfg auto --batch 8 --cbase 1024
--cmax 64 --map 2 --fp32 --p 0.2`). The configuration is NVIDIA's preset (`--cfg`) at `--resolution` with only the
options given here changed; the dataset is generated (64 smooth random images) unless `--data` is given.

The image grids are 2x2 (NVIDIA's default renders up to 1024 images at start and end, minutes on a CPU).
sec/kimg follows NVIDIA's tick line: time per tick divided by the tick's kimg, excluding maintenance (snapshots),
averaged over the ticks after the first (which pays for cuDNN autotuning and the ops build). `--impl` picks the ops
implementation for the whole run (the `ops_impl` option); `cuda` fails loudly if the compiled ops cannot be used.
On a CPU float16 blocks are dropped by the training policy unless `--fp16-on-cpu`; the JSON shows what ran
(`num_fp16_res`). The JSON also gives the equivalent command line of NVIDIA's stylegan2-ada-pytorch `train.py`.

Usage:
  python benchmarks/train_bench.py --resolution 256 --cfg auto --batch 16 --device cuda --impl cuda --kimg 2
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylegan_core.ops.dispatch import set_process_impl  # noqa: E402
from stylegan_core.presets import resolve_options  # noqa: E402
from stylegan_core.training import TrainCallbacks, train  # noqa: E402
from stylegan_core.training.distributed import DistributedContext  # noqa: E402


def write_dataset(path: Path, count: int, resolution: int) -> Path:
    """``count`` smooth random RGB images (upsampled noise) in NVIDIA's zip layout."""
    rng = np.random.RandomState(0)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(count):
            pixels = (rng.rand(max(resolution // 4, 1), max(resolution // 4, 1), 3) * 255).astype(np.uint8)
            image = PIL.Image.fromarray(pixels, "RGB").resize((resolution, resolution), PIL.Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(f"00000/img{index:08d}.png", buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": None}))
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--cfg", default="auto", help="NVIDIA preset: auto, stylegan2, paper256, ... [auto]")
    parser.add_argument("--batch", type=int, help="global batch [preset]")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp32", action="store_true", help="NVIDIA's --fp32: no float16 blocks, no conv clamp")
    parser.add_argument("--fp16-on-cpu", action="store_true", help="keep float16 blocks on a CPU run")
    parser.add_argument("--impl", choices=("ref", "cuda", "auto"), default="auto", help="ops implementation")
    parser.add_argument("--kimg", type=float, default=0.256, help="training length")
    parser.add_argument("--tick", type=float, help="kimg per tick [kimg / 4]")
    parser.add_argument("--cbase", type=int, help="channel base [preset]")
    parser.add_argument("--cmax", type=int, help="max channels [preset]")
    parser.add_argument("--map", type=int, help="mapping depth [preset]")
    parser.add_argument("--augpipe", default="bgc")
    parser.add_argument("--p", type=float, default=0.2, help="initial augment p (so the pipe does real work)")
    parser.add_argument("--data", help="dataset zip [a generated one]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args(argv)


def overrides_of(args: argparse.Namespace, data: Path) -> dict[str, object]:
    given = {"batch": args.batch, "cbase": args.cbase, "cmax": args.cmax, "map": args.map}
    return {
        "data": str(data), "kimg": args.kimg, "tick": args.tick or args.kimg / 4, "augpipe": args.augpipe,
        "p": args.p, "metrics": "none", "workers": 0, "snap": "none", "fp32": args.fp32, "grid": "2x2",
        "ops_impl": args.impl,
        "fp16_on_cpu": args.fp16_on_cpu, **{key: value for key, value in given.items() if value is not None},
    }  # fmt: skip


def nvidia_command(args: argparse.Namespace) -> str:
    """NVIDIA stylegan2-ada-pytorch's train.py for the same run (--cbase/--cmax/--map need stylegan3's train.py)."""
    parts = ["python train.py --outdir=out --data=DATA.zip --gpus=1", f"--cfg={args.cfg}", f"--kimg={args.kimg:g}",
             "--metrics=none --snap=1000 --aug=ada", f"--augpipe={args.augpipe}"]  # fmt: skip
    parts += [f"--batch={args.batch}"] if args.batch else []
    parts += ["--fp32=1"] if args.fp32 else []
    extra = [f"--{name}={getattr(args, name)}" for name in ("cbase", "cmax", "map") if getattr(args, name)]
    return " ".join(parts) + (f"  (plus, in stylegan3's train.py: {' '.join(extra)})" if extra else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_process_impl(args.impl)  # what the training worker does with the ops_impl option
    with tempfile.TemporaryDirectory() as temp:
        data = Path(args.data) if args.data else write_dataset(Path(temp) / "bench.zip", 64, args.resolution)
        options = resolve_options(args.cfg, args.resolution, 1, overrides_of(args, data), "benchmark", args.device)
        ticks = []
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.time()
        world = DistributedContext(device=torch.device(args.device))
        train(options, Path(temp) / "run", TrainCallbacks(on_tick=ticks.append), world=world)
        wall = time.time() - start
    steady = ticks[1:] or ticks
    nimg = sum(t.sec_per_tick / t.sec_per_kimg * 1000 for t in steady)
    sec_per_kimg = sum(t.sec_per_tick for t in steady) / nimg * 1000
    peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
    network = options.network
    print(json.dumps({
        "config": {"resolution": args.resolution, "cfg": args.cfg, "batch": options.loop.batch,
                   "channel_base": network.channel_base, "channel_max": network.channel_max,
                   "map": network.mapping_layers, "num_fp16_res": network.num_fp16_res,
                   "conv_clamp": network.conv_clamp, "impl": args.impl, "device": args.device,
                   "threads": args.threads, "augpipe": args.augpipe, "p_start": args.p, "torch": torch.__version__,
                   "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "kimg": args.kimg, "ticks": len(ticks), "sec_per_kimg": round(sec_per_kimg, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_gpu_gb": round(peak_gpu, 3), "wall_s": round(wall, 1),
        "nvidia_command": nvidia_command(args),
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
