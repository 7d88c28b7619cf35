"""`stylegan doctor`: a healthy machine exits 0 and names what it could not test; a broken toolchain exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylegan_core.cli import main
from stylegan_core.cli.doctor import _check_nvcc, machine_summary

REPO = Path(__file__).resolve().parents[1]


def fake_tool(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_this_machine_is_fine_and_says_what_is_untested(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = {check["name"]: check for check in report["checks"]}
    assert report["ok"] and {"torch", "nvcc", "ninja", "compiler", "ops", "fp16 cpu", "training impl"} <= set(names)
    assert names["fp16 cpu"]["status"] == "ok"  # NVIDIA's float16 path runs on this CPU
    if not torch.cuda.is_available():
        assert names["gpu checks"]["status"] == "untested" and "no CUDA GPU" in names["gpu checks"]["detail"]
        assert report["impl"] == "ref" and "impl ref" in names["training impl"]["detail"]


def test_broken_nvcc_on_path_exits_nonzero_naming_it(tmp_path: Path) -> None:
    nvcc = fake_tool(tmp_path / "cuda" / "bin", "nvcc", "echo 'nvcc: cannot load libnvvm' >&2; exit 3")
    env = {key: value for key, value in os.environ.items() if key not in ("CUDA_HOME", "CUDA_PATH")}
    env.update(PATH=f"{nvcc.parent}{os.pathsep}{env['PATH']}", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "stylegan_core.cli", "doctor", "--no-build"], env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    broken = next(line for line in lines if "nvcc:" in line)
    assert "[   error]" in broken and str(nvcc) in broken and "exit 3" in broken
    assert "fix:" in lines[lines.index(broken) + 1] and str(nvcc.parent) in lines[lines.index(broken) + 1]
    assert lines[-1] == "doctor: BROKEN: nvcc"


def test_nvcc_of_another_cuda_major_is_broken_for_a_cuda_torch(tmp_path: Path) -> None:
    nvcc = fake_tool(tmp_path, "nvcc", "echo 'Cuda compilation tools, release 12.4, V12.4.131'")
    mismatch = _check_nvcc(str(nvcc), "13.0", "warn")
    assert mismatch.status == "error" and "V12.4.131" in mismatch.detail and "13.0" in mismatch.detail
    assert "CUDA 13.x toolkit" in mismatch.fix
    assert _check_nvcc(str(nvcc), "12.8", "warn").status == "ok"
    assert _check_nvcc(str(nvcc), None, "info").status == "ok"  # a CPU torch: any working nvcc is fine
    assert _check_nvcc(None, "13.0", "warn").status == "warn"  # absent: slower training, not a broken one


def test_machine_summary_is_flat_text_for_run_metadata() -> None:
    summary = machine_summary()
    assert summary["torch"].startswith("ok: torch ") and "training impl" in summary
    assert all(isinstance(value, str) for value in summary.values())
