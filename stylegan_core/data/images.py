"""Decoding, mode conversion, NVIDIA's crop/resize geometry and PNG encoding of one image.

The conversion rules are stated in `stylegan_core.data.options`. Geometry reproduces NVIDIA's dataset_tool exactly
(the RGB center-crop output equals its reference zip pixel for pixel), except that grey and RGBA images keep their
own mode instead of being forced through Pillow's 'RGB' (which crashes NVIDIA's tool on grey input).
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import PIL.Image
import PIL.ImageOps

from stylegan_core.data.options import BadFileError, ImageDropped, IngestOptions

# numpy is imported only where alpha is composited or 16-bit grey is scaled: an 8-bit RGB source never needs it, and
# the ingestion pool's server and parent start faster without it.
if TYPE_CHECKING:
    import numpy as np

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_MODE_FOR_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
_FILTERS = {"lanczos": PIL.Image.Resampling.LANCZOS, "box": PIL.Image.Resampling.BOX}
# Errors Pillow raises for damaged files (truncated streams, bad chunks, bad CRCs, broken headers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, before any pixel is decoded."""

    width: int
    height: int
    mode: str
    format: str

    @property
    def is_grey(self) -> bool:
        return self.mode in GREY_MODES


@dataclass(frozen=True)
class ProcessedImage:
    """One output image: its PNG bytes and what went into it."""

    png: bytes
    sha256: str
    width: int
    height: int
    channels: int
    source_width: int
    source_height: int
    source_mode: str


def read_header(data: bytes | BinaryIO, name: str, max_pixels: int) -> ImageHeader:
    """Identify an image from its header only (a stream is read only that far); refuse non-images and bombs."""
    with _pillow_errors(name):
        with PIL.Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            header = ImageHeader(image.width, image.height, image.mode, image.format or "")
    _check_pixels(header.width, header.height, name, max_pixels)
    return header


def decode(data: bytes, name: str, max_pixels: int) -> PIL.Image.Image:
    """Fully decode an image with its EXIF orientation applied."""
    with _pillow_errors(name):
        image = PIL.Image.open(io.BytesIO(data))
        _check_pixels(image.width, image.height, name, max_pixels)
        image.load()
        # Phones store portrait photos as landscape pixels plus this tag; NVIDIA's tool ignores it (sideways faces).
        # In place: the usual image without the tag is then not copied.
        PIL.ImageOps.exif_transpose(image, in_place=True)
        return image


def process_image(data: bytes, name: str, resolution: int, channels: int, options: IngestOptions) -> ProcessedImage:
    """Source file bytes → the dataset's PNG: decode, convert, crop/resize, encode.

    The image stays a Pillow image throughout (numpy only where alpha is composited or 16-bit grey is scaled):
    NVIDIA's tool goes Pillow → array → Pillow around every step, which copies the pixels without changing them.
    """
    image = decode(data, name, options.max_pixels)
    source_size, source_mode = image.size, image.mode
    image = to_channels(to_standard_mode(image, name), channels, options.background)
    image = apply_geometry(image, resolution, options, name)
    png = encode_png(image)
    return ProcessedImage(
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        width=image.width,
        height=image.height,
        channels=len(image.getbands()),
        source_width=source_size[0],
        source_height=source_size[1],
        source_mode=source_mode,
    )


