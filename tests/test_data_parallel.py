"""The ingestion pool (`stylegan_core.data.parallel`): order, bounded look-ahead, failures and cancellation, also
through `prepare_dataset` (nothing half-written)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from data_support import gradient, leftovers, save

from stylegan_core.data import ingest, parallel
from stylegan_core.data.ingest import prepare_dataset
from stylegan_core.data.options import DatasetError
from stylegan_core.data.parallel import ordered_map

# Enough items for a two-process pool (at least 32 per worker) and many chunks.
_ITEMS = 400
_LINUX = sys.platform == "linux"


@pytest.fixture(params=["fork", "forkserver"] if _LINUX else ["spawn"], autouse=True)
def start_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with workers forked from this process and from the forkserver (the two ways on Linux)."""
    monkeypatch.setattr(parallel, "start_method", lambda: request.param)
    return str(request.param)


def _square_slowly(delays: tuple[float, ...], item: int) -> int:
    time.sleep(delays[item % len(delays)])
    return item * item


def _mark_done(folder: str, item: int) -> int:
    Path(folder, f"{item:05d}").touch()
    return item


def _fail_at_50(kind: str, item: int) -> int:
    if item == 50:
        if kind == "die":
            os._exit(3)  # as an out-of-memory kill would end the worker
        raise ValueError(f"bad item {item}")
    return item


