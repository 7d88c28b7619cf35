"""Image geometry from file headers, without decoding: what a dataset checks for every image when it opens.

PNG (what `stylegan dataset prepare` and NVIDIA's dataset_tool write) is read from its IHDR chunk, the first 33
bytes; other formats through Pillow's lazy open, which parses the header only. The channel count follows how
`decode_dataset_image` would decode the image (L -> 1, RGB -> 3, RGBA -> 4); modes it refuses are refused here.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import PIL.Image

from stylegan_core.data.options import DatasetError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 33
# (bit depth, colour type) -> channels as decoded by Pillow into L/RGB/RGBA; 16-bit, palette and grey+alpha are not.
_PNG_CHANNELS = {(8, 0): 1, (4, 0): 1, (2, 0): 1, (8, 2): 3, (8, 6): 4}
_PNG_MODES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
_PIL_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """[C, H, W], as the dataset returns images."""
        return (self.channels, self.height, self.width)


def png_header(head: bytes, where: str) -> ImageHeader:
    """Geometry from a PNG's first 33 bytes (signature + IHDR)."""
    if len(head) < HEADER_BYTES or head[12:16] != b"IHDR" or struct.unpack(">I", head[8:12])[0] != 13:
        raise DatasetError(f"{where}: truncated or corrupt PNG header")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = _PNG_CHANNELS.get((depth, colour))
    if channels is None:
        mode = f"{depth}-bit {_PNG_MODES.get(colour, f'colour type {colour}')}"
        raise DatasetError(f"{where}: PNG is {mode}, not 8-bit grey, RGB or RGBA; convert with `stylegan dataset "
                           "prepare`")  # fmt: skip
    return ImageHeader(width, height, channels)


def image_header(file: io.BufferedIOBase, where: str) -> ImageHeader:
    """Geometry of the image in ``file`` (positioned at its start) from its header only."""
    head = file.read(HEADER_BYTES)
    if head.startswith(PNG_SIGNATURE):
        return png_header(head, where)
    try:
        file.seek(0)
        with PIL.Image.open(file) as image:  # lazy: parses the header, decodes nothing
            mode, (width, height) = image.mode, image.size
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise DatasetError(f"{where}: not a readable image ({' '.join(str(error).split())[:200]})") from None
    if mode not in _PIL_CHANNELS:
        raise DatasetError(f"{where}: image mode {mode} is not L, RGB or RGBA; convert with `stylegan dataset prepare`")
    return ImageHeader(width, height, _PIL_CHANNELS[mode])
