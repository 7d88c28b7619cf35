"""Every file the project writes goes through here: a temporary sibling, renamed over the target only when the
write finished, so a crash, a full disk or a kill leaves the previous file whole and never a half-written one.

Temporary names are `.<name>.<pid>.tmp` in the target's folder (same file system, so the rename is atomic; the pid
tells a leftover of a killed process from a live one). Files are created with mode 0666 minus the umask, like any
plain `open()`, so outputs are as readable as the user's umask says (`tempfile.mkstemp` would make them 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from stylegan_core.io.stale_temps import remove_stale_temps


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_outputs(*finals: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Temporary siblings of `finals` for the block to write; all renamed over `finals` if it succeeds, else removed."""
    paths = tuple(Path(final) for final in finals)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)  # what a killed writer of the same file left (issue 13)
    temps = tuple(temp_sibling(path) for path in paths)
    try:
        yield temps
        for temp, final in zip(temps, paths, strict=True):
            os.replace(temp, final)
    except OSError as error:
        # The user named the final file, not our temporary sibling: say which output could not be written.
        if error.filename is not None and Path(error.filename) in temps:
            final = paths[temps.index(Path(error.filename))]
            raise type(error)(error.errno, f"cannot write {final}: {error.strerror}") from None
        raise
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """An open file whose contents replace `path` when the block succeeds."""
    with atomic_outputs(path) as (temp,), open(temp, mode, **open_kwargs) as file:
        yield file


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_file(path, "wb") as file:
        file.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_file(path, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty temporary folder for the block to fill; it replaces `final` (and whatever was there) on success.

    Unlike a file, a folder cannot be swapped in one step: between removing the old folder and renaming the new one
    `final` is briefly absent, never half-written.
    """
    final = Path(final)
    temp = temp_sibling(final)
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        yield temp
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (snapshots are hundreds of megabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
