"""NVIDIA's VGG16 TorchScript detector (``vgg16.pt``): LPIPS distances for the projector and PPL, features for PR.

NVIDIA's file takes float images [N, 3, H, W] in [0, 255] and has the signature
``forward(img, resize_images=True, return_lpips=False, ...)`` (PR also passes ``return_features=True``):
``return_lpips=True`` gives per-image LPIPS feature vectors [N, D] whose squared difference, summed, is the LPIPS
distance between two images; ``resize_images=False`` skips its own resize to 224x224.

The file cannot be downloaded by this library (these machines are offline, and NVIDIA's loader would run a pickle).
Where it comes from: an explicit path (argument, ``--vgg16``) or the environment variable ``STYLEGAN_VGG16``;
otherwise ``DetectorNotFoundError`` says in one sentence where to get it. The file is bounded before loading
(size on disk and the uncompressed size its zip directory declares) and probed with one small forward pass.

NVIDIA does not publish a checksum of vgg16.pt and we found none we could trust, so no sha256 is built in: the
loader records the file's sha256 and size (``VGG16.sha256``, ``VGG16.num_bytes``) and verifies it against
``expected_sha256`` or ``$STYLEGAN_VGG16_SHA256`` when one is given (pin your copy there).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from stylegan_core.errors import InputError
from stylegan_core.metric_names import NVIDIA_METRICS_URL, VGG16_FILE, VGG16_PATH_ENV
from stylegan_core.metrics.inception import DetectorNotFoundError, load_torchscript

VGG16_URL = f"{NVIDIA_METRICS_URL}/vgg16.pt"
VGG16_SHA256_ENV = "STYLEGAN_VGG16_SHA256"
REQUIRED_ARGUMENTS = ("resize_images", "return_lpips")

__all__ = [
    "VGG16",
    "VGG16_PATH_ENV",
    "VGG16_SHA256_ENV",
    "VGG16_URL",
    "DetectorNotFoundError",
    "load_vgg16",
    "locate_vgg16",
]


class VGG16(torch.nn.Module):
    """The loaded TorchScript plus its provenance. Inputs: float (or uint8) images [N, 1 or 3, H, W] in [0, 255].

    Grey images are repeated to 3 channels first (as NVIDIA's PPL does; NVIDIA's projector only takes RGB).
    """

    def __init__(self, network: torch.jit.ScriptModule, source: Path, sha256: str, num_bytes: int) -> None:
        super().__init__()
        self.network = network
        self.source = source
        self.sha256 = sha256
        self.num_bytes = num_bytes

    def lpips(self, images: torch.Tensor, resize_images: bool = False) -> torch.Tensor:
        """LPIPS feature vectors [N, D]: ``(lpips(a) - lpips(b)).square().sum(1)`` is the LPIPS distance."""
        return self.network(_rgb(images), resize_images=resize_images, return_lpips=True)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """NVIDIA's PR features (``return_features=True``; the network resizes to 224x224 itself)."""
        return self.network(_rgb(images), return_features=True)

    def forward(self, images: torch.Tensor, resize_images: bool = False) -> torch.Tensor:
        return self.lpips(images, resize_images=resize_images)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"VGG16: expected images [N, 1 or 3, H, W] in [0, 255], got shape {list(images.shape)}")
    images = images.to(torch.float32)
    return images.repeat([1, 3, 1, 1]) if images.shape[1] == 1 else images


def locate_vgg16(path: str | os.PathLike[str] | None = None) -> Path:
    """`path`, else $STYLEGAN_VGG16; DetectorNotFoundError (one sentence: where to get it, how to set it) if neither."""
    configured = path if path is not None else os.environ.get(VGG16_PATH_ENV) or None
    if configured is None:
        raise DetectorNotFoundError(
            f"no VGG16 weights (needed for LPIPS, PR and PPL): download NVIDIA's vgg16.pt from {VGG16_URL} "
            f"and point {VGG16_PATH_ENV} (or --vgg16) at it"
        )
    source = Path(configured).expanduser()
    if not source.is_file():
        raise DetectorNotFoundError(
            f"VGG16 weights {source} do not exist: download NVIDIA's vgg16.pt from {VGG16_URL} "
            f"and point {VGG16_PATH_ENV} (or --vgg16) at it"
        )
    return source


_loaded: dict[tuple[str, int, int, str], VGG16] = {}


def load_vgg16(
    path: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    *,
    expected_sha256: str | None = None,
) -> VGG16:
    """Load (once per process, file and device) the VGG16 detector from `path` or $STYLEGAN_VGG16.

    Raises DetectorNotFoundError (absent), LimitError (too large), InputError (not a VGG16 TorchScript, or a
    sha256 other than `expected_sha256` / $STYLEGAN_VGG16_SHA256); every message names the file.
    """
    source = locate_vgg16(path)
    expected = expected_sha256 or os.environ.get(VGG16_SHA256_ENV) or None
    device = torch.device(device)
    stat = source.stat()
    key = (str(source.resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _loaded:
        _loaded[key] = _load_uncached(source, expected, device)
    elif expected is not None and _loaded[key].sha256 != expected.lower():
        _check_sha256(source, _loaded[key].sha256, expected)
    return _loaded[key]


def _load_uncached(source: Path, expected_sha256: str | None, device: torch.device) -> VGG16:
    verify = None if expected_sha256 is None else functools.partial(_check_sha256, source, expected=expected_sha256)
    loaded = load_torchscript(source, device, VGG16_FILE, verify)  # bounded by io.limits.MAX_DETECTOR_BYTES
    network = loaded.network
    _check_signature(network, source)
    # Frozen: a detector is never trained, and weights that require grad would tie every output to one graph.
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    detector = VGG16(network.eval(), source, loaded.sha256, loaded.num_bytes)
    _check_output(detector, device)
    return detector


def _check_sha256(source: Path, sha256: str, expected: str) -> None:
    if sha256 != expected.strip().lower():
        raise InputError(
            f"{source}: sha256 is {sha256}, expected {expected.strip().lower()} ({VGG16_SHA256_ENV}); the file is "
            f"damaged or not the VGG16 weights you pinned"
        )


def _check_signature(network: torch.jit.ScriptModule, source: Path) -> None:
    try:
        arguments = [argument.name for argument in network.forward.schema.arguments][1:]  # drop `self`
    except AttributeError:
        raise InputError(f"{source}: TorchScript module has no forward method") from None
    missing = [name for name in REQUIRED_ARGUMENTS if name not in arguments]
    if missing:
        raise InputError(
            f"{source}: forward({', '.join(arguments)}) lacks {', '.join(missing)}; expected NVIDIA's vgg16.pt "
            "(forward(img, resize_images, return_lpips, ...))"
        )


def _check_output(detector: VGG16, device: torch.device) -> None:
    # One small forward pass, so that a wrong file fails here with its name rather than deep inside a projection.
    try:
        with torch.inference_mode():
            probe = detector.lpips(torch.full([1, 3, 32, 32], 128.0, device=device))
    except RuntimeError as error:
        raise InputError(f"{detector.source}: LPIPS forward pass failed ({error.__class__.__name__})") from None
    if probe.ndim != 2 or probe.shape[0] != 1 or not bool(torch.isfinite(probe).all()):
        raise InputError(f"{detector.source}: LPIPS output has shape {list(probe.shape)}, expected finite [1, D]")
