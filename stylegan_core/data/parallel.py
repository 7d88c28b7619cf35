"""Ordered parallel map over a process pool with a tqdm progress bar (decoding and PNG encoding hold the GIL)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many items per worker a pool costs more to start (about a second) than it saves.
_MIN_ITEMS_PER_WORKER = 32
_MAX_CHUNK = 8
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_worker_function: Callable[[Any, Any], Any] | None = None
_worker_context: Any = None


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def ordered_map(
    function: Callable[[Any, Item], Result],
    context: Any,
    items: Sequence[Item],
    workers: int | None = None,
    progress: bool = False,
    description: str = "",
) -> Iterator[Result]:
    """Yield function(context, item) for every item in order; `context` is sent once to each worker process.

    `function` must be a module-level function. Closing the iterator early (an error in the caller) cancels the
    remaining work.
    """
    workers = default_workers() if workers is None else workers
    workers = max(1, min(workers, len(items) // _MIN_ITEMS_PER_WORKER))
    bar = tqdm(total=len(items), desc=description, unit="img", disable=not progress, leave=False)
    try:
        if workers == 1:
            for item in items:
                yield function(context, item)
                bar.update()
            return
        # Not plain fork: the parent may hold threads (torch, tqdm, Dagster) that a fork would copy mid-lock. The
        # forkserver forks workers from a clean single-threaded server (spawn where there is none). The executor,
        # unlike multiprocessing.Pool, raises BrokenProcessPool instead of respawning dying workers forever.
        # Small chunks: the last one decides how long one worker waits for the other at the end.
        chunk = max(1, min(_MAX_CHUNK, len(items) // (workers * 8)))
        executor = ProcessPoolExecutor(
            workers,
            mp_context=_context(function),
            initializer=_initialise,
            initargs=(function, context),
        )
        try:
            for result in executor.map(_call, items, chunksize=chunk):
                yield result
                bar.update()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _context(function: Callable[[Any, Any], Any]) -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(_START_METHOD)
    if _START_METHOD == "forkserver":
        # The server imports the task's module (numpy, Pillow) once and forks every worker from it, instead of each
        # worker importing it again. Only takes effect when this process starts its server (the first pool).
        context.set_forkserver_preload([function.__module__])
    return context


def _initialise(function: Callable[[Any, Any], Any], context: Any) -> None:
    global _worker_function, _worker_context
    _worker_function, _worker_context = function, context


def _call(item: Any) -> Any:
    assert _worker_function is not None
    return _worker_function(_worker_context, item)
