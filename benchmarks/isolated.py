"""Run a module (`-m name`) or a script with Dagster and Great Expectations made unimportable.

`gpu_check.sh` runs every Python step through this, so its dry mode proves the GPU acceptance run needs neither (a GPU
machine has torch, numpy, scipy, pillow, pyyaml, pandas, pyarrow, tqdm, pytest, ninja and nvcc, nothing more).
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = ("dagster", "dagster_pipes", "great_expectations")


class BlockOrchestration(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} imported by a GPU-check step, which must not need it", name=name)
        return None


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: isolated.py (-m MODULE | SCRIPT) [ARGS...]")
    sys.meta_path.insert(0, BlockOrchestration())
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
