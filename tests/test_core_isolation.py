"""stylegan_core is a plain PyTorch library: importing any of its modules never imports Dagster."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import stylegan_core

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    prefix = stylegan_core.__name__ + "."
    return [stylegan_core.__name__] + [m.name for m in pkgutil.walk_packages(stylegan_core.__path__, prefix)]


def test_no_core_module_imports_dagster() -> None:
    modules = _core_modules()
    assert len(modules) > 5
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'dagster' or m.startswith(('dagster.', 'dagster_')))\n"
        "print(leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stylegan_core imported Dagster: {result.stdout}\n{result.stderr}"
