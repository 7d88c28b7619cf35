"""Ordered parallel map over a process pool with a progress bar (decoding and PNG encoding hold the GIL).

Wall time on few cores is the image work divided by the cores plus whatever is not parallel: the pool's start-up,
the parent's own CPU (which competes with the workers for the same cores), and the tail. Hence: the forkserver can be
started before the caller lists its input (`start_workers`), the parent imports little, results come back in chunks,
and only a few chunks are in flight, so a slow consumer never buffers the whole dataset's results.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many items per worker a pool costs more to start (about a second) than it saves.
_MIN_ITEMS_PER_WORKER = 32
# Items per task: large enough that a task's IPC (one message each way) is noise against its image work, small
# enough that the last task (one worker finishing while the others idle) is short.
_MAX_CHUNK = 8
# Tasks submitted per worker ahead of the consumer: keeps every worker busy while the parent writes, and bounds
# what a slow consumer holds in memory to workers * _AHEAD * chunk results.
_AHEAD = 3
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_worker_function: Callable[[Any, Any], Any] | None = None
_worker_context: Any = None


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def start_workers(module: str, workers: int | None = None) -> None:
    """Start the forkserver now, importing `module` (the task functions' module) once in it.

    Returns at once: the server starts and imports in its own process while the caller lists its input; the pool
    `ordered_map` creates later forks its workers from it in milliseconds. Does nothing when one worker is asked
    for, without a forkserver (spawn), or when the server already runs (its preloads were fixed when it started).
    """
    workers = default_workers() if workers is None else workers
    if workers > 1 and _START_METHOD == "forkserver":
        _context(module)
        multiprocessing.forkserver.ensure_running()


def ordered_map(
    function: Callable[[Any, Item], Result],
    context: Any,
    items: Sequence[Item],
    workers: int | None = None,
    progress: bool = False,
    description: str = "",
) -> Iterator[Result]:
    """Yield function(context, item) for every item in order; `context` is sent once to each worker process.

    `function` must be a module-level function. An exception in a task is raised here in place of its chunk's
    results (a worker that dies: BrokenProcessPool), after every earlier result. Closing the iterator early (an
    error in the caller) cancels the remaining work.
    """
    workers = default_workers() if workers is None else workers
    workers = max(1, min(workers, len(items) // _MIN_ITEMS_PER_WORKER))
    bar = _progress_bar(len(items), description) if progress else None
    try:
        if workers == 1:
            for item in items:
                yield function(context, item)
                if bar is not None:
                    bar.update()
            return
        for results in _pooled_chunks(function, context, items, workers):
            yield from results
            if bar is not None:
                bar.update(len(results))
    finally:
        if bar is not None:
            bar.close()


def _pooled_chunks(
    function: Callable[[Any, Item], Result], context: Any, items: Sequence[Item], workers: int
) -> Iterator[list[Result]]:
    """The results of consecutive chunks of `items`, in order, computed by a pool of `workers` processes."""
    # Not plain fork: the parent may hold threads (torch, tqdm, Dagster) that a fork would copy mid-lock. The
    # forkserver forks workers from a clean single-threaded server (spawn where there is none). The executor,
    # unlike multiprocessing.Pool, raises BrokenProcessPool instead of respawning dying workers forever.
    chunk = max(1, min(_MAX_CHUNK, len(items) // (workers * 8)))
    starts = iter(range(0, len(items), chunk))
    executor = ProcessPoolExecutor(
        workers,
        mp_context=_context(function.__module__),
        initializer=_initialise,
        initargs=(function, context),
    )
    pending: deque[Future[list[Result]]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append(executor.submit(_call_chunk, items[start : start + chunk]))

    try:
        for _ in range(workers * _AHEAD):
            submit_next()
        while pending:
            results = pending.popleft().result()
            submit_next()  # before handing the results over: the workers never wait for the consumer
            yield results
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _progress_bar(total: int, description: str) -> Any:
    # Imported only when shown: tqdm costs the parent ~20-50 ms of CPU that two busy workers would feel.
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", leave=False)


def _context(module: str) -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(_START_METHOD)
    if _START_METHOD == "forkserver":
        # The server imports the task's module (Pillow, ...) and this one (the executor's worker loop) once and
        # forks every worker from it, instead of each worker importing them again. Only takes effect when this
        # process starts its server (the first pool).
        context.set_forkserver_preload([module, __name__])
    return context


def _initialise(function: Callable[[Any, Any], Any], context: Any) -> None:
    global _worker_function, _worker_context
    _worker_function, _worker_context = function, context


def _call_chunk(items: Sequence[Any]) -> list[Any]:
    assert _worker_function is not None
    return [_worker_function(_worker_context, item) for item in items]
