"""The projector's target image: read as untrusted, then NVIDIA's preparation (centre crop to a square, LANCZOS).

NVIDIA's projector.py converts to RGB, crops the centred square of side min(width, height) and resizes it to the
network's resolution with LANCZOS. We do the same, converting to grey ('L') instead for grey networks. The file is
bounded before it is decoded: its size on disk, and its pixel count read from the header.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from stylegan_core.data.options import DEFAULT_MAX_PIXELS
from stylegan_core.errors import InputError

MAX_TARGET_BYTES = 256 << 20
"""A target photograph; a 16k x 16k PNG is far below this."""


def load_target_image(path: str | os.PathLike[str], resolution: int, channels: int) -> torch.Tensor:
    """uint8 [channels, resolution, resolution] from the image at `path` (channels 1 or 3), or InputError."""
    path = Path(path)
    if channels not in (1, 3):
        raise InputError(f"the projector needs a grey or RGB network (VGG16 sees RGB), not {channels} channels")
    if not path.is_file():
        raise InputError(f"{path}: target image does not exist")
    size = path.stat().st_size
    if size > MAX_TARGET_BYTES:
        raise InputError(f"{path}: {size} bytes, over the {MAX_TARGET_BYTES}-byte limit for a target image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as image:
                width, height = image.size
                if width * height > DEFAULT_MAX_PIXELS:
                    raise InputError(
                        f"{path}: {width}x{height} pixels, over the limit of {DEFAULT_MAX_PIXELS} for a target image"
                    )
                image = image.convert("L" if channels == 1 else "RGB")
    except (PIL.UnidentifiedImageError, PIL.Image.DecompressionBombError):
        raise InputError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: corrupt or truncated image ({type(error).__name__})") from None
    return prepare_target(image, resolution)


def prepare_target(image: PIL.Image.Image, resolution: int) -> torch.Tensor:
    """NVIDIA's crop and resize of a decoded 'L' or 'RGB' image -> uint8 [C, resolution, resolution]."""
    width, height = image.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    image = image.crop(box).resize((resolution, resolution), PIL.Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())
