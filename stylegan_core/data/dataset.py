"""The training-time reader of NVIDIA-layout datasets (a zip or folder of PNGs plus `dataset.json`).

Behaviour follows NVIDIA's `ImageFolderDataset` exactly (file order, one-hot labels with label_dim = max + 1, the
`max_size` subset drawn with RandomState(random_seed) before x-flip doubling), with clear errors instead of asserts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_core.data.options import DatasetError, is_hidden, is_image_name

LABELS_FILE = "dataset.json"
_HASH_VERSION = b"stylegan-dataset-v1\n"


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
            names = [name for name in self._zip().namelist() if not name.endswith("/")]
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
        return self._zip().read(name)

    def _zip(self) -> zipfile.ZipFile:
        handle = self.__dict__.get("_handle")
        if handle is None or self.__dict__.get("_handle_pid") != os.getpid():
            handle = zipfile.ZipFile(self.path)
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
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{name}: cannot decode image ({error})") from None
    if mode not in ("L", "RGB", "RGBA"):
        # NVIDIA would hand palette indices or 16-bit values to the network; ingestion converts these properly.
        raise DatasetError(f"{name}: image mode {mode} is not L, RGB or RGBA; convert with `stylegan dataset prepare`")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array.transpose(2, 0, 1)


def parse_labels(data: bytes, names: list[str], where: str) -> np.ndarray | None:
    """dataset.json → int64 [N] class indices or float32 [N, D] vectors, in `names` order; None if labels are null."""
    try:
        document = json.loads(data)
        entries = document["labels"]
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise DatasetError(f"{where}: expected {{'labels': [[file, label], ...]}} ({error})") from None
    if entries is None:
        return None
    table = {str(entry[0]).replace("\\", "/"): entry[1] for entry in entries}
    missing = [name for name in names if name not in table]
    if missing:
        raise DatasetError(f"{where}: no label for {missing[0]} ({len(missing)} image(s) unlabelled)")
    labels = np.array([table[name] for name in names])
    if labels.ndim == 1 and labels.dtype.kind in "iu":
        if labels.size and labels.min() < 0:
            raise DatasetError(f"{where}: negative class label {int(labels.min())}")
        return labels.astype(np.int64)
    if labels.ndim == 2 and labels.dtype.kind in "iuf":
        return labels.astype(np.float32)
    raise DatasetError(f"{where}: labels must be integers or equal-length number vectors")


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
