"""Training on Ray against a real local Ray instance: equal to torchrun, surviving a SIGKILLed worker, clear errors.

One small Ray instance (2 CPUs, ~100 MB object store, no dashboard) serves the whole module; every test that trains
pays for a Ray Train worker group start (tens of seconds on 2 shared cores), hence the `slow` marks.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from training_support import TINY_OVERRIDES, write_tiny_dataset

from stylegan_core.io.snapshot import find_latest_snapshot, load_snapshot
from stylegan_core.presets import resolve_options
from stylegan_core.training import ray_launcher
from stylegan_core.training.ray_launcher import RayLaunchConfig, RayLaunchError, train_on_ray

ray = pytest.importorskip("ray", reason="install the test extra: pip install -e .[test]")

# Global batch 8 as two workers x 4; 12 iterations in 7 ticks (tick 0 is one iteration), a snapshot every tick: enough
# ticks for a kill to land mid-run. pl_weight 0: pl_mean is a per-rank running mean, which legitimately depends on
# how ranks split the batch.
RUN = {"cond": True, "aug": "noaug", "batch": 8, "batch_gpu": 4, "kimg": 0.096, "tick": 0.016, "snap": 1,
       "pl_weight": 0, "grid": "2x2"}  # fmt: skip
NVIDIA_LAYOUT = ("training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes_init.png")


@pytest.fixture(scope="module")
def ray_instance():
    # A short private temp dir: Ray's unix sockets must fit in 107 characters, and no other Ray on the machine is
    # picked up by accident.
    temp_dir = tempfile.mkdtemp(prefix="sgray", dir="/tmp")
    # Two Ray Train helpers this single-node CPU instance does not need (pre-emption watching, metrics export): fewer
    # actors to start on 2 shared cores. Set before ray.init so the raylet and every worker inherit them.
    tuned = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}
    saved = {name: os.environ.get(name) for name in tuned}
    os.environ.update(tuned)
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, _temp_dir=temp_dir,
             configure_logging=False, log_to_driver=False)  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    data = write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")
    return resolve_options("auto", 16, 2, {**TINY_OVERRIDES, "data": str(data), **RUN}, source="ray test options")


@pytest.fixture(scope="module")
def uninterrupted(ray_instance, options, tmp_path_factory):
    """The reference: a 2-worker Ray run that nobody disturbs."""
    run_dir = tmp_path_factory.mktemp("ray") / "run"
    result = train_on_ray(options, run_dir, RayLaunchConfig(num_workers=2))
    return run_dir, result


def _torchrun_rank(rank: int, world_size: int, port: int, options: dict, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)  # as Ray's workers (OMP_NUM_THREADS=1 for a 1-CPU worker)
    from stylegan_core.config import TrainOptions
    from stylegan_core.training.worker import run_training

    run_training(TrainOptions.from_dict(options), Path(run_dir))


@pytest.mark.slow
def test_two_ray_workers_match_two_torchrun_processes(uninterrupted, options, tmp_path):
    from test_training_distributed import _free_port

    ray_dir, result = uninterrupted
    assert result.world_size == 2 and result.result["kimg"] == pytest.approx(0.096)
    assert result.job_id and result.address
    for name in NVIDIA_LAYOUT:
        assert (ray_dir / name).is_file(), name
    assert len(list(ray_dir.glob("fakes0*.png"))) == 7 and len(list((ray_dir / "snapshots").glob("*.pt"))) == 7
    assert not list(ray_dir.glob(".storage-probe-*")) and not (ray_dir / ray_launcher.ABORT_FILE).exists()

    torchrun_dir = tmp_path / "torchrun"
    mp.spawn(_torchrun_rank, args=(2, _free_port(), options.to_dict(), str(torchrun_dir)), nprocs=2, join=True)
    a = load_snapshot(find_latest_snapshot(torchrun_dir)).to_dict()
    b = load_snapshot(Path(result.result["last_snapshot"])).to_dict()
    assert a["progress"] == b["progress"] and b["world_size"] == 2
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            # Same process group kind (gloo), same split: only float rounding may differ.
            scale = tensor.abs().max().item()
            assert (b[key][name] - tensor).abs().max().item() <= 1e-6 * scale + 1e-6, f"{key}.{name}"


def _ray_workers() -> list[int]:
    """PIDs of the Ray Train workers started under this test process (Ray sets their process title)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::RayTrainWorker") and _descends_from_us(int(entry)):
            found.append(int(entry))
    return sorted(found)


