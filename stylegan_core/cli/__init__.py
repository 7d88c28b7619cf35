"""The `stylegan` command line: `stylegan <command> ...` (also `python -m stylegan_core.cli`).

Each sub-command lives in its own module with `register(subparsers)`; this module only assembles them. Only the
chosen command's module is imported (the others appear in `--help` from the table below), so `stylegan dataset
prepare` starts without importing torch. Exit codes follow `stylegan_core.errors`: 0 success, 1 bad input (one
line, no traceback), 2 usage; `--debug` (anywhere on the command line) prints the traceback of an input error too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command name, its module, its line in `stylegan --help` (a test checks these equal the modules' own help texts).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "stylegan_core.cli.train", "train a StyleGAN2-ADA model"),
    ("dataset", "stylegan_core.cli.dataset", "prepare and validate datasets"),
    ("generate", "stylegan_core.cli.generate", "generate images for given seeds from a snapshot"),
    (
        "style-mixing",
        "stylegan_core.cli.style_mixing",
        "style-mixing matrix: row seeds with some styles taken from column seeds",
    ),
    ("video", "stylegan_core.cli.video", "latent interpolation video through seeds (MP4, else animated WebP/GIF)"),
    ("project", "stylegan_core.cli.project", "project an image into a network's W space (NVIDIA's projector)"),
    ("metrics", "stylegan_core.cli.metrics", "compute FID/KID/PR/IS/PPL of a snapshot"),
    (
        "import-nvidia",
        "stylegan_core.cli.import_nvidia",
        "convert an NVIDIA StyleGAN2-ADA / StyleGAN3-stylegan2 network pickle to a snapshot",
    ),
    ("spec", "stylegan_core.cli.spec", "check dataset spec files"),
    ("doctor", "stylegan_core.cli.doctor", "check this machine for training"),
)


EXIT_INTERRUPTED = 130  # what shells report for a command stopped by SIGINT


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the chosen command in full, every other command as a one-line entry."""
    parser = argparse.ArgumentParser(prog="stylegan", description="StyleGAN2-ADA training, data and metrics tools")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen_command(sys.argv[1:] if argv is None else argv)
    for name, module, summary in COMMANDS:
        if name == chosen:
            # Imported here so `stylegan --help` works even while one sub-command's dependencies are broken.
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    # The first word that is not an option; the top-level parser has no options that take a value.
    return next((word for word in argv if not word.startswith("-")), None)


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost parser `args` went through (`stylegan dataset prepare`, not `stylegan`)."""
    while True:
        chosen = [
            action.choices[getattr(args, action.dest)]
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices
        ]
        if not chosen:
            return parser
        parser = chosen[0]


def main(argv: Sequence[str] | None = None) -> int:
    from stylegan_core.errors import run_reporting

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    command = _command_parser(parser, args)  # `stylegan dataset prepare`: errors name the whole command
    if unknown:  # argparse's own error would show `stylegan`'s usage, not the sub-command's that has the flags
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return run_reporting(command.prog, lambda: args.func(args), debug=debug)
    except KeyboardInterrupt:  # Ctrl-C is the user's choice, not a bug: no traceback (unless --debug)
        if debug:
            raise
        print(f"{command.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
