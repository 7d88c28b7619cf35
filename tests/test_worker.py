"""The one training worker: environment switches are recorded options, bad option files are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_support import replace_loop, tiny_options, write_tiny_dataset

from stylegan_core.metrics.cache import default_cache_dir
from stylegan_core.ops import dispatch
from stylegan_core.options import resolve_environment
from stylegan_core.training import TrainCallbacks
from stylegan_core.training.report import SnapshotGrid
from stylegan_core.training.worker import read_options, run_training

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


def test_environment_switches_are_fallbacks_written_into_the_options(dataset) -> None:
    options = tiny_options(dataset)
    env = {"STYLEGAN_OPS_IMPL": "REF", "STYLEGAN_DIST_TIMEOUT_S": "30", "STYLEGAN_CACHE_DIR": "/c"}
    resolved = resolve_environment(options, env)
    expected = ("ref", 30.0, os.path.join("/c", "gan-metrics"))  # the variable names the root of all caches
    assert (resolved.loop.ops_impl, resolved.loop.dist_timeout_s, resolved.metrics.cache_dir) == expected
    chosen = tiny_options(dataset, ops_impl="cuda", dist_timeout=60)
    assert resolve_environment(chosen, env).loop.ops_impl == "cuda"  # the option wins
    assert resolve_environment(chosen, env).loop.dist_timeout_s == 60
    with pytest.raises(ValueError, match="STYLEGAN_OPS_IMPL: expected one of auto, ref, cuda"):
        resolve_environment(options, {"STYLEGAN_OPS_IMPL": "fast"})


def test_training_metrics_read_the_pipelines_feature_cache(dataset, tmp_path, monkeypatch) -> None:
    """STYLEGAN_CACHE_DIR is the cache root: a training run's metrics must find the file `real_features` wrote
    (regression: the worker used the root itself and recomputed every real feature in the demo)."""
    from dagster_project.resources import StyleGANResource

    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path / "root"))
    resolved = resolve_environment(tiny_options(dataset), {"STYLEGAN_CACHE_DIR": str(tmp_path / "root")})
    assert Path(resolved.metrics.cache_dir) == StyleGANResource.from_env().features_cache_dir()
    assert Path(resolved.metrics.cache_dir) == default_cache_dir() == tmp_path / "root" / "gan-metrics"


def test_training_options_json_records_the_ops_implementation(dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    monkeypatch.setenv("STYLEGAN_OPS_IMPL", "ref")
    seen = []
    callbacks = TrainCallbacks(on_tick=lambda tick: seen.append(dispatch.env_impl()))
    run_training(tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none"), tmp_path, callbacks)
    recorded = json.loads((tmp_path / "training_options.json").read_text())
    assert recorded["loop"]["ops_impl"] == "ref"
    monkeypatch.delenv("STYLEGAN_OPS_IMPL")
    chosen = tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none", ops_impl="ref")
    run_training(chosen, tmp_path / "b", callbacks)
    assert seen and set(seen) == {"ref"}  # the option is what impl="auto" means while the run trains
    assert dispatch.env_impl() == "auto"  # and is not left behind for later callers in this process


def test_option_files_are_checked_like_the_cli(dataset, tmp_path) -> None:
    plain = tiny_options(dataset).to_dict()
    plain["optimizer"]["g_lr"] = float("nan")
    path = tmp_path / "options.json"
    path.write_text(json.dumps(plain))
    with pytest.raises(ValueError, match=rf"^{path}: glr: must be a finite number"):
        read_options(path)
    plain = replace_loop(tiny_options(dataset), batch=0).to_dict()
    path.write_text(json.dumps(plain))
    with pytest.raises(ValueError, match="batch: must be in"):
        read_options(path)


def test_worker_process_refuses_bad_options_in_one_line(tmp_path) -> None:
    (tmp_path / "requested_options.json").write_text('{"loop": {"batchsize": 3}}')
    result = subprocess.run([sys.executable, "-m", "stylegan_core.training.worker", "--run-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "batchsize" in result.stderr and "Traceback" not in result.stderr