def _descends_from_us(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


class KillOneWorker(threading.Thread):
    """SIGKILL one Ray worker as soon as the run directory holds a snapshot newer than those present at start."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.killed = run_dir, None
        self.before = set((run_dir / "snapshots").glob("*.pt")) if (run_dir / "snapshots").is_dir() else set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            if set((self.run_dir / "snapshots").glob("*.pt")) - self.before:
                workers = _ray_workers()
                if len(workers) == 2:
                    os.kill(workers[-1], signal.SIGKILL)
                    self.killed = (workers[-1], find_latest_snapshot(self.run_dir))
                    return


def _kill_during(run_dir: Path, launch):
    killer = KillOneWorker(run_dir)
    killer.start()
    try:
        return launch(), killer
    except BaseException:
        killer.stop.set()
        raise


@pytest.mark.slow
def test_killed_worker_fails_then_resumes_bit_identical(uninterrupted, options, tmp_path):
    run_dir = tmp_path / "run"
    # max_failures=0: the kill ends the run with one sentence, and the snapshots written before it stay.
    with pytest.raises(RayLaunchError) as caught:
        _kill_during(run_dir, lambda: train_on_ray(options, run_dir, RayLaunchConfig(num_workers=2)))
    message = str(caught.value)
    assert "max_failures=0" in message and "last good snapshot" in message and "\n" not in message
    kept = find_latest_snapshot(run_dir)
    assert kept is not None and str(kept) in message and kept.name != "network-snapshot-000000.096.pt"
    load_snapshot(kept)  # whole and loadable

    # max_failures=1: the same kill now makes Ray restart the group, which resumes from the latest snapshot.
    result, killer = _kill_during(
        run_dir, lambda: train_on_ray(options, run_dir, RayLaunchConfig(num_workers=2, max_failures=1))
    )
    assert killer.killed is not None, "the worker was never killed: the run ended before a new snapshot appeared"
    assert result.resumed_from is not None and Path(result.resumed_from) != kept  # the restarted group resumed
    reference = load_snapshot(Path(uninterrupted[1].result["last_snapshot"])).to_dict()
    final = load_snapshot(Path(result.result["last_snapshot"])).to_dict()
    assert final["progress"] == reference["progress"]
    for key in ("G", "D", "G_ema"):
        for name, tensor in reference[key].items():
            assert torch.equal(final[key][name], tensor), f"{key}.{name} differs from the uninterrupted run"
    for key in ("G_opt", "D_opt"):
        for index, state in reference[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(final[key]["state"][index][name]), torch.as_tensor(value))
    log = (run_dir / "log.txt").read_text()
    assert log.count("Continuing the training in") == 2  # once after the failed launch, once after Ray's restart


@pytest.mark.slow
def test_run_directory_the_workers_cannot_see_is_refused(ray_instance, options, tmp_path, monkeypatch):
    # Simulates a node-local disk: the driver's probe file lands where the workers' run directory is not.
    elsewhere = tmp_path / "driver-disk"
    elsewhere.mkdir()
    real_probe_file = ray_launcher.probe_file
    monkeypatch.setattr(ray_launcher, "probe_file", lambda _dir, nonce, rank: real_probe_file(elsewhere, nonce, rank))
    run_dir = tmp_path / "run"
    with pytest.raises(RayLaunchError) as caught:
        train_on_ray(options, run_dir, RayLaunchConfig(num_workers=2, max_failures=2))
    message = str(caught.value)
    assert message.startswith(f"run directory {run_dir} is not shared storage: worker rank 0")
    assert "cannot see the probe files of driver" in message and "\n" not in message
    assert not (run_dir / "snapshots").exists() and not list(run_dir.glob(".storage-probe-*"))


def test_unreachable_address_is_one_sentence(options, tmp_path):
    with socket_that_refuses() as address:
        for form in (address, f"ray://{address}"):
            with pytest.raises(RayLaunchError) as caught:
                train_on_ray(options, tmp_path / "run", RayLaunchConfig(address=form, num_workers=2))
            assert str(caught.value).startswith(f"cannot reach the Ray cluster at {form!r}")
    with pytest.raises(RayLaunchError, match="is not 'auto', 'host:port' or 'ray://host:port'"):
        ray_launcher.check_address("nowhere")
    assert not (tmp_path / "run").exists()


class socket_that_refuses:  # noqa: N801
    """A local port nobody listens on (bound, then closed)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return f"127.0.0.1:{sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        pass


def test_launcher_arguments_and_config_validation():
    import argparse

    parser = argparse.ArgumentParser()
    ray_launcher.add_launcher_arguments(parser)
    assert ray_launcher.launch_config_from_args(parser.parse_args([])) is None
    args = parser.parse_args(["--launcher=ray", "--ray-address=auto", "--num-workers=4", "--max-failures=2",
                              "--use-gpu"])  # fmt: skip
    assert ray_launcher.launch_config_from_args(args) == RayLaunchConfig(address="auto", num_workers=4, use_gpu=True,
                                                                         max_failures=2)  # fmt: skip
    for bad in (["--num-workers=0"], ["--max-failures=-1"], ["--launcher=slurm"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    with pytest.raises(ValueError, match="--use-gpu must be a boolean"):
        ray_launcher.launch_config_from_args(parser.parse_args(["--launcher=ray", "--use-gpu=maybe"]))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--num-workers", "0", "must be in [1, 65536], got 0"),
        ("--num-workers", "65537", "must be in [1, 65536], got 65537"),
        ("--num-workers", "2.5", "expected an integer, got '2.5'"),
        ("--max-failures", "-1", "must be in [0, 10000], got -1"),
        ("--max-failures", str(10**30), f"must be in [0, 10000], got {10**30}"),
        ("--max-failures", "many", "expected an integer, got 'many'"),
    ],
)
def test_launcher_counts_are_bounded_and_name_the_flag(flag, value, message, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="stylegan train")
    ray_launcher.add_launcher_arguments(parser)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args([f"{flag}={value}"])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line == f"stylegan train: error: argument {flag}: {message}"


def test_launcher_count_bounds_are_inclusive_and_shared_with_the_config():
    import argparse

    parser = argparse.ArgumentParser()
    ray_launcher.add_launcher_arguments(parser)
    most = parser.parse_args(["--launcher=ray", "--num-workers=65536", "--max-failures=10000"])
    assert ray_launcher.launch_config_from_args(most) == RayLaunchConfig(num_workers=65536, max_failures=10_000)
    # Dagster's Ray driver builds the config from its own arguments: the same bounds hold there.
    with pytest.raises(ValueError, match=r"num_workers must be in \[1, 65536\], got 65537"):
        RayLaunchConfig(num_workers=ray_launcher.MAX_WORKERS + 1)
    with pytest.raises(ValueError, match=r"max_failures must be in \[0, 10000\], got 10001"):
        RayLaunchConfig(max_failures=ray_launcher.MAX_FAILURES + 1)


def test_cli_ray_launcher_validates_geometry_then_reports_unreachable_cluster(tmp_path, capsys):
    from training_support import write_tiny_dataset as tiny

    from stylegan_core.cli import main

    data = tiny(tmp_path / "tiny.zip")
    common = [f"--outdir={tmp_path / 'runs'}", f"--data={data}", "--cbase=256", "--cmax=32", "--map=2",
              "--metrics=none", "--workers=0", "--fp32=1", "--launcher=ray", "--num-workers=3"]  # fmt: skip
    # Batch geometry is checked against the Ray world size, before any cluster is contacted.
    assert main(["train", *common, "--batch=8", "--ray-address=127.0.0.1:1"]) == 2
    assert "batch" in capsys.readouterr().err
    with socket_that_refuses() as address:
        code = main(["train", *common, "--batch=6", "--batch-gpu=2", "--mbstd-group=2", f"--ray-address={address}"])
    assert code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stylegan train: cannot reach the Ray cluster at {address!r}") and "\n" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())



@pytest.mark.slow
def test_dagster_cli_materialises_network_on_ray_then_metrics_and_samples(ray_instance, tmp_path):
    import dagster as dg
    from dagster_support import SHARED_CACHE, cpu_resource, materialize, write_test_specs

    from dagster_project import demo
    from dagster_project.definitions import build_definitions

    home, artifacts = tmp_path / "dagster_home", tmp_path / "artifacts"
    specs = write_test_specs(tmp_path / "specs")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STYLEGAN_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home), "STYLEGAN_ARTIFACTS": str(artifacts), "STYLEGAN_CACHE_DIR": str(SHARED_CACHE),
        "STYLEGAN_SPECS": str(specs), "STYLEGAN_IMAGE_WORKERS": "1", "STYLEGAN_DEVICE": "cpu",
        "STYLEGAN_LAUNCHER": "ray", "STYLEGAN_RAY_ADDRESS": ray_instance, "STYLEGAN_RAY_NUM_WORKERS": "1",
        "STYLEGAN_RAY_MAX_FAILURES": "1", "DAGSTER_DISABLE_TELEMETRY": "1", "GX_ANALYTICS_ENABLED": "false",
    }  # fmt: skip
    home.mkdir()
    shutil.copyfile(demo.REPO_ROOT / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    # The dataset side in process (not under test here; saves one CLI start), then the training side through the CLI.
    with dg.instance_for_test() as scratch:
        defs = build_definitions(specs, cpu_resource(artifacts))
        materialize(defs, ["shapes/raw_images", "shapes/dataset", "shapes/real_features"], "16", scratch)
    demo.materialize(["network", "metrics", "samples"], "ci-tiny|16", env)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        network = instance.get_latest_materialization_event(dg.AssetKey(["shapes", "network"]))
        metadata = network.asset_materialization.metadata
        assert metadata["launcher"].value == "ray" and metadata["ray_address"].value == ray_instance
        assert metadata["ray_job_id"].value and metadata["world_size"].value == 1
        assert metadata["kimg"].value == pytest.approx(0.016) and Path(metadata["snapshot"].value).is_file()
        for name in ("metrics", "samples"):
            assert instance.get_latest_materialization_event(dg.AssetKey(["shapes", name])) is not None, name
        logs = [record.user_message for record in instance.all_logs(network.run_id)]
        assert any(message.startswith(f"Ray job {metadata['ray_job_id'].value} on cluster") for message in logs)
        assert any(message.startswith("tick 1 ") and "kimg" in message and "augment" in message for message in logs)
    run_dir = Path(metadata["run_dir"].value)
    for name in NVIDIA_LAYOUT:
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("metric-*.jsonl")) and list(run_dir.glob("samples/*/samples-psi*.png"))


