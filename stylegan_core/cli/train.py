"""`stylegan train`: NVIDIA's train.py options (plus StyleGAN3's capacity and learning-rate knobs).

Every option except --outdir, --cfg and --dry-run is an override in `config.OVERRIDE_KEYS`: argparse defaults are
None and only the options given on the command line reach `presets.resolve_options`, so defaults live only in
`stylegan_core.config` and `stylegan_core.presets`. Run it directly, or under
`torchrun --nproc_per_node=N -m stylegan_core.cli train ...` for data-parallel training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from stylegan_core.config import TrainOptions
from stylegan_core.presets import PRESET_NAMES, resolve_options

# flag -> (override key, help). Boolean flags take NVIDIA's `--mirror=1` form; a bare `--mirror` means true.
_VALUE_OPTIONS: dict[str, tuple[str, str]] = {
    "--data": ("data", "training data: a dataset zip or folder in NVIDIA's layout [required]"),
    "--gamma": ("gamma", "R1 regularisation weight [default: from --cfg]"),
    "--kimg": ("kimg", "training length in thousands of images (fractions allowed) [default: from --cfg]"),
    "--batch": ("batch", "total batch size over all GPUs and accumulation rounds [default: from --cfg]"),
    "--batch-gpu": ("batch_gpu", "images per GPU per accumulation round [default: batch / GPUs]"),
    "--aug": ("aug", "augmentation mode: ada, noaug or fixed [default: ada]"),
    "--p": ("p", "augmentation probability for --aug=fixed"),
    "--target": ("target", "ADA target value of r_t for --aug=ada [default: 0.6]"),
    "--augpipe": (
        "augpipe",
        "augmentation pipeline: blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc [default: bgc]",
    ),  # fmt: skip
    "--subset": ("subset", "train on this many images (a random subset chosen by --seed)"),
    "--resume": ("resume", "continue from a snapshot (ours), or fine-tune from its weights on other data"),
    "--freezed": ("freezed", "Freeze-D: number of discriminator layers kept frozen [default: 0]"),
    "--snap": ("snap", "snapshot interval in ticks [default: 50]"),
    "--seed": ("seed", "random seed [default: 0]"),
    "--workers": ("workers", "data loader worker processes [default: 3]"),
    "--metrics": ("metrics", "comma-separated metrics evaluated at each snapshot, or none [default: fid50k_full]"),
    "--cbase": ("cbase", "capacity multiplier: channels at resolution r are cbase / r [default: from --cfg]"),
    "--cmax": ("cmax", "maximum number of channels per layer [default: 512]"),
    "--map": ("map", "mapping network depth [default: from --cfg]"),
    "--glr": ("glr", "G learning rate [default: from --cfg]"),
    "--dlr": ("dlr", "D learning rate [default: from --cfg]"),
    "--mbstd-group": ("mbstd_group", "minibatch-stddev group size [default: from --cfg]"),
    "--tick": ("tick", "progress report interval in kimg (fractions allowed) [default: 4]"),
    "--grid": ("grid", "reals.png / fakes*.png layout COLUMNSxROWS [default: NVIDIA's ~8K canvas]"),
}
_BOOL_OPTIONS: dict[str, tuple[str, str]] = {
    "--cond": ("cond", "train a class-conditional model from dataset.json labels [default: false]"),
    "--mirror": ("mirror", "add x-flipped copies of the dataset [default: false]"),
    "--fp32": ("fp32", "disable mixed precision [default: false]"),
    "--nhwc": ("nhwc", "channels_last memory format in float16 layers [default: false]"),
    "--nobench": ("nobench", "disable cuDNN benchmarking [default: false]"),
    "--allow-tf32": ("allow_tf32", "allow TF32 for matmuls and convolutions [default: false]"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a StyleGAN2-ADA model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outdir", required=True, help="where run directories are created")
    parser.add_argument("--cfg", choices=PRESET_NAMES, default="auto", help="base configuration")
    parser.add_argument("-n", "--dry-run", action="store_true", help="print the resolved options and exit")
    for flag, (key, text) in _VALUE_OPTIONS.items():
        parser.add_argument(flag, dest=key, default=None, metavar=key.upper(), help=text, required=flag == "--data")
    for flag, (key, text) in _BOOL_OPTIONS.items():
        parser.add_argument(flag, dest=key, default=None, nargs="?", const="1", metavar="BOOL", help=text)
    parser.set_defaults(func=run)


def given_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Only the options given on the command line, as raw strings for `config.apply_overrides` to parse."""
    keys = [key for key, _ in (*_VALUE_OPTIONS.values(), *_BOOL_OPTIONS.values())]
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _check_augment_arguments(overrides: dict[str, str]) -> None:
    # NVIDIA's rules: --p only with --aug=fixed (and required there), --target only with ada, no --augpipe with noaug.
    aug = overrides.get("aug", "ada")
    if aug == "fixed" and "p" not in overrides:
        raise ValueError("--aug=fixed requires specifying --p")
    if "p" in overrides and aug != "fixed":
        raise ValueError("--p can only be specified with --aug=fixed")
    if "target" in overrides and aug != "ada":
        raise ValueError("--target can only be specified with --aug=ada")
    if "augpipe" in overrides and aug == "noaug":
        raise ValueError("--augpipe cannot be specified with --aug=noaug")