def test_results_come_back_in_item_order_whatever_finishes_first() -> None:
    # Chunks of alternating slow and fast items make the two workers finish out of order.
    delays = (0.004, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert list(ordered_map(_square_slowly, delays, range(_ITEMS), workers=2)) == [i * i for i in range(_ITEMS)]


def test_a_slow_consumer_holds_only_a_few_chunks_and_closing_cancels_the_rest(tmp_path: Path) -> None:
    results = ordered_map(_mark_done, str(tmp_path), range(_ITEMS), workers=2)
    assert next(results) == 0
    time.sleep(1.0)  # time enough for idle workers to run through every item if more had been submitted
    chunk = min(parallel._MAX_CHUNK, _ITEMS // (2 * 8))
    bound = (2 * parallel._AHEAD + 1) * chunk  # chunks in flight, plus the one refilled before the first yield
    assert len(list(tmp_path.iterdir())) <= bound < _ITEMS
    results.close()  # as an error in the consumer does: pending chunks are cancelled, the pool is shut down
    done = len(list(tmp_path.iterdir()))
    assert done <= bound
    time.sleep(0.5)
    assert len(list(tmp_path.iterdir())) == done  # nothing ran after close() returned


def test_an_error_in_a_task_is_raised_in_place_of_its_chunk() -> None:
    seen = []
    with pytest.raises(ValueError, match="bad item 50"):
        for value in ordered_map(_fail_at_50, "raise", range(_ITEMS), workers=2):
            seen.append(value)
    chunk = min(parallel._MAX_CHUNK, _ITEMS // (2 * 8))
    assert seen == list(range(50 - 50 % chunk))  # everything before the failing chunk, in order


def test_a_worker_that_dies_fails_the_map_instead_of_hanging() -> None:
    with pytest.raises(BrokenProcessPool):
        list(ordered_map(_fail_at_50, "die", range(_ITEMS), workers=2))


def test_start_workers_is_harmless_when_repeated_or_serial() -> None:
    parallel.start_workers("stylegan_core.data.tasks", 1)
    parallel.start_workers("stylegan_core.data.tasks", 2)
    parallel.start_workers("stylegan_core.data.tasks", 2)  # the server runs already: nothing new
    assert list(ordered_map(_mark_done, "/dev/null/none", [], workers=2)) == []
    assert list(ordered_map(_square_slowly, (0.0,), range(70), workers=2)) == [i * i for i in range(70)]


def _pool_sized_folder(folder: Path, bad_at: int | None = None) -> Path:
    """80 small PNGs in two class folders (enough for a 2-process pool); optionally one corrupt file."""
    for index in range(80):
        path = folder / f"c{index % 2}" / f"{index:03d}.png"
        if index == bad_at:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        else:
            save(gradient(20, 18, seed=index), path)
    return folder


def test_a_bad_file_found_by_a_worker_fails_cleanly_and_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = prepare_dataset(_pool_sized_folder(tmp_path / "good"), out / "d.zip", 16, workers=2)
    before = {name: (out / name).read_bytes() for name in leftovers(out)}
    with pytest.raises(DatasetError, match=r"077\.png"):
        prepare_dataset(_pool_sized_folder(tmp_path / "bad", bad_at=77), out / "d.zip", 16, workers=2)
    assert {name: (out / name).read_bytes() for name in leftovers(out)} == before  # no temp files, old zip intact
    assert good.count == 80


def test_a_pool_that_breaks_mid_way_leaves_no_half_written_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_map = ingest.ordered_map

    def breaks_after_40(*args: object, **kwargs: object) -> Iterator[object]:
        results = real_map(*args, **kwargs)  # type: ignore[arg-type]
        try:
            for count, result in enumerate(results):
                if count == 40:
                    raise BrokenProcessPool("a worker was killed")
                yield result
        finally:
            results.close()

    monkeypatch.setattr(ingest, "ordered_map", breaks_after_40)
    with pytest.raises(BrokenProcessPool):
        prepare_dataset(_pool_sized_folder(tmp_path / "src"), tmp_path / "out" / "d.zip", 16, workers=2)
    assert leftovers(tmp_path / "out") == []


def test_the_pool_starts_when_ordered_map_is_called_not_on_the_first_result(tmp_path: Path) -> None:
    results = ordered_map(_mark_done, str(tmp_path), range(_ITEMS), workers=2)
    deadline = time.monotonic() + 10.0
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(tmp_path.iterdir())  # items ran before anything was asked for
    assert list(results) == list(range(_ITEMS))


@pytest.mark.skipif(not _LINUX, reason="pipe sizes are a Linux setting")
def test_the_result_pipe_holds_a_whole_chunk_of_images(start_method: str) -> None:
    import fcntl

    with open("/proc/sys/fs/pipe-max-size") as limit:
        if int(limit.read()) < parallel._RESULT_PIPE_BYTES:
            pytest.skip("this system caps pipes below 1 MiB")
    queue = parallel._context(start_method, "stylegan_core.data.tasks").SimpleQueue()
    # A chunk of 8 PNGs at 128 px RGB (~400 KB) goes out in one write, which waits while the pipe is full.
    assert fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ) == parallel._RESULT_PIPE_BYTES >= 8 * 49_353


_CHOICE = """
import threading
from stylegan_core.data import parallel
if {thread}:
    threading.Thread(target=threading.Event().wait, daemon=True).start()
print(parallel.start_method())
"""


@pytest.mark.skipif(not _LINUX, reason="fork is the start method on Linux only")
@pytest.mark.parametrize(("thread", "expected"), [(False, "fork"), (True, "forkserver")])
def test_workers_are_forked_from_a_single_threaded_process_and_never_beside_a_thread(
    thread: bool, expected: str
) -> None:
    # A fresh interpreter: this one runs whatever threads earlier tests and imports (numpy's BLAS pool) started.
    code = _CHOICE.format(thread=thread)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert chosen.stdout.strip() == expected


def test_the_progress_bar_starts_no_thread() -> None:
    before = threading.active_count()
    bar = parallel._progress_bar(10, "test")
    try:
        assert threading.active_count() == before  # tqdm's monitor thread would make the next pool's fork unsafe
    finally:
        bar.close()


def test_ingestion_creates_its_pool_before_its_background_import_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The import's thread, alive at the fork, would turn forked workers into forkserver ones (~0.1 CPU-s slower).
    events: list[str] = []
    real_context, real_import = parallel._context, ingest._import_in_background

    def recording_context(method: str, module: str) -> object:
        events.append("pool")
        return real_context(method, module)

    def recording_import(*modules: str) -> object:
        events.append("import")
        return real_import(*modules)

    monkeypatch.setattr(parallel, "_context", recording_context)
    monkeypatch.setattr(ingest, "_import_in_background", recording_import)
    result = prepare_dataset(_pool_sized_folder(tmp_path / "src"), tmp_path / "d.zip", 16, workers=2)
    assert result.count == 80
    assert events.count("import") == 1 and events[-1] == "import" and "pool" in events  # the pool first


_ORPHAN = """
import sys, time
from stylegan_core.data import parallel
parallel.start_method = lambda: {method!r}
import test_data_parallel as tests
seen = set()
for pid in parallel.ordered_map(tests._pid_after_sleeping, 0.05, range(1000), workers=2):
    seen.add(pid)
    if len(seen) == 2:
        print(*seen, flush=True)
        time.sleep(60)  # killed here, its pool alive
"""


def _pid_after_sleeping(delay: float, item: int) -> int:
    time.sleep(delay)
    return os.getpid()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _LINUX, reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed(start_method: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(Path(__file__).parent)])}
    code = _ORPHAN.format(method=start_method)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
    finally:
        parent.kill()  # SIGKILL: no cleanup runs in the parent
        parent.wait()
    deadline = time.monotonic() + 10.0
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers)  # before: they waited for tasks forever
