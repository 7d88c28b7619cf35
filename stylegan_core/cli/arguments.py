"""argparse value types shared by the sub-commands: a bad flag value is a usage error (exit 2) naming the flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from stylegan_core.parsers import integer


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An integer flag in [low, high], checked by the option table's own parser (one rule for specs and flags)."""
    parse = integer(low, high)

    def check(text: str) -> int:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    check.__name__ = "integer"  # argparse names the type in some messages
    return check


def output_folder(text: str) -> Path:
    """A folder to write into: refused now if it exists as a file, instead of an OSError after the work is done."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path
