"""`stylegan generate`: images for chosen seeds from a snapshot, as NVIDIA's generate.py (same seeds, same images)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from stylegan_core.cli.arguments import output_folder
from stylegan_core.errors import UsageError
from stylegan_core.export.generate import DEFAULT_TRUNCATION_PSI, NOISE_MODES, write_seed_grid, write_seed_images
from stylegan_core.export.grid import DEFAULT_NOISE_MODE
from stylegan_core.export.seeds import parse_seeds


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate images for given seeds from a snapshot",
        description="Generate images with NVIDIA's seed convention: z = RandomState(seed).randn(1, z_dim); files "
        "seed0000.png, ... (--outdir) or one grid PNG (--grid).",
    )
    add_network_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seeds", type=seeds_argument, help="e.g. 0-15 or 1,5,9-12")
    source.add_argument("--projected-w", type=Path, metavar="NPZ",
                        help="a projector's projected_w.npz: writes proj00.png, ... to --outdir")  # fmt: skip
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--outdir", type=output_folder, metavar="DIR", help="write seed%%04d.png files here")
    output.add_argument("--grid", type=Path, metavar="FILE", help="write all images as one grid PNG")
    parser.add_argument("--grid-size", type=parse_grid_size, metavar="COLSxROWS",
                        help="grid COLUMNSxROWS (default: about square)")  # fmt: skip
    add_rendering_arguments(parser)
    parser.set_defaults(func=run)


def add_network_argument(parser: argparse.ArgumentParser) -> None:
    """--network, as every command that renders from a trained network takes it (resolved by cli/locate.py)."""
    parser.add_argument("--network", required=True, metavar="NETWORK",
                        help="snapshot (.pt), NVIDIA pickle, run directory (its latest snapshot), "
                        "or latest (newest under ./runs)")  # fmt: skip


def add_rendering_arguments(parser: argparse.ArgumentParser, noise_mode: str = DEFAULT_NOISE_MODE) -> None:
    """--trunc, --class, --noise-mode and --device: how generate, style-mixing and video run G."""
    parser.add_argument("--trunc", dest="truncation_psi", type=truncation_argument, default=DEFAULT_TRUNCATION_PSI,
                        metavar="PSI", help=f"truncation psi (default {DEFAULT_TRUNCATION_PSI})")  # fmt: skip
    add_class_argument(parser)
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default=noise_mode,
                        help=f"noise inputs (default {noise_mode})")  # fmt: skip
    add_device_argument(parser)


def add_class_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class", dest="class_idx", metavar="INDEX|NAME", help="class index or name (conditional networks)"
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def seeds_argument(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as error:  # argparse would replace the message with a generic one
        raise argparse.ArgumentTypeError(str(error)) from None


def truncation_argument(text: str) -> float:
    """psi may be any finite number (NVIDIA allows negative psi); NaN or inf would only give garbage images."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"truncation psi must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"truncation psi must be finite, got {text!r}")
    return value


def parse_grid_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"grid size must be COLUMNSxROWS, e.g. 4x2, got {text!r}")
    return int(parts[0]), int(parts[1])


def resolve_device(name: str) -> torch.device:
    """`--device`: auto, cpu, cuda, cuda:N; a device this machine lacks is one sentence, not torch's AssertionError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {name}: {build} (torch {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def load_network(path: Path, device: torch.device) -> torch.nn.Module:
    from stylegan_core.io.snapshot import load_generator

    return load_generator(path, which="G_ema", device=device)


def run(args: argparse.Namespace) -> int:
    from stylegan_core.cli.locate import resolve_class, resolve_network

    if args.projected_w is not None and args.outdir is None:
        raise UsageError("--projected-w writes proj00.png, ... files: give --outdir instead of --grid")
    network = resolve_network(args.network, "--network")
    G = load_network(network, resolve_device(args.device))
    if args.projected_w is not None:  # ws already carry any class: --class and --trunc do not apply
        return _run_projected_w(G, args)
    class_idx = resolve_class(args.class_idx, network, G.c_dim)
    options = dict(truncation_psi=args.truncation_psi, class_idx=class_idx, noise_mode=args.noise_mode)
    if args.grid is not None:
        path = write_seed_grid(G, args.seeds, args.grid, args.grid_size, **options)
        print(f"wrote {path} ({len(args.seeds)} images)")
    else:
        paths = write_seed_images(G, args.seeds, args.outdir, **options)
        print(f"wrote {len(paths)} images to {args.outdir}")
    return 0


def _run_projected_w(G: torch.nn.Module, args: argparse.Namespace) -> int:
    from stylegan_core.export.projected_w import write_projected_images

    paths = write_projected_images(G, args.projected_w, args.outdir, noise_mode=args.noise_mode)
    print(f"wrote {len(paths)} images to {args.outdir}")
    return 0
