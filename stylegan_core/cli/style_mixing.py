"""`stylegan style-mixing`: NVIDIA's style-mixing matrix (style_mixing.py) from a snapshot or NVIDIA pickle."""

from __future__ import annotations

import argparse

from stylegan_core.cli.arguments import output_folder
from stylegan_core.cli.generate import (
    add_network_argument,
    add_rendering_arguments,
    load_network,
    resolve_device,
    seeds_argument,
)
from stylegan_core.export.seeds import parse_seeds
from stylegan_core.export.style_mixing import write_style_mixing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "style-mixing",
        help="style-mixing matrix: row seeds with some styles taken from column seeds",
        description="Images of each row seed whose ws at --styles come from each column seed, as NVIDIA's "
        "style_mixing.py: <row>-<col>.png, <seed>-<seed>.png and grid.png in --outdir.",
    )
    add_network_argument(parser)
    parser.add_argument("--rows", dest="row_seeds", required=True, type=seeds_argument, metavar="SEEDS",
                        help="row seeds, e.g. 85,100")  # fmt: skip
    parser.add_argument("--cols", dest="col_seeds", required=True, type=seeds_argument, metavar="SEEDS",
                        help="column seeds, e.g. 55,821")  # fmt: skip
    parser.add_argument("--styles", type=styles_argument, default="0-6", metavar="INDICES",
                        help="ws indices taken from the column seed (default 0-6)")  # fmt: skip
    parser.add_argument("--outdir", required=True, type=output_folder, metavar="DIR",
                        help="folder for the images and grid.png")  # fmt: skip
    add_rendering_arguments(parser)
    parser.set_defaults(func=run)


def styles_argument(text: str) -> list[int]:
    """--styles reads like --seeds, but its error must talk about ws indices, not seeds."""
    try:
        return parse_seeds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"style indices must be ws indices or upward ranges of them, e.g. 0-6 or 0,2,4, got {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    from stylegan_core.cli.locate import resolve_class, resolve_network

    network = resolve_network(args.network, "--network")
    G = load_network(network, resolve_device(args.device))
    class_idx = resolve_class(args.class_idx, network, G.c_dim)
    options = dict(truncation_psi=args.truncation_psi, noise_mode=args.noise_mode, class_idx=class_idx)
    path = write_style_mixing(G, args.row_seeds, args.col_seeds, args.outdir, args.styles, **options)
    print(f"wrote {path} ({len(args.row_seeds)}x{len(args.col_seeds)} mixes)")
    return 0
