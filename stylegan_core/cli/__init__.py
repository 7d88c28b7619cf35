"""The `stylegan` command line: `stylegan <command> ...` (also `python -m stylegan_core.cli`).

Each sub-command lives in its own module with `register(subparsers)`; this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `stylegan --help` stays importable even while one sub-command's dependencies are broken.
    from stylegan_core.cli import dataset, generate, import_nvidia, metrics, spec, style_mixing, train, video

    parser = argparse.ArgumentParser(prog="stylegan", description="StyleGAN2-ADA training, data and metrics tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train, dataset, generate, style_mixing, video, metrics, import_nvidia, spec):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as error:
        # Bad input is reported in one line; tracebacks are for bugs.
        print(f"stylegan {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
