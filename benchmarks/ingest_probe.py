"""`stylegan ...` with a timeline: `python benchmarks/ingest_probe.py EVENTS.json dataset prepare ...`.

Runs the command line exactly as `python -m stylegan_core.cli` would, and writes to EVENTS.json the time (Unix
seconds) and this process's CPU seconds at: start (interpreter up), workers_started (the pool's server launched),
map_called (the first chunk submitted), first_result, last_result, zip_closed, exit; and the pids of the pool's
server and multiprocessing's resource tracker. Those outlive this process by a moment (the server having reaped the
workers), so their CPU time is collected by `benchmarks/ingest.py`, which makes itself the subreaper of orphans and
waits for those pids. Imports only
the standard library before the command's own imports, so start-up is measured as a user sees it.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing.forkserver
import resource
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from typing import Any

_events: dict[str, tuple[float, float]] = {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _mark(name: str) -> None:
    _events.setdefault(name, (time.time(), _cpu()))


def _instrument() -> None:
    from stylegan_core.data import ingest

    ordered_map, write_archive = ingest.ordered_map, ingest._write_archive
    start_workers = getattr(ingest, "start_workers", None)  # absent before the pool could start early

    def timed_start_workers(*args: Any, **kwargs: Any) -> None:
        assert start_workers is not None
        start_workers(*args, **kwargs)
        _mark("workers_started")

    def timed_map(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        if function.__name__ != "process_task":  # the header scan
            return ordered_map(function, *args, **kwargs)
        _mark("map_called")  # the pool starts in the call (before, on the first result asked for)
        return _timed(ordered_map(function, *args, **kwargs))

    def _timed(results: Iterator[Any]) -> Iterator[Any]:
        try:
            for result in results:
                _mark("first_result")
                yield result
            _mark("last_result")
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    def timed_write(*args: Any, **kwargs: Any) -> Any:
        written = write_archive(*args, **kwargs)
        _mark("zip_closed")
        return written

    if start_workers is not None:
        ingest.start_workers = timed_start_workers
    ingest._write_archive = timed_write
    ingest.ordered_map = timed_map  # type: ignore[assignment]


def _report(path: str) -> Callable[[], None]:
    def write() -> None:
        _mark("exit")
        # Helper processes that outlive this one by a moment: the pool's server (with the workers it reaped) and
        # multiprocessing's resource tracker.
        helpers = [multiprocessing.forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid]
        with open(path, "w") as file:
            json.dump({"events": _events, "helper_pids": [pid for pid in helpers if pid]}, file)

    return write


if __name__ == "__main__":
    _mark("start")
    events_path, sys.argv = sys.argv[1], ["stylegan", *sys.argv[2:]]
    _instrument()
    atexit.register(_report(events_path))
    from stylegan_core.cli import main

    sys.exit(main())
