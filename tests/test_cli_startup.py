"""`stylegan` imports only the chosen sub-command: preparing a dataset never loads torch (nor pandas)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

from data_support import gradient, save

from stylegan_core.cli import COMMANDS

_REPO = Path(__file__).resolve().parents[1]


def _run_and_list_modules(argv: list[str], cwd: Path) -> tuple[int, set[str]]:
    """Run `stylegan <argv>` in a fresh interpreter; its exit code and the top-level modules it imported."""
    script = (
        "import sys\n"
        "from stylegan_core.cli import main\n"
        f"code = main({argv!r})\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.returncode, set(done.stdout.split("\n")[-2].split())


def test_dataset_prepare_does_not_import_torch_or_pandas(tmp_path: Path) -> None:
    for index in range(3):
        save(gradient(24, 20, seed=index), tmp_path / "src" / f"{index}.png")
    argv = ["dataset", "prepare", "--source", "src", "--dest", "out/d.zip", "--resolution", "16", "--quiet"]
    code, modules = _run_and_list_modules(argv, tmp_path)
    assert code == 0 and (tmp_path / "out" / "d.zip").is_file()
    assert "PIL" in modules and "stylegan_core" in modules  # the listing is real
    assert "torch" not in modules
    # The manifest is written with pyarrow alone: pandas costs ~0.2 s of CPU the ingestion workers would feel.
    assert "pyarrow" in modules and "pandas" not in modules
    assert (tmp_path / "out" / "d.manifest.parquet").is_file()


def test_help_lists_every_command_as_its_module_describes_it() -> None:
    for name, module, summary in COMMANDS:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(module).register(subparsers)
        helps = {action.dest: action.help for action in subparsers._choices_actions}
        assert helps == {name: summary}


def test_every_sub_command_module_is_in_the_table() -> None:
    # A new `stylegan_core/cli/<name>.py` with `register` must also get a row in COMMANDS, or it never runs.
    import pkgutil

    import stylegan_core.cli

    listed = {module for _, module, _ in COMMANDS}
    for info in pkgutil.iter_modules(stylegan_core.cli.__path__, "stylegan_core.cli."):
        if info.name.endswith("__main__"):
            continue
        if hasattr(importlib.import_module(info.name), "register"):
            assert info.name in listed, f"{info.name} has register() but no row in stylegan_core.cli.COMMANDS"
