"""`make demo`: materialise the whole `shapes` chain with the real `dagster asset materialize` command line.

    python -m dagster_project.demo [--tiny] [--config cpu-tiny] [--resolution 16]

Four CLI runs: raw_images + dataset + real_features for one resolution (the dataset's blocking Great Expectations
check runs with them), then for `config|resolution` the jobs that `shapes_after_success` chains in the UI:
`shapes_train` (network), `shapes_evaluate` (the blocking network checks, metrics, samples) and `shapes_compare` (the
metric regression check); each starts only when the one before succeeded. It then prints where the grid, the metrics
and the UI are.

`--tiny` (or STYLEGAN_DEMO_TINY=1), what CI runs: a derived copy of `datasets_spec/shapes.yaml` written under the
artifacts folder, with 64 source images, FID/KID on 64 images and the `ci-tiny` config below, which trains for
seconds. The spec keeps its name, so it is the same `shapes` chain at a smaller scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from dagster_project import views
from dagster_project.resources import REPO_ROOT, StyleGANResource
from dagster_project.specs import DEFAULT_SPECS_DIR, SPECS_ENV
from dagster_project.training import CURRENT_RUN_FILE

SPEC_NAME = "shapes"
TINY_ENV = "STYLEGAN_DEMO_TINY"
TINY_CONFIG_NAME = "ci-tiny"
TINY_IMAGES = 64
TINY_CONFIG = {
    "preset": "auto", "cbase": 256, "cmax": 32, "map": 2, "z_dim": 32, "w_dim": 32,
    "kimg": 0.016, "tick": 0.008, "snap": 2, "batch": 8, "batch_gpu": 8, "mbstd_group": 4,
    "cond": True, "fp32": True, "workers": 0,
}  # fmt: skip
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})
# Dagster 1.13 points both commands at `dg launch` (the separate dagster-dg package) on every call; the demo's output
# shows the commands it runs, so the hint would only repeat four times.
QUIET_SUPERSEDED = ",".join(
    f"ignore:Function `{name}` is superseded" for name in ("asset_materialize_command", "job_execute_command")
)


def write_tiny_spec(folder: Path) -> Path:
    """A scaled-down shapes spec (same name, same generator, fewer images, one resolution, the ci-tiny config)."""
    document = yaml.safe_load((DEFAULT_SPECS_DIR / f"{SPEC_NAME}.yaml").read_text())
    document["source"]["generator"]["count"] = TINY_IMAGES
    document["resolutions"] = [min(document["resolutions"])]
    document["configs"] = {TINY_CONFIG_NAME: TINY_CONFIG}
    document["metrics"] = [f"fid{TINY_IMAGES}_full", f"kid{TINY_IMAGES}_full"]
    document.pop("schedule", None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{SPEC_NAME}.yaml"
    path.write_text(
        "# Written by dagster_project.demo --tiny; do not edit.\n" + yaml.safe_dump(document, sort_keys=False)
    )
    return path


def prepare_dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    return home


def materialize(selection: Sequence[str], partition: str, env: dict[str, str]) -> float:
    """One `dagster asset materialize` run (in-process executor: no per-step subprocess); returns seconds."""
    keys = ",".join(f"{SPEC_NAME}/{name}" for name in selection)
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.definitions",
        "--select", keys, "--partition", partition, "--config-json", IN_PROCESS,
    ]  # fmt: skip
    print(f"\n$ dagster asset materialize --select {keys} --partition '{partition}'", flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True)
    return time.monotonic() - start


def run_job(job: str, partition: str, env: dict[str, str]) -> float:
    """One `dagster job execute` run of a partitioned job; returns seconds."""
    tags = json.dumps({"dagster/partition": partition})
    command = [
        sys.executable, "-m", "dagster", "job", "execute", "-m", "dagster_project.definitions",
        "-j", f"{SPEC_NAME}_{job}", "--tags", tags,
    ]  # fmt: skip
    print(f"\n$ dagster job execute -j {SPEC_NAME}_{job} --tags '{tags}'", flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True)
    return time.monotonic() - start


def step_times(home: str, count: int) -> list[tuple[str, float]]:
    """(step, seconds) of the last `count` runs in the instance, oldest first (Dagster's own step timings)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = home
    with dg.DagsterInstance.get() as instance:
        runs = list(reversed(instance.get_runs(limit=count)))
        return [
            (stat.step_key, (stat.end_time or 0.0) - (stat.start_time or 0.0))
            for run in runs
            for stat in sorted(instance.get_run_step_stats(run.run_id), key=lambda s: s.start_time or 0.0)
        ]


def metric_series(run_dir: Path, names: Sequence[str]) -> list[str]:
    """One line per result: its value at each evaluated snapshot, and last/first."""
    lines = []
    for key, points in views.metric_history(run_dir, names).items():
        series = "  ".join(f"{kimg:g}:{value:.4g}" for kimg, value in points)
        ratio = f"  (last/first {points[-1][1] / points[0][1]:.2f})" if len(points) > 1 and points[0][1] else ""
        better = views.metric_direction(key)
        direction = f"  ({better} is better)" if better else ""
        lines.append(f"  {key:16s} kimg:value  {series}{ratio}{direction}")
    return lines


def report(
    stylegan: StyleGANResource, config: str, resolution: int, timings: dict[str, float], steps: list[tuple[str, float]]
) -> None:
    run_root = stylegan.run_root(SPEC_NAME, config, resolution)
    current = json.loads((run_root / CURRENT_RUN_FILE).read_text())
    run_dir, snapshot = Path(current["run_dir"]), Path(current["snapshot"])
    grids = sorted((run_dir / "samples" / snapshot.stem).glob("samples-psi*.png"))
    print("\n== shapes demo finished ==")
    for step, seconds in timings.items():
        print(f"  {step:28s} {seconds:7.1f} s")
    for step, seconds in steps:
        print(f"    {step:26s} {seconds:7.1f} s")
    print(f"  run directory   {run_dir}")
    print(f"  snapshot        {snapshot}")
    for grid in grids:
        print(f"  sample grid     {grid}  (one row per class)")
    names = [path.stem.removeprefix("metric-") for path in sorted(run_dir.glob("metric-*.jsonl"))]
    print("  metrics at each snapshot:")
    for line in metric_series(run_dir, names):
        print(line)
    print(f"  dataset         {stylegan.dataset_dir(SPEC_NAME, resolution)}")
    print("  UI              make ui, then http://127.0.0.1:3000 (asset group 'shapes': lineage, labelled grids,")
    print("                  FID/KID against kimg on `metrics`, loss curves on `network`)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=os.environ.get(TINY_ENV, "") not in ("", "0"),
                        help=f"the CI scale (also ${TINY_ENV}=1)")  # fmt: skip
    parser.add_argument("--config", default=None, help="training config (default: cpu-tiny, or ci-tiny with --tiny)")
    parser.add_argument("--resolution", type=int, default=None, help="resolution partition (default: the smallest)")
    args = parser.parse_args(argv)
    stylegan = StyleGANResource.from_env()
    env = {**os.environ, "DAGSTER_HOME": str(prepare_dagster_home()), "DAGSTER_DISABLE_TELEMETRY": "1",
           "GX_ANALYTICS_ENABLED": "false", "STYLEGAN_ARTIFACTS": str(stylegan.root),
           "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), QUIET_SUPERSEDED]))}  # fmt: skip
    spec_folder = DEFAULT_SPECS_DIR
    if args.tiny:
        spec_folder = write_tiny_spec(stylegan.root / "demo_specs").parent
        env[SPECS_ENV] = str(spec_folder)
    resolutions = yaml.safe_load((spec_folder / f"{SPEC_NAME}.yaml").read_text())["resolutions"]
    resolution = args.resolution or min(resolutions)
    config = args.config or (TINY_CONFIG_NAME if args.tiny else "cpu-tiny")
    home = env["DAGSTER_HOME"]
    print(f"shapes demo: config {config}, {resolution} px, artifacts in {stylegan.root}, DAGSTER_HOME {home}")
    timings = {
        "ingest + validate + features": materialize(["raw_images", "dataset", "real_features"], str(resolution), env),
    }
    for job, label in (("train", "train"), ("evaluate", "check + metrics + grid"), ("compare", "compare metrics")):
        timings[label] = run_job(job, f"{config}|{resolution}", env)
    report(stylegan, config, resolution, timings, step_times(home, len(timings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
