"""`stylegan train`: NVIDIA's train.py options (plus StyleGAN3's capacity and learning-rate knobs).

Every option except --outdir, --cfg, --gpus and --dry-run is generated from the one option table
(`stylegan_core.options.OVERRIDE_KEYS`): name, help, choices and the default shown are read from the table and the
config dataclasses, and each value is checked by the table's parser while the command line is parsed. Argparse
defaults are None and only the options given reach `presets.resolve_options`, so defaults live only in
`stylegan_core.config` and `stylegan_core.presets`. Run it directly, or under
`torchrun --nproc_per_node=N -m stylegan_core.cli train ...` for data-parallel training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from stylegan_core.cli.arguments import whole_number
from stylegan_core.config import TrainOptions
from stylegan_core.errors import UsageError
from stylegan_core.metric_names import require_detectors
from stylegan_core.options import FP32_HELP, MAX_BATCH, OVERRIDE_KEYS, OptionError, OverrideKey, flag_name, parse_value
from stylegan_core.presets import PRESET_NAMES, preset_fields, resolve_options
from stylegan_core.training.ray_launcher import add_launcher_arguments, launch_config_from_args

# Flags of `stylegan train` that are not training options (the run's place and shape, not its content).
COMMAND_FLAGS = ("--outdir", "--cfg", "--gpus", "--dry-run")


def option_help(row: OverrideKey, from_preset: frozenset[tuple[str, str]]) -> str:
    """The help line of one table row: its text, its choices, and where its default comes from."""
    parts = [row.help]
    if row.choices:
        parts.append(f"({', '.join(row.choices)})")
    if row.key == "data":
        default = "required"
    elif (row.section, row.field) in from_preset:
        default = "default: from --cfg"
    else:
        default = f"default: {row.default_text()}"
    return f"{' '.join(parts)} [{default}]"


def _checked(key: str) -> Callable[[str], str]:
    """argparse `type`: check the value with the table's parser now, keep the raw string for `resolve_options`."""

    def check(value: str) -> str:
        try:
            parse_value(key, value)
        except OptionError as error:
            raise argparse.ArgumentTypeError(error.message(flag_name)) from None
        return value

    check.__name__ = key  # argparse names the type in some messages
    return check


def register(subparsers: argparse._SubParsersAction) -> None:
    # A one-line usage: the generated list of ~50 options would bury a bad value's error message.
    usage = "stylegan train --outdir DIR --data PATH [--cfg PRESET] [--gpus N] [--dry-run] [OPTION VALUE ...]"
    parser = subparsers.add_parser(
        "train", help="train a StyleGAN2-ADA model", description=__doc__.split("\n\n")[0], usage=usage
    )
    parser.add_argument("--outdir", required=True, help="where run directories are created")
    parser.add_argument("--cfg", choices=PRESET_NAMES, default="auto", help="base configuration [default: auto]")
    gpus_help = "GPUs to train on; more than 1 runs under torchrun, and the command to do so is printed"
    # At most one process per image of the largest batch (each GPU takes at least one image of every batch).
    parser.add_argument("--gpus", type=whole_number(1, MAX_BATCH), default=None, metavar="N", help=gpus_help)
    parser.add_argument("-n", "--dry-run", action="store_true", help="print the resolved options and exit")
    from_preset = preset_fields()
    for key, row in OVERRIDE_KEYS.items():
        extra = {"nargs": "?", "const": "1"} if row.is_bool else {}
        parser.add_argument(row.flag, dest=key, default=None, metavar=row.metavar, type=_checked(key),
                            help=option_help(row, from_preset), required=key == "data", **extra)  # fmt: skip
    parser.add_argument("--fp32", dest="fp32", default=None, nargs="?", const="1", metavar="BOOL",
                        type=_checked("fp32"), help=f"{FP32_HELP} [default: false]")  # fmt: skip
    add_launcher_arguments(parser)
    parser.set_defaults(func=run)


def given_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Only the options given on the command line, as raw strings for `options.apply_overrides` to parse."""
    keys = [*OVERRIDE_KEYS, "fp32"]
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def torchrun_hint(gpus: int, argv: list[str]) -> str:
    """The command that trains on `gpus` GPUs: the same arguments, without --gpus, under torchrun."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--gpus":
            skip = True
            continue
        if not arg.startswith("--gpus="):
            kept.append(arg)
    command = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "stylegan_core.cli", *kept]
    return shlex.join(command)


