"""Remove temporary files a killed writer left behind (``.NAME.<pid>.tmp`` next to ``NAME``).

Writers in this project write ``.NAME.<pid>.tmp`` and rename it over ``NAME``; a process killed in between (SIGKILL,
power loss) leaves the temporary file. The next writer of ``NAME`` removes such files, but only those whose process
is gone: a live pid may be another writer at work right now.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


def remove_stale_temps(final: str | os.PathLike[str]) -> list[Path]:
    """Delete ``.NAME.<pid>.tmp`` siblings of ``final`` whose process no longer exists; return what was removed."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(\d+)\.tmp$")
    removed = []
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:  # another writer cleaned it up first
                continue
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0 or pid > 1 << 22:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
