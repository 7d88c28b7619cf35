"""Shared helpers for the Dagster tests: tiny specs, a CPU resource, materialisation and process lookup."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import yaml

from dagster_project.demo import write_tiny_spec
from dagster_project.resources import StyleGANResource

# One real-statistics cache for every Dagster test of the session (keyed by content hash, so sharing is safe and
# the tiny shapes set's Inception features are computed once).
SHARED_CACHE = Path(tempfile.mkdtemp(prefix="stylegan-dagster-cache-"))
atexit.register(shutil.rmtree, SHARED_CACHE, ignore_errors=True)

# Trains 4 iterations of 8 images, one tick each, snapshots at ticks 0, 2 and the end (3): long enough to be
# killed after its first snapshot.
LONG_CONFIG = {
    "preset": "auto", "cbase": 256, "cmax": 32, "map": 2, "z_dim": 32, "w_dim": 32,
    "kimg": 0.032, "tick": 0.008, "snap": 2, "batch": 8, "batch_gpu": 8, "mbstd_group": 4,
    "cond": True, "fp32": True, "workers": 0,
}  # fmt: skip


def write_test_specs(folder: Path) -> Path:
    """The CI-scale shapes spec of `make demo --tiny` (ci-tiny config) plus the `long` config."""
    path = write_tiny_spec(folder)
    document = yaml.safe_load(path.read_text())
    document["configs"]["long"] = LONG_CONFIG
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def add_projection_targets(specs: Path, num_steps: int) -> Path:
    """Give the test spec two small target images (different sizes and formats) and a short projection."""
    import numpy as np
    import PIL.Image

    targets = specs / "targets"
    targets.mkdir(exist_ok=True)
    rng = np.random.RandomState(1)
    for name, size in (("a.png", (24, 20)), ("b.jpg", (16, 16))):
        PIL.Image.fromarray(rng.randint(0, 256, (*size, 3), dtype=np.uint8)).save(targets / name)
    spec_path = specs / "shapes.yaml"
    document = yaml.safe_load(spec_path.read_text())
    document["projection_targets"] = {"path": "targets", "num_steps": num_steps}
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    return targets


def write_snapshot_run(artifacts: Path, run_root_name: str = "ci-tiny-16") -> Path:
    """A run directory holding one snapshot of a tiny unconditional 16 px generator, recorded as the partition's
    current network (what a `network` materialisation leaves), so the downstream assets run without training."""
    from dagster_project.training import record_current_run
    from stylegan_core.io.snapshot import Snapshot, save_snapshot
    from stylegan_core.networks import Discriminator
    from tests.metrics_support import tiny_generator

    G = tiny_generator(c_dim=0, resolution=16)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    run_root = artifacts / "shapes" / run_root_name
    run_dir = run_root / "00000-test"
    snapshot = save_snapshot(run_dir / "snapshots" / "network-snapshot-000000.pt",
                             Snapshot(G_kwargs=G.init_kwargs, D_kwargs=D.init_kwargs, G=G.state_dict(),
                                      D=D.state_dict(), G_ema=G.state_dict()))  # fmt: skip
    record_current_run(run_root, run_dir, str(snapshot))
    return snapshot


def cpu_resource(artifacts: Path, **fields: object) -> StyleGANResource:
    return StyleGANResource(  # type: ignore[arg-type]
        artifacts_dir=str(artifacts),
        cache_dir=str(SHARED_CACHE),
        device="cpu",
        nproc_per_node="1",
        image_workers=1,
        snapshot_metrics=False,  # the `metrics` asset measures once; test_dagster_cli covers per-snapshot metrics
        **fields,
    )


def materialize(
    defs: dg.Definitions,
    keys: Sequence[str],
    partition: str | None,
    instance: dg.DagsterInstance,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialise `spec/asset` keys (and their checks) in process, with the definitions' resources."""
    assets = [*defs.assets, *defs.asset_checks]  # type: ignore[list-item]
    selection = dg.AssetSelection.assets(*[dg.AssetKey(key.split("/")) for key in keys])
    return dg.materialize(
        assets, selection=selection, partition_key=partition, resources=defs.resources, instance=instance,
        raise_on_error=raise_on_error,
    )  # fmt: skip


def materialization(result: dg.ExecuteInProcessResult, key: str) -> dg.AssetMaterialization:
    found = [
        event.event_specific_data.materialization
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.asset_key == dg.AssetKey(key.split("/"))
    ]
    assert found, f"{key} was not materialised"
    return found[-1]


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def processes_matching(*fragments: str) -> list[int]:
    """PIDs whose command line contains every fragment (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(fragment in command for fragment in fragments):
            found.append(int(entry.name))
    return found
