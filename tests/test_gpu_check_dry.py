"""`benchmarks/gpu_check.sh --dry-run`: the steps that need no GPU run, without Dagster or GX, recording nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_and_leaves_results_alone(tmp_path: Path) -> None:
    results = REPO / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "GPU_CHECK_DRY": "1"}
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert results.read_bytes() == before  # a dry run records only under $OUT
    section = (tmp_path / "results_section.md").read_text()
    assert "DRY RUN" in section and (tmp_path / "RESULTS.dry.md").read_text() == section
    assert "doctor: nothing a training run needs is broken" in (tmp_path / "doctor.log").read_text()
    assert "test_fp16_parity_on_cuda" in (tmp_path / "net_tests.log").read_text()  # the GPU selection resolves
    row = next(line for line in section.splitlines() if line.startswith("| ref |"))
    assert float(row.split("|")[2]) > 0  # train_bench ran and its JSON was read
