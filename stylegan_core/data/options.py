"""Ingestion options (each default defined here once), the data error type and small shared helpers.

Conversion rules, in the order they are applied to every source image (docs/datasets.md repeats them for users):

1. Decode with Pillow; apply the EXIF orientation tag (NVIDIA's tool ignores it).
2. Bring the mode to L, RGB or RGBA: `1` → L; `P` → RGBA when the palette has transparency, else RGB; `PA` → RGBA;
   `LA` stays grey with alpha; `CMYK`, `YCbCr`, `LAB`, `HSV`, `RGBX` → RGB (Pillow's conversion, no ICC);
   16-bit and 32-bit integer grey (`I;16*`, `I`) → L by rounding v * 255 / 65535 after clipping to [0, 65535];
   float (`F`) images are rejected.
3. Alpha: composited on `background` (default white) with out = (src * a + bg * (255 - a) + 127) // 255, unless the
   channel policy is `rgba`, which keeps it (images without alpha get a = 255).
4. Channel policy: `auto` → 1 channel when every source image is grey (L, LA, 1, 16-bit grey), else 3 (so a folder
   mixing grey and colour becomes RGB, where NVIDIA's tool stops); `rgb` → 3; `grey` → 1 with Pillow's ITU-R 601-2
   luma; `rgba` → 4.
5. Geometry exactly as NVIDIA's dataset_tool: `center-crop`, `center-crop-wide` (letterbox) or `none` (plain resize
   to resolution x resolution, which stretches non-square images as NVIDIA's tool does with --width/--height).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from stylegan_core.errors import InputError
from stylegan_core.io.limits import MAX_C_DIM

Transform = Literal["center-crop", "center-crop-wide", "none"]
ResizeFilter = Literal["lanczos", "box"]
ChannelPolicy = Literal["auto", "rgb", "grey", "rgba"]
LabelSource = Literal["auto", "dataset.json", "subfolders", "none"]
OnError = Literal["fail", "skip"]

TRANSFORMS: tuple[Transform, ...] = ("center-crop", "center-crop-wide", "none")
RESIZE_FILTERS: tuple[ResizeFilter, ...] = ("lanczos", "box")
CHANNEL_POLICIES: tuple[ChannelPolicy, ...] = ("auto", "rgb", "grey", "rgba")
LABEL_SOURCES: tuple[LabelSource, ...] = ("auto", "dataset.json", "subfolders", "none")
ON_ERROR: tuple[OnError, ...] = ("fail", "skip")

# Pillow's own default bomb threshold (Image.MAX_IMAGE_PIXELS); ours is checked from the header, before decoding.
DEFAULT_MAX_PIXELS = 89_478_485


# Bounds of the generated shapes source (count, size, seed), checked where they enter: spec load, `dataset shapes`
# flags and ShapesSettings. Far above the demo's 500 images at 128 px.
SHAPES_BOUNDS = {"count": (1, 1_000_000), "size": (16, 4096), "seed": (0, 2**32 - 1)}


class DatasetError(InputError):
    """Bad dataset input or output. The message names the file and the problem."""


class BadFileError(DatasetError):
    """One source file (or label entry) is unusable; `on_error: skip` leaves it out and records `reason`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class ImageDropped(BadFileError):
    """The transform leaves this image out by design (center-crop-wide on an image too small), as NVIDIA's tool does."""


@dataclass(frozen=True, kw_only=True)
class IngestOptions:
    """How source images become an NVIDIA-layout dataset (everything except the source and the resolution)."""

    transform: Transform = "center-crop"
    """Geometry: crop the centred square, crop to `wide_aspect` and letterbox, or resize only (stretching)."""
    resize_filter: ResizeFilter = "lanczos"
    """Pillow resampling filter; NVIDIA's default is lanczos, `box` reproduces the paper's FFHQ-256 FIDs."""
    channels: ChannelPolicy = "auto"
    """Output channels: auto (grey only if every source is grey), rgb, grey, or rgba (keeps alpha)."""
    background: tuple[int, int, int] = (255, 255, 255)
    """Colour transparent pixels are composited on (unless channels is rgba)."""
    labels: LabelSource = "auto"
    """Where class labels come from; auto = the source's dataset.json if it has one, else unlabelled."""
    num_classes: int | None = None
    """Declared number of classes: labels must lie in [0, num_classes) and label_dim equals it."""
    wide_aspect: tuple[int, int] = (4, 3)
    """Width:height of the crop for center-crop-wide (e.g. 4:3 gives 512x384 inside a 512x512 canvas)."""
    on_error: OnError = "fail"
    """fail: the first bad file stops ingestion with no output; skip: bad files are left out and reported."""
    max_images: int | None = None
    """Use only the first N source images (in sorted order), as NVIDIA's --max-images."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels than this are refused as possible decompression bombs."""

    def __post_init__(self) -> None:
        _check_choice("transform", self.transform, TRANSFORMS)
        _check_choice("resize_filter", self.resize_filter, RESIZE_FILTERS)
        _check_choice("channels", self.channels, CHANNEL_POLICIES)
        _check_choice("labels", self.labels, LABEL_SOURCES)
        _check_choice("on_error", self.on_error, ON_ERROR)
        if len(self.background) != 3 or any(not 0 <= int(v) <= 255 for v in self.background):
            raise ValueError(f"background must be three integers in [0, 255], got {self.background!r}")
        # The bound is the one a training run accepts (io.limits.MAX_C_DIM), so no dataset is prepared that cannot be
        # trained on; without num_classes, labels must lie in [0, MAX_C_DIM) (larger ones are taken for typos).
        if self.num_classes is not None and not 1 <= self.num_classes <= MAX_C_DIM:
            raise ValueError(f"num_classes must be in [1, {MAX_C_DIM}], got {self.num_classes}")
        if len(self.wide_aspect) != 2 or min(self.wide_aspect) < 1:
            raise ValueError(f"wide_aspect must be two positive integers, got {self.wide_aspect!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {self.max_images}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    def output_channels(self, all_sources_grey: bool) -> int:
        """Channels of the output images under this policy."""
        match self.channels:
            case "rgb":
                return 3
            case "grey":
                return 1
            case "rgba":
                return 4
            case "auto":
                return 1 if all_sources_grey else 3
        raise AssertionError(self.channels)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


@functools.cache  # asked once per file name; building it walks Pillow's ~70 extensions
def image_extensions(all_plugins: bool = True) -> frozenset[str]:
    """Lower-case extensions Pillow knows (with the dot), as NVIDIA's tool and reader use to pick image files.

    `all_plugins=False`: only those of Pillow's common formats (JPEG, PNG, BMP, GIF, PPM), a subset known without
    importing its ~60 other plugins (~45 ms before the first image can go out).
    """
    import PIL.Image

    if all_plugins:
        PIL.Image.init()
    else:
        PIL.Image.preinit()
    return frozenset(ext.lower() for ext in PIL.Image.EXTENSION)


def is_image_name(name: str) -> bool:
    dot = name.rfind(".")
    if dot < 0:
        return False
    extension = name[dot:].lower()
    return extension in image_extensions(all_plugins=False) or extension in image_extensions()


_HIDDEN = re.compile(r"(^|/)(\.[^/]*|__MACOSX)(/|$)")


def is_hidden(relative_path: str) -> bool:
    """Dot-files and macOS `__MACOSX` folders (resource forks that look like images but are not)."""
    return bool(_HIDDEN.search(relative_path))


def path_sort_key(relative_path: str) -> tuple[str, ...]:
    """Component-wise order, as Python sorts pathlib paths (NVIDIA numbers the images in this order)."""
    return tuple(relative_path.split("/"))