@pytest.mark.slow
def test_interrupted_ray_driver_stops_its_workers_after_a_final_snapshot(ray_instance, options, tmp_path):
    """What cancelling the Dagster run does: SIGINT to the driver (the Pipes client's first step)."""
    import dataclasses
    import json
    import subprocess
    import sys

    from stylegan_core.training.worker import OPTIONS_FILE

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    endless = dataclasses.replace(options, loop=dataclasses.replace(options.loop, total_kimg=100.0))
    (run_dir / OPTIONS_FILE).write_text(json.dumps(endless.to_dict()))
    command = [sys.executable, "-m", "dagster_project.ray_driver", f"--run-dir={run_dir}",
               f"--ray-address={ray_instance}", "--num-workers=1"]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while find_latest_snapshot(run_dir) is None and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 1, output[-3000:]  # aborted: the materialisation is reported, the step fails
    assert "Abort requested" in (run_dir / "log.txt").read_text()
    final = load_snapshot(find_latest_snapshot(run_dir))
    assert 0 < final.progress.cur_nimg < 100_000 and not (run_dir / ray_launcher.ABORT_FILE).exists()
    deadline = time.monotonic() + 60
    while _ray_workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_workers() == []


def test_resource_launcher_settings_from_env_reach_the_driver_arguments(monkeypatch):
    from dagster_project.ray_driver import parse_args
    from dagster_project.resources import StyleGANResource

    for name, value in {"STYLEGAN_LAUNCHER": "ray", "STYLEGAN_RAY_ADDRESS": "10.0.0.1:6379",
                        "STYLEGAN_RAY_NUM_WORKERS": "4", "STYLEGAN_RAY_MAX_FAILURES": "2"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    resource = StyleGANResource.from_env()
    assert resource.launcher_name() == "ray" and resource.world_size() == 4
    args, config = parse_args(["--run-dir=r", *resource.ray_arguments()])
    assert config == RayLaunchConfig(address="10.0.0.1:6379", num_workers=4, max_failures=2)
    _, config = parse_args(["--run-dir=r", "--use-gpu=true", '--resources-per-worker={"CPU": 4, "GPU": 1}'])
    assert config.use_gpu is True and config.resources_per_worker == {"CPU": 4.0, "GPU": 1.0}
    with pytest.raises(ValueError, match="launcher must be one of torchrun, ray, got 'slurm'"):
        StyleGANResource(launcher="slurm").world_size()
    with pytest.raises(ValueError, match="num_workers must be at least 1"):
        StyleGANResource(launcher="ray", num_workers=0).world_size()
    assert StyleGANResource(nproc_per_node="2").world_size() == 2  # torchrun stays the default