def check_gpus(requested: int | None, world_size: int, under_torchrun: bool, argv: list[str]) -> None:
    """--gpus says how many processes the user expects; one process per GPU is torchrun's job, not ours."""
    if requested is None:
        return
    if requested < 1:
        raise ValueError(f"--gpus must be >= 1, got {requested}")
    if under_torchrun and requested != world_size:
        raise ValueError(f"--gpus {requested} disagrees with torchrun's {world_size} processes; drop --gpus")
    if not under_torchrun and requested > 1:
        raise ValueError(f"--gpus {requested} starts one process per GPU through torchrun; run: "
                         f"{torchrun_hint(requested, argv)}")  # fmt: skip


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
    if "resume" in overrides:  # a run directory, a folder of runs, or `latest` (in --outdir) name a snapshot
        from stylegan_core.cli.locate import resolve_network

        overrides["resume"] = str(resolve_network(overrides["resume"], "--resume", Path(args.outdir)))
    ray_config = launch_config_from_args(args)
    gpus = ray_config.num_workers if ray_config else int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if ray_config is None:  # with Ray, --num-workers is the process count
        check_gpus(args.gpus, gpus, "WORLD_SIZE" in os.environ, ["train", *_train_argv()])
    dataset_name, resolution = dataset_summary(overrides["data"])
    from stylegan_core.training.distributed import default_device

    device = default_device().type  # the device init_distributed will pick: the precision policy depends on it
    try:
        options = resolve_options(args.cfg, resolution, gpus, overrides, source="stylegan train", device=device)
    except OptionError as error:
        raise UsageError(error.render(flag_name)) from None  # a flag's value: exit 2
    description = run_description(dataset_name, args.cfg, gpus, options, overrides)
    check_metrics(options, detector_here=ray_config is None)  # also before any run directory exists
    if args.dry_run:
        if rank == 0:
            print(options.to_json())
            print(f"Run directory would be: {Path(args.outdir) / ('NNNNN-' + description)}")
        return 0
    if ray_config is not None:
        from stylegan_core.training.ray_launcher import run_cli

        return run_cli(options, lambda: next_run_dir(Path(args.outdir), description), ray_config)
    return _train(options, Path(args.outdir), description)


def check_metrics(options: TrainOptions, detector_here: bool = True) -> None:
    """Metrics that cannot run are refused before a run directory exists, by --dry-run too, not at the first snapshot
    after hours of training. `detector_here`: the detector files are read on this machine (not under Ray)."""
    from stylegan_core.metric_names import parse_metric_name
    from stylegan_core.training.worker import prepare_options

    for name in options.metrics.names:
        try:
            parse_metric_name(name)
        except ValueError as error:
            raise UsageError(f"--metrics: {error}") from None
    if detector_here:
        metrics = prepare_options(options).metrics  # --detector / --vgg16, else their environment variables
        require_detectors(options.metrics.names, metrics.detector, metrics.vgg16)


def _train_argv() -> list[str]:
    """The arguments after `train` on this process's command line (for the torchrun hint)."""
    argv = sys.argv[1:]
    return argv[argv.index("train") + 1 :] if "train" in argv else argv


def _train(options: TrainOptions, outdir: Path, description: str) -> int:
    from stylegan_core.training import TrainCallbacks, TrainingDivergedError, init_distributed
    from stylegan_core.training.distributed import broadcast_object, shutdown_distributed
    from stylegan_core.training.worker import AbortOnSignal, prepare_options, run_training

    options = prepare_options(options)  # environment fallbacks written in, so the printed options are what runs
    world = init_distributed(timeout_s=options.loop.dist_timeout_s)
    try:
        run_dir = broadcast_object(str(next_run_dir(outdir, description)) if world.is_main else None, world)
        if world.is_main:
            print("Training options:")
            print(json.dumps(options.to_dict(), indent=2))
            print(f"Output directory: {run_dir}  ({world.world_size} process(es) on {world.device})")
        try:
            # The first Ctrl-C stops at the end of the tick with a snapshot; a second one interrupts at once.
            with AbortOnSignal() as abort:
                result = run_training(options, Path(run_dir), TrainCallbacks(should_abort=abort), world=world)
        except KeyboardInterrupt:  # the second Ctrl-C (the first one stops at the end of the tick)
            if world.is_main:
                _report_interrupted(Path(run_dir))
            return 130
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


def _report_interrupted(run_dir: Path) -> None:
    from stylegan_core.io.snapshot import find_latest_snapshot

    latest = find_latest_snapshot(run_dir)
    if latest is None:
        print(f"stylegan train: interrupted before the first snapshot of {run_dir}", file=sys.stderr)
    else:
        print(f"stylegan train: interrupted; the last complete snapshot is {latest} (continue with --resume "
              f"{run_dir})", file=sys.stderr)  # fmt: skip
