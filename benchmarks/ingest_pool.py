"""The ingestion pool's two start-up/IPC choices, each against the previous behaviour in the same run.

    python benchmarks/ingest_pool.py --source DIR --repeats 6

Maps `process_task` (the per-image work of `stylegan dataset prepare`: decode, center-crop + Lanczos, PNG encode,
sha256) over the folder with `stylegan_core.data.parallel.ordered_map`, in a fresh interpreter per run, for four
variants: workers from the forkserver or forked from the parent, and the result pipe at Linux's default 64 KiB or
enlarged to 1 MiB (what `_LargeResultPipe` does). The baseline is the old behaviour (forkserver, 64 KiB). Variants
are interleaved and rotated each repeat; medians are compared, since a shared or virtual machine's speed drifts
by several percent within minutes. CPU counts the whole process tree (the forkserver and resource tracker adopted
as orphans and waited for). No zip or manifest is written: this isolates the pool from the command's other work,
which `benchmarks/ingest.py` measures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import _adopt_orphans, make_source  # noqa: E402
from stylegan_core.data.parallel import default_workers  # noqa: E402

_VARIANTS = {
    "forkserver, 64 KiB pipe (before)": ("forkserver", False),
    "forkserver, 1 MiB pipe": ("forkserver", True),
    "fork, 64 KiB pipe": ("fork", False),
    "fork, 1 MiB pipe (now)": ("fork", True),
}


def _child(source: str, method: str, large_pipe: bool, workers: int, resolution: int) -> None:
    """One run in this (fresh) interpreter: print the map's wall time and this process's own CPU as JSON."""
    import multiprocessing

    from stylegan_core.data import parallel
    from stylegan_core.data.options import IngestOptions
    from stylegan_core.data.sources import SourceReader, list_source
    from stylegan_core.data.tasks import ProcessContext, process_task

    parallel.start_method = lambda: method  # type: ignore[assignment]
    if not large_pipe:  # multiprocessing's own context: the result pipe keeps the system's default size
        parallel._context_type = lambda name: type(multiprocessing.get_context(name))  # type: ignore[assignment]
    options = IngestOptions(transform="center-crop", labels="none")
    listing = list_source(source, "none", None, None)
    context = ProcessContext(SourceReader(listing.root, listing.kind), resolution, 3, options)
    start = time.perf_counter()
    count = sum(1 for _ in parallel.ordered_map(process_task, context, list(listing.items), workers))
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": wall, "parent_cpu": usage.ru_utime + usage.ru_stime, "count": count}))


def _run(source: Path, method: str, large_pipe: bool, workers: int, resolution: int) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method, str(int(large_pipe)), str(source)]
    command += [str(workers), str(resolution)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    _wait_for_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(output)
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _wait_for_orphans(grace: float = 0.3) -> None:
    """Reap the forkserver and resource tracker, which exit a moment after the run's interpreter."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, large, source, workers, resolution = sys.argv[2:7]
        _child(source, method, large == "1", int(workers), int(resolution))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None, help="folder of images (default: draw 2000 JPEGs)")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved runs of each variant")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    if not _adopt_orphans():
        print("(the forkserver's CPU cannot be collected on this system: its variants' CPU is undercounted)")
    with tempfile.TemporaryDirectory(prefix="ingest-pool-") as scratch:
        source = args.source.resolve() if args.source else make_source(Path(scratch), 2000, 512, args.workers)
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in _VARIANTS}
        labels = list(_VARIANTS)
        for repeat in range(args.repeats):
            for label in labels[repeat % len(labels) :] + labels[: repeat % len(labels)]:
                result = _run(source, *_VARIANTS[label], args.workers, args.resolution)
                runs[label].append(result)
                print(f"  run {repeat + 1} {label}: map wall {result['wall']:.2f} s, CPU {result['cpu']:.2f} s")
    baseline = next(iter(runs.values()))
    base_wall = statistics.median(run["wall"] for run in baseline)
    base_cpu = statistics.median(run["cpu"] for run in baseline)
    load = os.getloadavg()[0]
    print(f"{args.repeats} interleaved repeats, {args.workers} workers, load average {load:.1f}; medians:")
    for label, variant_runs in runs.items():
        wall = statistics.median(run["wall"] for run in variant_runs)
        cpu = statistics.median(run["cpu"] for run in variant_runs)
        parent = statistics.median(run["parent_cpu"] for run in variant_runs)
        print(
            f"  {label:34s} map wall {wall:5.2f} s ({wall / base_wall:.3f}x)  CPU {cpu:5.2f} s ({cpu / base_cpu:.3f}x)"
            f"  parent CPU {parent:.2f} s"
        )


if __name__ == "__main__":
    main()
