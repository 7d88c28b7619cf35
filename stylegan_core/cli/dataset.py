"""`stylegan dataset prepare|validate|shapes`: ingestion, the Great Expectations gate and the demo source set.

Bad input (unreadable images, bad labels, a dataset that fails validation) exits with status 1 and one line naming
the file and the problem; a misused option exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from stylegan_core.cli.arguments import whole_number
from stylegan_core.data.options import (
    CHANNEL_POLICIES,
    LABEL_SOURCES,
    ON_ERROR,
    RESIZE_FILTERS,
    SHAPES_BOUNDS,
    TRANSFORMS,
    DatasetError,
    IngestOptions,
)
from stylegan_core.errors import UsageError, run_reporting
from stylegan_core.io.limits import MAX_C_DIM

# Ingestion flags that map one-to-one onto IngestOptions fields (None = not given, keep the default or the spec's).
# Bounds checked when the flags are parsed (exit 2); the library checks the same values again for API callers.
MAX_IMAGES = 1 << 31
MAX_WORKERS = 1024
_OPTION_FLAGS = ("transform", "resize_filter", "channels", "labels", "on_error", "num_classes", "max_images")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="prepare and validate datasets", description=__doc__)
    commands = parser.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    _add_prepare(commands)
    _add_validate(commands)
    _add_shapes(commands)


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    prepare = commands.add_parser(
        "prepare", help="ingest a folder or zip of images into an NVIDIA-layout dataset zip + Parquet manifest"
    )
    origin = prepare.add_mutually_exclusive_group(required=True)
    origin.add_argument("--source", type=Path, help="folder or zip of source images")
    origin.add_argument("--spec", type=Path, help="a datasets_spec/<name>.yaml (source and options from it)")
    prepare.add_argument("--dest", type=Path, required=True, help="output .zip (manifest written next to it)")
    prepare.add_argument("--resolution", type=int, required=True, help="output size N (images are N x N)")
    prepare.add_argument("--transform", choices=TRANSFORMS, default=None, help="geometry (default center-crop)")
    prepare.add_argument("--resize-filter", choices=RESIZE_FILTERS, default=None, help="default lanczos")
    prepare.add_argument("--channels", choices=CHANNEL_POLICIES, default=None, help="default auto")
    prepare.add_argument("--labels", choices=LABEL_SOURCES, default=None, help="default auto")
    prepare.add_argument(
        "--num-classes", type=whole_number(1, MAX_C_DIM), default=None, help="declared class count (label range)"
    )
    prepare.add_argument("--on-error", choices=ON_ERROR, default=None, help="fail (default) or skip bad files")
    prepare.add_argument(
        "--max-images", type=whole_number(1, MAX_IMAGES), default=None, help="use only the first N images"
    )
    prepare.add_argument(
        "--workers", type=whole_number(1, MAX_WORKERS), default=None, help="decoding processes (default: all cores)"
    )
    prepare.add_argument("--work-dir", type=Path, default=None, help="with --spec: where generated sources go")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=run_prepare)


def _add_validate(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser("validate", help="run the Great Expectations suite on a dataset or manifest")
    validate.add_argument("dataset", type=Path, help="dataset .zip or folder, or a .manifest.parquet")
    validate.add_argument("--resolution", type=int, default=None, help="expected size (default: the first image's)")
    validate.add_argument("--channels", type=int, default=None, help="expected channels (default: 1 or 3)")
    validate.add_argument("--label-dim", type=int, default=None, help="expected label count (default: inferred)")
    validate.set_defaults(func=run_validate)


def _add_shapes(commands: argparse._SubParsersAction) -> None:
    shapes = commands.add_parser("shapes", help="draw the procedural shapes source set (the demo's data)")
    shapes.add_argument("--dest", type=Path, required=True, help="output folder (class sub-folders of PNGs)")
    bounded = {name: whole_number(*bounds) for name, bounds in SHAPES_BOUNDS.items()}
    shapes.add_argument("--count", type=bounded["count"], default=None, help="number of images (default 2000)")
    shapes.add_argument("--size", type=bounded["size"], default=None, help="image size in pixels (default 128)")
    shapes.add_argument("--seed", type=bounded["seed"], default=None, help="seed (default 0)")
    shapes.set_defaults(func=run_shapes)


def run_prepare(args: argparse.Namespace) -> int:
    # This process does no linear algebra, but numpy (imported for the manifest) starts OpenBLAS's threads, which
    # spin for ~0.1 CPU-s: time taken from the ingestion workers on a small machine. Before numpy's import.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A SIGTERM (a scheduler stopping the job) cleans up as Ctrl-C does: temporary zip removed, workers stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    from stylegan_core.data.ingest import prepare_dataset, prepare_from_spec

    given = {name: getattr(args, name) for name in _OPTION_FLAGS if getattr(args, name) is not None}
    if args.spec is not None:
        from stylegan_core.spec import load_spec

        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{args.spec}: {flags} cannot be combined with --spec (the spec sets them)")
        spec = load_spec(args.spec)
        work_dir = args.work_dir or args.dest.parent
        result = prepare_from_spec(
            spec, args.resolution, args.dest, work_dir, workers=args.workers, progress=not args.quiet
        )
    else:
        try:
            options = IngestOptions(**given)
        except ValueError as error:
            raise DatasetError(str(error)) from None
        result = prepare_dataset(
            args.source, args.dest, args.resolution, options, workers=args.workers, progress=not args.quiet
        )
    labels = f", {result.label_dim} classes" if result.label_dim else ", unlabelled"
    if result.class_names:  # say where labels came from: `--labels auto` may have picked sub-folders
        labels += f" from sub-folders ({', '.join(result.class_names)})"
    print(
        f"wrote {result.zip_path}: {result.count} images {result.resolution}x{result.resolution}x{result.channels}"
        f"{labels}; manifest {result.manifest_path}; content hash {result.content_hash[:16]}"
    )
    for entry in result.skipped:
        print(f"skipped {entry.path}: {entry.reason}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_validate(args: argparse.Namespace) -> int:
    from stylegan_core.data.validate import load_manifest_for, validate_manifest

    if not args.dataset.exists():
        raise DatasetError(f"{args.dataset}: does not exist")
    manifest = load_manifest_for(args.dataset)
    resolution = args.resolution
    if resolution is None:
        resolution = int(manifest["width"].iloc[0]) if len(manifest) else 4
    report = validate_manifest(manifest, resolution, args.channels, args.label_dim)
    width = max(len(row["expectation"]) for row in report.rows)
    for row in report.rows:
        status = "ok  " if row["success"] else "FAIL"
        examples = f"  e.g. {row['examples']}" if not row["success"] and row["examples"] else ""
        print(f"{status} {row['expectation']:<{width}}  {row['details']}{examples}")
    if not report.success:
        print(f"stylegan dataset validate: {args.dataset}: {report.summary()}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: {report.summary()}")
    return 0


def run_shapes(args: argparse.Namespace) -> int:
    from stylegan_core.data.shapes import ShapesSettings, generate_shapes

    chosen = {name: getattr(args, name) for name in ("count", "size", "seed") if getattr(args, name) is not None}
    try:
        settings = ShapesSettings(**chosen)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    folder = generate_shapes(args.dest, settings, progress=True)
    print(f"wrote {settings.count} shape images to {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m stylegan_core.cli.dataset ...` (the same as `stylegan dataset ...`)."""
    parser = argparse.ArgumentParser(prog="stylegan")
    register(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["dataset", *(arg for arg in argv if arg != "--debug")])
    return run_reporting("stylegan dataset", lambda: args.func(args), debug="--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