def dataset_summary(path: str) -> tuple[str, int]:
    """(name, resolution) of the training data, read once to resolve resolution-dependent presets."""
    from stylegan_core.data.dataset import ImageDataset

    dataset = ImageDataset(path)
    try:
        return dataset.name, dataset.resolution
    finally:
        dataset.close()


def run_description(dataset_name: str, cfg: str, gpus: int, options: TrainOptions, given: dict[str, str]) -> str:
    """NVIDIA's run-directory description, e.g. `mydata-cond-mirror-auto2-gamma10-kimg1000-batch32-bgc`."""
    parts = [dataset_name]
    parts += ["cond"] if options.data.cond else []
    parts += [f"subset{options.data.subset}"] if options.data.subset else []
    parts += ["mirror"] if options.data.mirror else []
    parts += [f"{cfg}{gpus}" if cfg == "auto" else cfg]
    named = [
        ("gamma", f"gamma{options.loss.r1_gamma:g}"),
        ("kimg", f"kimg{options.loop.total_kimg:g}"),
        ("batch", f"batch{options.loop.batch}"),
        ("aug", options.augment.mode),
        ("p", f"p{options.augment.p:g}"),
        ("target", f"target{options.ada.target:g}"),
        ("augpipe", options.augment.pipe),
        ("resume", "resumecustom"),
        ("freezed", f"freezed{options.network.freezed}"),
        ("batch_gpu", f"batchgpu{options.loop.batch_gpu}"),
        ("cbase", f"cbase{options.network.channel_base}"),
        ("cmax", f"cmax{options.network.channel_max}"),
        ("map", f"map{options.network.mapping_layers}"),
        ("glr", f"glr{options.optimizer.g_lr:g}"),
        ("dlr", f"dlr{options.optimizer.d_lr:g}"),
        ("mbstd_group", f"mbstd{options.network.mbstd_group}"),
    ]
    parts += [text for key, text in named if key in given]
    return "-".join(parts)


def next_run_dir(outdir: Path, description: str, attempts: int = 100) -> Path:
    """`{outdir}/{id:05d}-{description}` with id one past the largest numbered run already there.

    Two launches at the same moment may pick the same id; the one whose mkdir loses takes the next id.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    ids = [
        int(match.group()) for entry in outdir.iterdir() if entry.is_dir() and (match := re.match(r"^\d+", entry.name))
    ]
    next_id = max(ids, default=-1) + 1
    for run_id in range(next_id, next_id + attempts):
        run_dir = outdir / f"{run_id:05d}-{description}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise OSError(f"{outdir}: no free run number after {attempts} attempts (runs {next_id}..{run_id} exist)")


def _remove_refused_run(run_dir: Path) -> None:
    """A run refused before its first tick (bad data, bad --resume) leaves no directory behind."""
    if run_dir.is_dir() and not (run_dir / "stats.jsonl").exists() and not any(run_dir.glob("snapshots/*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    overrides = given_overrides(args)
    _check_augment_arguments(overrides)
    gpus = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dataset_name, resolution = dataset_summary(overrides["data"])
    options = resolve_options(args.cfg, resolution, gpus, overrides, source="stylegan train")
    description = run_description(dataset_name, args.cfg, gpus, options, overrides)
    if args.dry_run:
        if rank == 0:
            print(options.to_json())
            print(f"Run directory would be: {Path(args.outdir) / ('NNNNN-' + description)}")
        return 0
    return _train(options, Path(args.outdir), description)


def _train(options: TrainOptions, outdir: Path, description: str) -> int:
    from stylegan_core.training import TrainingDivergedError, init_distributed, train
    from stylegan_core.training.distributed import broadcast_object, shutdown_distributed

    world = init_distributed(timeout_s=options.loop.dist_timeout_s)
    try:
        run_dir = broadcast_object(str(next_run_dir(outdir, description)) if world.is_main else None, world)
        if world.is_main:
            print("Training options:")
            print(json.dumps(options.to_dict(), indent=2))
            print(f"Output directory: {run_dir}  ({world.world_size} process(es) on {world.device})")
        try:
            result = train(options, Path(run_dir), world=world)
        except TrainingDivergedError as error:
            print(f"stylegan train: {error}", file=sys.stderr)
            return 3
        except (ValueError, OSError):
            if world.is_main:
                _remove_refused_run(Path(run_dir))
            raise
        if world.is_main:
            print(f"Done: kimg {result.kimg:g}, last snapshot {result.last_snapshot}")
        return 0
    finally:
        shutdown_distributed(world)
