"""Stopping a training run on SIGINT/SIGTERM at the end of a tick (no torch import: launchers use it too)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class AbortOnSignal:
    """First SIGINT/SIGTERM: stop at the next tick; second: raise KeyboardInterrupt. Use as `should_abort`, inside
    `with AbortOnSignal() as abort:` (the previous handlers come back at the end; off the main thread, where Python
    cannot install handlers, it never asks to stop)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> AbortOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested
