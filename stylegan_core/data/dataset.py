"""The training-time reader of NVIDIA-layout datasets (a zip or folder of PNGs plus `dataset.json`).

Behaviour follows NVIDIA's `ImageFolderDataset` exactly (file order, one-hot labels with label_dim = max + 1, the
`max_size` subset drawn with RandomState(random_seed) before x-flip doubling), with clear errors instead of asserts.
Unlike NVIDIA's, opening a dataset checks *every* image's size and channels (from its header, no decoding), every
member's declared size, and every label (integers in [0, MAX_C_DIM) or equal-length finite vectors, one per image),
so a bad image or label is one line naming the file before any network is built, not a failure at tick 8.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_core.data.headers import ImageHeader, image_header
from stylegan_core.data.options import DatasetError, is_hidden, is_image_name
from stylegan_core.io.limits import MAX_C_DIM, MAX_RESOLUTION

LABELS_FILE = "dataset.json"
_HASH_VERSION = b"stylegan-dataset-v1\n"
# Largest member a dataset may hold: a 1024 px RGBA image is 4 MiB raw (PNG adds little even uncompressible);
# dataset.json for a million images is well under it. A larger declared size is a zip bomb or not a dataset.
MAX_MEMBER_BYTES = 64 << 20
# RuntimeError: zipfile's answer to encrypted members.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError, RuntimeError)
# Datasets up to this many raw pixel bytes are decoded completely when training opens them (a PNG whose compressed
# data is corrupt passes every header and CRC check); larger ones would take minutes, so they are checked lazily.
FULL_DECODE_BYTES = 1 << 28


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_entries(entries: Iterable[tuple[str, str]]) -> str:
    """Content hash from (entry name, sha256 of its bytes) pairs: order-free, path-free, timestamp-free."""
    digest = hashlib.sha256(_HASH_VERSION)
    for name, entry_hash in sorted(entries):
        digest.update(f"{name}\0{entry_hash}\n".encode())
    return digest.hexdigest()


class ArchiveFiles:
    """Read-only view of a dataset zip or folder. Pickles without its zip handle; each process opens its own."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "folder"
            names = [
                os.path.relpath(os.path.join(root, name), self.path).replace(os.sep, "/")
                for root, _dirs, files in os.walk(self.path)
                for name in files
            ]
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self.kind = "zip"
            names = [name for name in self._members() if not name.endswith("/")]
        elif not self.path.exists():
            raise DatasetError(f"{self.path}: dataset does not exist")
        else:
            raise DatasetError(f"{self.path}: a dataset must be a folder or a .zip file")
        self.names = frozenset(name for name in names if not is_hidden(name))
        # Plain string order, as NVIDIA's reader sorts (raw indices and subsets depend on it).
        self.image_names = sorted(name for name in self.names if is_image_name(name))

    def read(self, name: str) -> bytes:
        if self.kind == "folder":
            return (self.path / name).read_bytes()
        try:
            return self._zip().read(name)  # checks the member's CRC
        except _ZIP_ERRORS as error:
            raise DatasetError(f"{self.path}/{name}: corrupt zip member ({_one_line(error)})") from None

    def header(self, name: str) -> ImageHeader:
        """The image's size and channels from its header (no decoding)."""
        where = f"{self.path}/{name}"
        try:
            if self.kind == "folder":
                with open(self.path / name, "rb") as file:
                    return image_header(file, where)
            with self._zip().open(name) as file:
                return image_header(file, where)
        except _ZIP_ERRORS as error:
            raise DatasetError(f"{where}: corrupt image or zip member ({_one_line(error)})") from None

    def _members(self) -> list[str]:
        try:
            infos = self._zip().infolist()
        except _ZIP_ERRORS as error:
            raise DatasetError(f"{self.path}: corrupt zip archive ({_one_line(error)})") from None
        oversized = [info for info in infos if info.file_size > MAX_MEMBER_BYTES]
        if oversized:
            raise DatasetError(f"{self.path}/{oversized[0].filename}: declares {oversized[0].file_size} bytes, more "
                               f"than any dataset image (limit {MAX_MEMBER_BYTES}; a zip bomb?)")  # fmt: skip
        return [info.filename for info in infos]

    def _zip(self) -> zipfile.ZipFile:
        handle = self.__dict__.get("_handle")
        if handle is None or self.__dict__.get("_handle_pid") != os.getpid():
            try:
                handle = zipfile.ZipFile(self.path)
            except _ZIP_ERRORS as error:
                raise DatasetError(f"{self.path}: corrupt zip archive ({_one_line(error)})") from None
            self.__dict__.update(_handle=handle, _handle_pid=os.getpid())
        return handle

    def close(self) -> None:
        handle = self.__dict__.pop("_handle", None)
        if handle is not None and self.__dict__.pop("_handle_pid", None) == os.getpid():
            handle.close()

    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_handle", "_handle_pid")}

    def labels_json(self) -> bytes | None:
        return self.read(LABELS_FILE) if LABELS_FILE in self.names else None

    def content_hash(self) -> str:
        hashed = list(self.image_names)
        if LABELS_FILE in self.names:
            hashed.append(LABELS_FILE)
        return hash_entries((name, sha256_hex(self.read(name))) for name in hashed)


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 over the image entries and dataset.json of a dataset zip or folder (not its path or zip timestamps)."""
    files = ArchiveFiles(path)
    try:
        return files.content_hash()
    finally:
        files.close()


def decode_dataset_image(data: bytes, name: str) -> np.ndarray:
    """PNG/JPEG bytes → uint8 [C, H, W] as NVIDIA's reader returns it (grey gets a channel axis)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            array = np.array(image)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise DatasetError(f"{name}: cannot decode image ({_one_line(error)})") from None
    if mode not in ("L", "RGB", "RGBA"):
        # NVIDIA would hand palette indices or 16-bit values to the network; ingestion converts these properly.
        raise DatasetError(f"{name}: image mode {mode} is not L, RGB or RGBA; convert with `stylegan dataset prepare`")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array.transpose(2, 0, 1)


def parse_labels(data: bytes, names: list[str], where: str) -> np.ndarray | None:
    """dataset.json → int64 [N] class indices or float32 [N, D] vectors, in `names` order; None if labels are null.

    Every entry must be ``[file, label]``; labels must all be integers in [0, MAX_C_DIM) or all equal-length lists
    of finite numbers (at most MAX_C_DIM long). Anything else is a DatasetError naming the entry.
    """
    try:
        document = json.loads(data)
        entries = document["labels"] if isinstance(document, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError) as error:
        raise DatasetError(f"{where}: expected {{'labels': [[file, label], ...]}} ({_one_line(error)})") from None
    if entries is None:
        if isinstance(document, dict):
            return None
        raise DatasetError(f"{where}: expected {{'labels': [[file, label], ...]}}, found a {type(document).__name__}")
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: 'labels' is a {type(entries).__name__}, expected a list of [file, label] pairs")
    table: dict[str, object] = {}
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f"{where}: labels entry {index} is {_describe(entry)}, expected [file name, label]")
        table[entry[0].replace("\\", "/")] = entry[1]
    missing = [name for name in names if name not in table]
    if missing:
        raise DatasetError(f"{where}: no label for {missing[0]} ({len(missing)} image(s) unlabelled)")
    values = [table[name] for name in names]
    if all(type(value) is int for value in values):
        return _class_labels(values, names, where)
    return _vector_labels(values, names, where)


def _class_labels(values: list[int], names: list[str], where: str) -> np.ndarray:
    for name, value in zip(names, values, strict=True):
        if not 0 <= value < MAX_C_DIM:
            raise DatasetError(f"{where}: label of {name} is {str(value)[:30]}; class labels must be integers in "
                               f"[0, {MAX_C_DIM})")  # fmt: skip
    return np.array(values, dtype=np.int64)


def _vector_labels(values: list[object], names: list[str], where: str) -> np.ndarray:
    first = values[0] if values else None
    width = len(first) if isinstance(first, list) else -1
    for name, value in zip(names, values, strict=True):
        if not (isinstance(value, list) and len(value) == width and 0 < width <= MAX_C_DIM and all(
                type(item) in (int, float) and math.isfinite(item) for item in value)):  # fmt: skip
            raise DatasetError(f"{where}: label of {name} is {_describe(value)}; labels must all be integers in [0, "
                               f"{MAX_C_DIM}) or all lists of {max(width, 1)} finite numbers")  # fmt: skip
    return np.array(values, dtype=np.float32)


def _describe(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, str, list, dict, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def _geometry(shape: tuple[int, ...]) -> str:
    return f"{shape[2]}x{shape[1]} with {shape[0]} channel(s)"


class ImageDataset:
    """NVIDIA-layout dataset: `ds[i] -> (uint8 [C, H, W], float32 [label_dim])`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
    ) -> None:
        self._files = ArchiveFiles(path)
        self._path = self._files.path
        self._name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        if not self._files.image_names:
            raise DatasetError(f"{self._path}: no image files found")
        first = self._load_raw_image(0)
        self._raw_shape = (len(self._files.image_names), *first.shape)
        if resolution is not None and first.shape[1:] != (resolution, resolution):
            raise DatasetError(
                f"{self._path}: images are {first.shape[2]}x{first.shape[1]}, not {resolution}x{resolution}"
            )
        self._check_images()
        self._raw_labels = self._load_raw_labels() if use_labels else None
        if self._raw_labels is None:
            self._raw_labels = np.zeros((self._raw_shape[0], 0), dtype=np.float32)
        if self._raw_labels.dtype == np.int64:
            self._label_shape: tuple[int, ...] = (int(self._raw_labels.max()) + 1,)
        else:
            self._label_shape = tuple(self._raw_labels.shape[1:])
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])
        self._content_hash: str | None = None

    def _check_images(self) -> None:
        """Every image has the first one's size and channels (headers only), at most MAX_RESOLUTION px."""
        expected = tuple(self._raw_shape[1:])
        if max(expected[1:]) > MAX_RESOLUTION:
            raise DatasetError(f"{self._path}: images are {expected[2]}x{expected[1]}, larger than the {MAX_RESOLUTION}"
                               " px networks support")  # fmt: skip
        for name in self._files.image_names[1:]:
            found = self._files.header(name).shape
            if found != expected:
                first = self._files.image_names[0]
                raise DatasetError(f"{self._path}/{name}: image is {_geometry(found)}, but the dataset's images are "
                                   f"{_geometry(expected)} (as the first, {first})")  # fmt: skip

    def verify_images(self, max_raw_bytes: int = FULL_DECODE_BYTES) -> bool:
        """Decode every image once (DatasetError naming the first bad one) if the dataset's raw pixels fit in
        ``max_raw_bytes``; return whether it did."""
        if int(np.prod(self._raw_shape, dtype=np.int64)) > max_raw_bytes:
            return False
        for raw_index in range(self._raw_shape[0]):
            image = self._load_raw_image(raw_index)
            if image.shape != self.image_shape:
                name = self._files.image_names[raw_index]
                raise DatasetError(f"{self._path}/{name}: decodes to {list(image.shape)}, its header said "
                                   f"{list(self.image_shape)}")  # fmt: skip
        return True

    def _load_raw_image(self, raw_index: int) -> np.ndarray:
        name = self._files.image_names[raw_index]
        return decode_dataset_image(self._files.read(name), f"{self._path}/{name}")

    def _load_raw_labels(self) -> np.ndarray | None:
        data = self._files.labels_json()
        if data is None:
            return None
        return parse_labels(data, self._files.image_names, f"{self._path}/{LABELS_FILE}")

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raw_index = int(self._raw_idx[index])
        image = self._load_raw_image(raw_index)
        if image.shape != self.image_shape:
            name = self._files.image_names[raw_index]
            raise DatasetError(
                f"{self._path}/{name}: shape {list(image.shape)} differs from the first image's {self.image_shape}"
            )
        if self._xflip[index]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(index)

    def get_label(self, index: int) -> np.ndarray:
        label = self._raw_labels[self._raw_idx[index]]
        if self._raw_labels.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    def label_distribution(self) -> np.ndarray:
        """Mean label over the dataset's items: class frequencies for one-hot labels; shape [label_dim]."""
        if self.label_dim == 0:
            return np.zeros(0, dtype=np.float64)
        raw = self._raw_labels[self._raw_idx]
        if raw.dtype == np.int64:
            return np.bincount(raw, minlength=self.label_dim).astype(np.float64) / raw.size
        return raw.astype(np.float64).mean(axis=0)

    def close(self) -> None:
        self._files.close()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        channels, height, width = self.image_shape
        if height != width:
            raise DatasetError(f"{self._path}: images are {width}x{height}; training needs square images")
        return height

    @property
    def label_shape(self) -> tuple[int, ...]:
        return self._label_shape

    @property
    def label_dim(self) -> int:
        return int(np.prod(self._label_shape))

    @property
    def has_labels(self) -> bool:
        return any(size != 0 for size in self.label_shape)

    @property
    def has_onehot_labels(self) -> bool:
        return self._raw_labels.dtype == np.int64

    @property
    def image_names(self) -> list[str]:
        """Archive names of all images in raw (file) order, before subset and x-flip."""
        return list(self._files.image_names)

    @property
    def raw_indices(self) -> np.ndarray:
        return self._raw_idx.copy()

    @property
    def xflip_flags(self) -> np.ndarray:
        return self._xflip.copy()

    @property
    def content_hash(self) -> str:
        if self._content_hash is None:
            self._content_hash = self._files.content_hash()
        return self._content_hash
