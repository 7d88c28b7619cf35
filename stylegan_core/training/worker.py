"""The one training worker: every launcher (`stylegan train`, Dagster's torchrun launch, a Ray actor, a notebook)
trains through `run_training`.

Python: `run_training(options, run_dir, callbacks, world=...)` trains into `run_dir`, continuing from its latest
snapshot; pass `world` when the caller already created the process group (Ray, a notebook), else it joins the
torchrun job from the environment (or runs alone). Before training it applies the environment fallbacks
(`STYLEGAN_OPS_IMPL`, ...) to the options and sets the ops implementation, so training_options.json says what ran.

Process: `python -m stylegan_core.training.worker --run-dir DIR [--options FILE] [--hooks module:function]`, under
torchrun or alone. `--hooks` names a launcher's context manager `function(options, run_dir)` yielding
`LaunchHooks` (callbacks for ticks and snapshots, and what to do with the result): Dagster's Pipes reporting is
`dagster_project.train_worker:pipes_hooks`. The first SIGINT/SIGTERM stops at the end of the current tick (a final
snapshot is written), a second one interrupts at once. Re-running the same command after an interruption continues
exactly where the last snapshot left off; re-running a finished run returns at once.

Exit status: 0 trained to the end, 1 unreadable options or a stop requested by a signal, 3 training diverged.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from stylegan_core.config import TrainOptions
from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.training.callbacks import TrainCallbacks, TrainResult
from stylegan_core.training.distributed import DistributedContext
from stylegan_core.training.loop import TrainingDivergedError, train
from stylegan_core.training.signals import AbortOnSignal

__all__ = ["AbortOnSignal", "LaunchHooks", "find_latest_snapshot", "main", "read_options", "run_training"]
OPTIONS_FILE = "requested_options.json"
"""Where a launcher that plans the run (Dagster) leaves the resolved options for the worker."""
_HOOKS = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclasses.dataclass(frozen=True)
class LaunchHooks:
    """What a launcher adds to a training process: callbacks during the run, and `on_result` at its end."""

    callbacks: TrainCallbacks = dataclasses.field(default_factory=TrainCallbacks)
    on_result: Callable[[TrainResult], None] = lambda result: None




def prepare_options(options: TrainOptions, environ: dict[str, str] | None = None) -> TrainOptions:
    """The options as they will run: environment fallbacks written in."""
    from stylegan_core.options import resolve_environment

    return resolve_environment(options, dict(os.environ) if environ is None else environ)


def run_training(
    options: TrainOptions,
    run_dir: str | Path,
    callbacks: TrainCallbacks | None = None,
    *,
    world: DistributedContext | None = None,
) -> TrainResult:
    """Train into `run_dir`, resuming from its latest snapshot when there is one (see the module docstring)."""
    options = prepare_options(options)
    latest = find_latest_snapshot(run_dir)
    if latest is not None:
        options = dataclasses.replace(options, loop=dataclasses.replace(options.loop, resume=str(latest)))
    from stylegan_core.ops.dispatch import process_impl

    with process_impl(options.loop.ops_impl):  # what impl="auto" means in the ops while this run trains
        return train(options, Path(run_dir), callbacks, world=world)


def read_options(path: Path) -> TrainOptions:
    """Options from a JSON file (training_options.json layout), checked as the CLI and specs check them."""
    from stylegan_core.options import OptionError
    from stylegan_core.presets import validate_options

    try:
        options = TrainOptions.from_dict(json.loads(path.read_text(encoding="utf-8")))
        validate_options(options, int(os.environ.get("WORLD_SIZE", "1")))
    except OptionError as error:
        raise ValueError(f"{path}: {error}") from None
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: cannot read training options: {error}") from None
    return options


def load_hooks(name: str) -> Callable[[TrainOptions, Path], AbstractContextManager[LaunchHooks]]:
    """The launcher's hooks factory named `module:function` (our own launch commands name it, never data)."""
    if not _HOOKS.match(name):
        raise ValueError(f"--hooks must look like package.module:function, got {name!r}")
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


@contextlib.contextmanager
def _no_hooks(options: TrainOptions, run_dir: Path) -> Iterator[LaunchHooks]:
    yield LaunchHooks()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    description = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m stylegan_core.training.worker", description=description)
    parser.add_argument("--run-dir", required=True, type=Path, help="the run directory (created if missing)")
    options_help = f"resolved options (training_options.json layout) [default: RUN_DIR/{OPTIONS_FILE}]"
    parser.add_argument("--options", type=Path, default=None, help=options_help)
    parser.add_argument("--hooks", default=None, metavar="MODULE:FUNCTION", help="a launcher's hooks (e.g. Pipes)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = read_options(args.options or args.run_dir / OPTIONS_FILE)
        hooks_factory: Any = load_hooks(args.hooks) if args.hooks else _no_hooks
    except (ValueError, ImportError, AttributeError) as error:
        print(f"stylegan worker: {error}", file=sys.stderr)
        return 1
    with AbortOnSignal() as abort, hooks_factory(options, args.run_dir) as hooks:
        callbacks = dataclasses.replace(hooks.callbacks, should_abort=lambda: abort() or hooks.callbacks.should_abort())
        try:
            result = run_training(options, args.run_dir, callbacks)
        except TrainingDivergedError as error:
            print(str(error), file=sys.stderr)
            return 3
        except (ValueError, OSError) as error:  # bad data or --resume: one line and exit 1, as every entry point
            from stylegan_core.errors import one_line

            print(f"stylegan worker: error: {one_line(error)}", file=sys.stderr)
            return 1
        hooks.on_result(result)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"kimg": result.kimg, "last_snapshot": str(result.last_snapshot), "aborted": result.aborted}))
    return 1 if result.aborted else 0


if __name__ == "__main__":
    sys.exit(main())
