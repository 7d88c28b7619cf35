"""`stylegan spec check FILE|FOLDER ...`: load dataset specs as the Dagster code location does, one line per file.

Good files print `FILE: ok (...)`; each bad file prints one line naming the file, the YAML key and its first problem
(with "did you mean" for a misspelt key). Every file is checked once, even after a bad one, and named as given.
Exit status 0 when all are good, 1 when any is bad.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spec", help="check dataset spec files", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="spec_command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="load spec files; one line per file: ok, or its first mistake")
    check.add_argument("paths", nargs="+", type=Path, metavar="FILE", help="spec files, or folders of them")
    check.set_defaults(func=run_check)


def _expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    from stylegan_core.spec.loader import spec_files

    files, missing = [], []
    for path in paths:
        if path.is_dir():
            files += spec_files(path)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    unique = {path.resolve(): path for path in reversed(files)}  # a file named twice is one spec, not a duplicate
    return [path for path in files if unique.get(path.resolve()) is path], missing


def run_check(args: argparse.Namespace) -> int:
    from stylegan_core.spec import check_specs

    files, problems = _expand(args.paths)
    specs, errors = check_specs(files)
    as_given = {path.resolve(): path for path in files}  # the loader keeps absolute paths; echo what was typed
    for spec in specs:
        configs = ", ".join(spec.configs) or "no configs"
        resolutions = ", ".join(map(str, spec.resolutions))
        path = as_given.get(Path(spec.spec_path).resolve(), spec.spec_path)
        print(f"{path}: ok ({spec.name}: {spec.source.kind} source, resolutions {resolutions}; {configs})")
    for line in [*problems, *map(str, errors)]:
        print(line, file=sys.stderr)
    if not files and not problems:
        print("no spec files found", file=sys.stderr)
        return 1
    return 1 if problems or errors else 0
