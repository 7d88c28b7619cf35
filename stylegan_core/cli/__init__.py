"""The `stylegan` command line: `stylegan <command> ...` (also `python -m stylegan_core.cli`).

Each sub-command lives in its own module with `register(subparsers)`; this module only assembles them and applies
the exit-code convention of `stylegan_core.errors`: 0 success, 1 bad input (one line, no traceback), 2 usage;
`--debug` (anywhere on the command line) prints the traceback of an input error as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `stylegan --help` stays importable even while one sub-command's dependencies are broken.
    from stylegan_core.cli import dataset, generate, import_nvidia, metrics, spec, train

    parser = argparse.ArgumentParser(prog="stylegan", description="StyleGAN2-ADA training, data and metrics tools")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train, dataset, generate, metrics, import_nvidia, spec):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from stylegan_core.errors import run_reporting

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([arg for arg in argv if arg != "--debug"])
    return run_reporting(f"stylegan {args.command}", lambda: args.func(args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