def to_standard_mode(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Any Pillow mode → L, LA, RGB or RGBA (rule 2 in `stylegan_core.data.options`)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return image.convert("RGB")
    if mode == "I" or mode.startswith("I;16"):
        # 16-bit grey (PNG, TIFF): scale to 8 bits with rounding rather than Pillow's clipping to 255.
        import numpy as np

        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return PIL.Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    raise BadFileError(name, f"unsupported image mode {mode!r} (floating-point and exotic modes are not converted)")


def to_channels(image: PIL.Image.Image, channels: int, background: tuple[int, int, int]) -> PIL.Image.Image:
    """L/LA/RGB/RGBA image → an L, RGB or RGBA image (1, 3 or 4 channels), compositing alpha unless C = 4.

    An image already in the wanted mode is returned as it is (Pillow's convert to the same mode copies).
    """
    wanted = _MODE_FOR_CHANNELS.get(channels)
    if wanted is None:
        raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
    if image.mode == wanted:
        return image
    if channels == 4:
        return image.convert("RGBA")
    if channels == 3:
        if image.mode in ("LA", "RGBA"):
            return PIL.Image.fromarray(_composite(image.convert("RGBA"), background), "RGB")
        return image.convert("RGB")
    if image.mode == "LA":
        return PIL.Image.fromarray(_composite(image, (_luma(background),)), "L")
    if image.mode == "RGBA":
        return PIL.Image.fromarray(_composite(image, background), "RGB").convert("L")
    return image.convert("L")


def _composite(image: PIL.Image.Image, background: tuple[int, ...]) -> np.ndarray:
    """out = (src * a + bg * (255 - a) + 127) // 255 in integers, so it is the same on every machine."""
    import numpy as np

    colour_and_alpha = np.asarray(image)
    colour = colour_and_alpha[..., :-1].astype(np.int32)
    alpha = colour_and_alpha[..., -1:].astype(np.int32)
    bg = np.asarray(background, dtype=np.int32)
    out = (colour * alpha + bg * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def _luma(rgb: tuple[int, int, int]) -> int:
    return int(PIL.Image.new("RGB", (1, 1), tuple(rgb)).convert("L").getpixel((0, 0)))


def apply_geometry(image: PIL.Image.Image, resolution: int, options: IngestOptions, name: str) -> PIL.Image.Image:
    """NVIDIA's dataset_tool transforms, for any channel count."""
    resample = _FILTERS[options.resize_filter]
    match options.transform:
        case "none":
            return _resize(image, resolution, resolution, resample)
        case "center-crop":
            return _center_crop(image, resolution, resample)
        case "center-crop-wide":
            return _center_crop_wide(image, resolution, options.wide_aspect, resample, name)
    raise AssertionError(options.transform)


def _resize(image: PIL.Image.Image, width: int, height: int, resample: PIL.Image.Resampling) -> PIL.Image.Image:
    # NVIDIA resizes even at the final size in its crops; Pillow copies then, which leaves the pixels as they are.
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample)


def _crop(image: PIL.Image.Image, box: tuple[int, int, int, int]) -> PIL.Image.Image:
    # Cropped before resizing, never through resize's `box`: that filters in pixels beyond the box's edges.
    return image if box == (0, 0, *image.size) else image.crop(box)


def _center_crop(image: PIL.Image.Image, resolution: int, resample: PIL.Image.Resampling) -> PIL.Image.Image:
    width, height = image.size
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return _resize(_crop(image, (left, top, left + side, top + side)), resolution, resolution, resample)


def _center_crop_wide(
    image: PIL.Image.Image, resolution: int, aspect: tuple[int, int], resample: PIL.Image.Resampling, name: str
) -> PIL.Image.Image:
    # NVIDIA's rule, quirk included: the number of rows kept is the height the image would have at the output
    # width (round(out_w * h / w)), taken from the unscaled source; images narrower than the output are dropped.
    out_width, out_height = resolution, round(resolution * aspect[1] / aspect[0])
    width, height = image.size
    rows = round(out_width * height / width)  # half to even, as NVIDIA's np.round
    if width < out_width or rows < out_height:
        raise ImageDropped(name, f"{width}x{height} is too small or too wide for center-crop-wide at {resolution}")
    band = _crop(image, (0, (height - rows) // 2, width, (height + rows) // 2))
    band = _resize(band, out_width, out_height, resample)
    canvas = PIL.Image.new(image.mode, (out_width, out_width), 0)  # black (and transparent for RGBA)
    canvas.paste(band, (0, (out_width - out_height) // 2))
    return canvas


def encode_png(image: PIL.Image.Image) -> bytes:
    """Uncompressed PNG exactly as NVIDIA's tool writes it (compress_level=0, L/RGB/RGBA).

    Clears `image.info` first: Pillow would carry an ICC profile or a transparency colour from the source into
    the PNG, which NVIDIA's array round trip drops.
    """
    image.info = {}
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=0, optimize=False)
    return buffer.getvalue()


def _check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadFileError(
            name,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(possible decompression bomb; raise max_pixels if the image is genuine)",
        )


class _pillow_errors:
    """Turn Pillow's exceptions into DatasetError naming the file; Pillow's bomb warning is ours to decide."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> None:
        self._warnings.__enter__()
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> bool:
        self._warnings.__exit__(kind, error, traceback)
        if error is None or isinstance(error, BadFileError):
            return False
        if isinstance(error, PIL.Image.DecompressionBombError):
            raise BadFileError(self.name, f"refused as a decompression bomb ({error})") from None
        if isinstance(error, PIL.UnidentifiedImageError):
            raise BadFileError(self.name, "not an image file Pillow can read") from None
        if isinstance(error, _DECODE_ERRORS):
            raise BadFileError(self.name, f"corrupt or truncated image ({type(error).__name__}: {error})") from None
        return False
