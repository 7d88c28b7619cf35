"""The one exception type for bad input, and the exit-code convention every entry point shares.

Core code raises :class:`InputError` (or a subclass) when a file, value or option is wrong; an entry point turns
it into one line on stderr and exit code 1 (2 for :class:`UsageError` and argparse's own usage errors). Anything
else is a bug and keeps its traceback. ``--debug`` shows the traceback for input problems too.
"""

from __future__ import annotations

import sys
import traceback
import zipfile
import zlib
from collections.abc import Callable

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


class InputError(ValueError):
    """Bad input (a file, a value, an option): reported in one line naming the file or option, exit code 1."""


class UsageError(InputError):
    """The command line itself is wrong (options that cannot be combined, ...): exit code 2, as argparse uses."""


# Older core code reports bad input as plain ValueError/OSError (DatasetError, LimitError, ... are ValueErrors);
# corrupt archives raise zipfile's and zlib's own types; memory and recursion errors can only come from input
# larger than the limits anticipated.
_INPUT_ERRORS = (ValueError, OSError, MemoryError, RecursionError, zipfile.BadZipFile, zlib.error)


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines folded, at most 2000 characters)."""
    text = str(error)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the worker's own last line
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    text = " ".join(text.split()) or type(error).__name__
    if isinstance(error, MemoryError):
        text = f"ran out of memory ({text}); the input is larger than this machine can hold"
    elif isinstance(error, RecursionError):
        text = "input nested too deeply"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def run_reporting(prog: str, action: Callable[[], int | None], debug: bool = False) -> int:
    """Run ``action``; bad input becomes one line ``PROG: error: MESSAGE`` on stderr and exit code 1 or 2."""
    try:
        return int(action() or EXIT_OK)
    except RuntimeError as error:
        if "can't allocate memory" not in str(error):  # only torch's allocator failing on oversized input
            raise
        return _report(prog, error, debug)
    except _INPUT_ERRORS as error:
        return _report(prog, error, debug)


def _report(prog: str, error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return EXIT_USAGE if isinstance(error, UsageError) else EXIT_INPUT
