"""The one resource every asset uses: where artifacts live, which device runs in-process work, how torchrun launches.

Each field can be set from an environment variable (see `StyleGANResource.from_env`), so CI, tests and a GPU machine
change behaviour without editing code; the UI's launchpad can override any field per run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACTS_DIR = REPO_ROOT / "artifacts"

# Environment variable → resource field. Defaults live on the fields below, once.
ENV_FIELDS = {
    "STYLEGAN_ARTIFACTS": "artifacts_dir",
    "STYLEGAN_CACHE_DIR": "cache_dir",
    "STYLEGAN_DEVICE": "device",
    "STYLEGAN_IMAGE_WORKERS": "image_workers",
    "STYLEGAN_NPROC_PER_NODE": "nproc_per_node",
    "STYLEGAN_NNODES": "nnodes",
    "STYLEGAN_RDZV_ENDPOINT": "rdzv_endpoint",
    "STYLEGAN_TERMINATION_TIMEOUT_S": "termination_timeout_s",
    "STYLEGAN_LAUNCHER": "launcher",
    "STYLEGAN_RAY_ADDRESS": "ray_address",
    "STYLEGAN_RAY_NUM_WORKERS": "num_workers",
    "STYLEGAN_RAY_MAX_FAILURES": "max_failures",
    "STYLEGAN_SNAPSHOT_METRICS": "snapshot_metrics",
    "STYLEGAN_VGG16": "vgg16",
}
LAUNCHERS = ("torchrun", "ray")


class StyleGANResource(dg.ConfigurableResource):
    """Artifact layout and launch settings shared by all asset groups."""

    artifacts_dir: str = str(DEFAULT_ARTIFACTS_DIR)
    """Root of every file the pipeline writes: datasets, feature caches, run directories, sample grids."""
    cache_dir: str = ""
    """Root of caches shared between runs (real-image statistics under gan-metrics/); empty = the `stylegan` CLI's
    rule, $STYLEGAN_CACHE_DIR else ~/.cache/stylegan_core, so the CLI and the pipeline share one cache."""
    device: str = "auto"
    """Device for in-process work (features, metrics, samples, checks): auto = cuda when available, else cpu."""
    image_workers: int = 0
    """Processes decoding and encoding images during inventory and ingestion: 0 = one per CPU core."""
    nproc_per_node: str = "auto"
    """Training processes on this machine: auto = one per visible GPU, or 1 without a GPU; or an integer."""
    nnodes: int = 1
    """Machines taking part in each training run. Other machines run the command logged by the network asset."""
    rdzv_endpoint: str = ""
    """host:port of this (rank-0) machine for multi-machine training; empty = standalone on one machine."""
    termination_timeout_s: float = 60.0
    """On cancellation: seconds between SIGINT to the training process group and SIGKILL."""
    launcher: str = "torchrun"
    """torchrun: processes on this machine (and nnodes-1 others started by hand); ray: Ray Train workers on a Ray
    cluster, restarted from the latest snapshot when one is lost (docs/scaling.md)."""
    ray_address: str = ""
    """launcher=ray: '' = a private local Ray instance; 'auto'; 'host:port' (GCS) or 'ray://host:port' (Ray Client)."""
    num_workers: int = 1
    """launcher=ray: training workers (one per GPU with use_gpu); the world size batch geometry is checked against."""
    use_gpu: str = "auto"
    """launcher=ray: auto = when the cluster has GPUs; true or false."""
    resources_per_worker: dict[str, float] = {}
    """launcher=ray: Ray resources each worker reserves, e.g. {CPU: 8, GPU: 1}; empty = Ray Train's default."""
    max_failures: int = 0
    """launcher=ray: worker-group restarts allowed (each resumes from the latest snapshot) before the run fails."""
    snapshot_metrics: bool = True
    """Evaluate the spec's metrics at every training snapshot, as NVIDIA's train.py (the FID-against-kimg curve);
    false = only the `metrics` asset measures, on the final snapshot."""
    vgg16: str = ""
    """NVIDIA's VGG16 TorchScript (vgg16.pt) for the `projections` asset and the PR/PPL metrics (also handed to the
    training workers); empty = none configured: those fail with one sentence saying where to get it."""

    @classmethod
    def from_env(cls) -> StyleGANResource:
        """Build the resource from STYLEGAN_* environment variables, falling back to the field defaults."""
        values: dict[str, object] = {}
        for variable, field_name in ENV_FIELDS.items():
            raw = os.environ.get(variable)
            if raw:
                values[field_name] = raw
        return cls(**values)

    # ---- artifact layout ------------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return Path(os.path.expandvars(self.artifacts_dir)).expanduser().resolve()

    def dataset_dir(self, spec_name: str, resolution: int) -> Path:
        """Where the NVIDIA-layout zip and the manifest of one resolution are written."""
        return self.root / spec_name / "datasets" / str(resolution)

    def cache_root(self) -> Path:
        if self.cache_dir:
            return Path(os.path.expandvars(self.cache_dir)).expanduser().resolve()
        from stylegan_core.metrics.cache import default_cache_dir

        return default_cache_dir().parent.resolve()  # one rule for CLI and pipeline (docs/metrics.md)

    def features_cache_dir(self) -> Path:
        """Real-image statistics, keyed by dataset content hash and detector hash (never by path or spec)."""
        return self.cache_root() / "gan-metrics"

    def run_root(self, spec_name: str, config: str, resolution: int) -> Path:
        """Parent of all run directories of one training partition; each changed dataset or config adds one."""
        return self.root / spec_name / f"{config}-{resolution}"

    # ---- devices and launch ---------------------------------------------------------------------------------------

    def ingest_workers(self) -> int | None:
        return self.image_workers or None

    def torch_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():  # else torch's bare AssertionError
            raise ValueError(f"stylegan resource device {self.device!r}: no CUDA here (torch {torch.__version__}); "
                             "set STYLEGAN_DEVICE=cpu or auto")  # fmt: skip
        return self.device

    def processes_per_node(self) -> int:
        if self.nproc_per_node == "auto":
            import torch

            return max(torch.cuda.device_count(), 1)
        if not re.fullmatch(r"[1-9][0-9]*", self.nproc_per_node.strip()):
            raise ValueError(f"nproc_per_node must be 'auto' or a positive integer, got {self.nproc_per_node!r}")
        return int(self.nproc_per_node)

    def world_size(self) -> int:
        if self.launcher_name() == "ray":
            if self.num_workers < 1:
                raise ValueError(f"num_workers must be at least 1 with launcher ray, got {self.num_workers}")
            return self.num_workers
        return self.processes_per_node() * self.nnodes

    def launcher_name(self) -> str:
        name = self.launcher.strip().lower()
        if name not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        return name

    def ray_arguments(self) -> list[str]:
        """Arguments of `python -m dagster_project.ray_driver` for this resource's Ray settings (validated there)."""
        import json

        return [
            f"--ray-address={self.ray_address}", f"--num-workers={self.num_workers}",
            f"--max-failures={self.max_failures}", f"--use-gpu={self.use_gpu}",
            f"--resources-per-worker={json.dumps(dict(self.resources_per_worker))}",
        ]  # fmt: skip

    def torchrun_args(self, node_rank: int = 0) -> list[str]:
        """Arguments for `python -m torch.distributed.run`; this machine is node 0, so it holds global rank 0."""
        args = [f"--nproc-per-node={self.processes_per_node()}"]
        if self.nnodes == 1:
            return [*args, "--standalone"]
        if not self.rdzv_endpoint:
            raise ValueError(
                f"nnodes={self.nnodes} needs rdzv_endpoint (host:port of this machine, reachable from the others); "
                "set STYLEGAN_RDZV_ENDPOINT or the resource's rdzv_endpoint"
            )
        # Static rendezvous: node ranks are fixed, so the Dagster machine is node 0 and owns global rank 0 (Pipes).
        return [*args, f"--nnodes={self.nnodes}", f"--node-rank={node_rank}", f"--rdzv-endpoint={self.rdzv_endpoint}"]
