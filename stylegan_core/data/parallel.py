"""Ordered parallel map over a process pool with a progress bar (decoding and PNG encoding hold the GIL).

Wall time on few cores is the image work divided by the cores plus whatever is not parallel: the pool's start-up,
the parent's own CPU (which competes with the workers for the same cores), and the tail. Hence: workers are forked
from the parent itself when that is safe (no other thread), else from a forkserver started before the caller lists
its input (`start_workers`); the pool starts when `ordered_map` is called, not on the first result asked for; the
parent imports little; results come back in chunks, and only a few chunks are in flight, so a slow consumer never
buffers the whole dataset's results.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many items per worker a pool costs more to start than it saves.
_MIN_ITEMS_PER_WORKER = 32
# Items per task: large enough that a task's IPC (one message each way) is noise against its image work, small
# enough that the last task (one worker finishing while the others idle) is short.
_MAX_CHUNK = 8
# Tasks submitted per worker ahead of the consumer: keeps every worker busy while the parent writes, and bounds
# what a slow consumer holds in memory to workers * _AHEAD * chunk results.
_AHEAD = 3
# Linux's default unprivileged maximum (/proc/sys/fs/pipe-max-size); see _LargeResultPipe.
_RESULT_PIPE_BYTES = 1 << 20
_worker_function: Callable[[Any, Any], Any] | None = None
_worker_context: Any = None


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def start_method() -> str:
    """How pool workers start: fork a single-threaded Linux parent, else the forkserver (spawn where there is none).

    Forking the parent costs nothing to start (no new interpreter, no imports, no resource tracker: ~0.1 CPU-s a
    pool) and is what multiprocessing did by default on Linux until Python 3.14. It is unsafe only when another
    thread may hold a lock the child inherits mid-use (a BLAS or OpenMP pool, tqdm's monitor, Dagster's threads), so
    a parent with any other thread gets workers forked from the forkserver's clean single-threaded process instead.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and _only_thread():
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _only_thread() -> bool:
    """Whether this process runs a single thread, native ones included (OpenBLAS's, torch's OpenMP pool): the
    kernel's count, which Python 3.12+ also checks before it warns about a fork; Python's own count where the
    kernel's cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1]) == 1
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count() == 1


def start_workers(module: str, workers: int | None = None) -> None:
    """Start the forkserver now, importing `module` (the task functions' module) once in it, if pools will need it.

    Returns at once: the server starts and imports in its own process while the caller lists its input; the pool
    `ordered_map` creates later forks its workers from it in milliseconds. Does nothing when one worker is asked
    for, when workers will be forked from this process, or when the server already runs (its preloads were fixed
    when it started).
    """
    workers = default_workers() if workers is None else workers
    if workers > 1 and start_method() == "forkserver":
        _context("forkserver", module)
        multiprocessing.forkserver.ensure_running()


def ordered_map(
    function: Callable[[Any, Item], Result],
    context: Any,
    items: Sequence[Item],
    workers: int | None = None,
    progress: bool = False,
    description: str = "",
) -> OrderedResults[Result]:
    """function(context, item) for every item, in order; `context` is sent once to each worker process.

    The pool starts (and its first chunks are submitted) here, before this returns: a caller that starts a thread
    afterwards (a background import) still gets forked workers. `function` must be a module-level function. An
    exception in a task is raised in place of its chunk's results (a worker that dies: BrokenProcessPool), after
    every earlier result. Closing the results early (an error in the caller) cancels the remaining work.
    """
    workers = default_workers() if workers is None else workers
    workers = max(1, min(workers, len(items) // _MIN_ITEMS_PER_WORKER))
    if workers == 1:
        chunks: Iterator[list[Result]] = ([function(context, item)] for item in items)
    else:
        chunks = _pooled_chunks(function, context, items, workers)
        next(chunks)  # runs up to its first yield: the pool is started and its first chunks are submitted
    # After the pool has forked; and without tqdm's monitor thread, which would keep a later pool in this process
    # (ingestion's, after the header scan's bar) from forking.
    bar = _progress_bar(len(items), description) if progress else None
    return OrderedResults(chunks, bar)


class OrderedResults(Generic[Result]):
    """The results of `ordered_map`, one by one; `close()` stops the pool (cancelling what has not run)."""

    def __init__(self, chunks: Iterator[list[Result]], bar: Any) -> None:
        self._chunks = chunks
        self._bar = bar
        self._current: Iterator[Result] = iter(())

    def __iter__(self) -> OrderedResults[Result]:
        return self

    def __next__(self) -> Result:
        for result in self._current:
            return result
        try:
            results = next(self._chunks)
        except BaseException:
            self.close()
            raise
        if self._bar is not None:
            self._bar.update(len(results))
        self._current = iter(results)
        return next(self)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _pooled_chunks(
    function: Callable[[Any, Item], Result], context: Any, items: Sequence[Item], workers: int
) -> Iterator[list[Result]]:
    """An empty list once the pool has started, then the results of consecutive chunks of `items`, in order,
    computed by a pool of `workers` processes."""
    # The executor, unlike multiprocessing.Pool, raises BrokenProcessPool instead of respawning dying workers forever.
    chunk = max(1, min(_MAX_CHUNK, len(items) // (workers * 8)))
    starts = iter(range(0, len(items), chunk))
    mp_context = _context(start_method(), function.__module__)
    # Held open by this process only: when it dies (even by SIGKILL) the workers read EOF and exit (_watch_parent).
    alive_reader, alive_writer = mp_context.Pipe(duplex=False)
    executor = ProcessPoolExecutor(
        workers,
        mp_context=mp_context,
        initializer=_initialise,
        initargs=(function, context, alive_reader, alive_writer),
    )
    pending: deque[Future[list[Result]]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append(executor.submit(_call_chunk, items[start : start + chunk]))

    try:
        for _ in range(workers * _AHEAD):
            submit_next()  # the first submit forks the workers (with fork, all of them, before any thread starts)
        yield []
        while pending:
            results = pending.popleft().result()
            submit_next()  # before handing the results over: the workers never wait for the consumer
            yield results
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        alive_writer.close()
        alive_reader.close()


def _progress_bar(total: int, description: str) -> Any:
    # Imported only when shown: tqdm costs the parent ~20-50 ms of CPU that two busy workers would feel.
    from tqdm import tqdm

    class Bar(tqdm):  # type: ignore[misc,type-arg]
        monitor_interval = 0  # no monitor thread: it only matters for bars updated less often than every 10 s

    return Bar(total=total, desc=description, unit="img", leave=False)


class _LargeResultPipe:
    """A multiprocessing context whose SimpleQueue (the executor's result queue) has a 1 MiB pipe where Linux allows.

    A worker sends a chunk's results (8 PNGs at 128 px: ~400 KB) in one write that blocks until the parent has read
    all but the pipe's capacity (64 KiB by default): the worker idled and switched contexts ~6 times a chunk while
    the parent was busy. On 2 cores, 2000 images at 128 px, A/B runs gave 0.94-0.99x the map's wall time, within
    that machine's drift (`benchmarks/ingest_pool.py`, `benchmarks/RESULTS.md`): kept because it removes blocking
    and costs nothing. Performance only: where the pipe cannot grow, it stays as it was.
    """

    def SimpleQueue(self) -> Any:  # noqa: N802 - multiprocessing's name
        queue = super().SimpleQueue()  # type: ignore[misc]
        reader = getattr(queue, "_reader", None)  # a private attribute since Python 3.0; checked, not relied on
        if reader is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: EPERM
                fcntl.fcntl(reader.fileno(), fcntl.F_SETPIPE_SZ, _RESULT_PIPE_BYTES)
        return queue


@functools.cache
def _context_type(method: str) -> type[multiprocessing.context.BaseContext]:
    base = type(multiprocessing.get_context(method))
    return type(base.__name__, (_LargeResultPipe, base), {})


def _context(method: str, module: str) -> multiprocessing.context.BaseContext:
    context = _context_type(method)()
    if method == "forkserver":
        # The server imports the task's module (Pillow, ...) and this one (the executor's worker loop) once and
        # forks every worker from it, instead of each worker importing them again. Only takes effect when this
        # process starts its server (the first pool).
        context.set_forkserver_preload([module, __name__])
    return context


def _initialise(function: Callable[[Any, Any], Any], context: Any, alive_reader: Any, alive_writer: Any) -> None:
    global _worker_function, _worker_context
    _worker_function, _worker_context = function, context
    alive_writer.close()  # this worker's copy (inherited by a fork, or passed): only the parent's may keep it open
    # A forked worker inherits its parent's SIGTERM handler; the executor's terminate() of a broken pool must end
    # the worker, not raise in it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(alive_reader,), name="watch-parent", daemon=True).start()


def _watch_parent(alive_reader: Any) -> None:
    """Exit when the parent is gone. A worker otherwise outlives a parent killed without cleanup (SIGKILL, or a
    SIGTERM it does not handle) forever: it waits for tasks on a queue whose write end it holds itself."""
    try:
        alive_reader.recv_bytes()  # nothing is ever sent: returns only by EOF, when the parent's end is closed
    except (EOFError, OSError):
        pass
    os._exit(1)


def _call_chunk(items: Sequence[Any]) -> list[Any]:
    assert _worker_function is not None
    return [_worker_function(_worker_context, item) for item in items]
