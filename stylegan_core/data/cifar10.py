"""CIFAR-10 from its python-pickle release (`cifar-10-python.tar.gz` or the extracted `cifar-10-batches-py/`).

The five training batches become a folder of 32x32 PNGs plus `dataset.json` (labels 0-9), in batch order, which
ingestion then treats like any user folder; at resolution 32 the pixels pass through unchanged, as in NVIDIA's tool.
The batches are pickles, so they are read with an unpickler that can build nothing but numpy arrays, lists and dicts.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_core.data.options import DatasetError
from stylegan_core.io.atomic import atomic_directory

BATCH_NAMES = tuple(f"data_batch_{index}" for index in range(1, 6))
ARCHIVE_FOLDER = "cifar-10-batches-py"
MARKER_FILE = "cifar10.json"
NUM_CLASSES = 10


def _numpy_reconstruct() -> object:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the three numpy needs to rebuild an array (and the bytes codec that protocol-2
    pickles written by Python 3 use for the array's buffer)."""

    _allowed = {
        ("_codecs", "encode"): lambda: codecs.encode,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        factory = self._allowed.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")
        return factory()


def read_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → (uint8 [N, 32, 32, 3] images, int64 [N] labels)."""
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{name}: not a CIFAR-10 python batch ({error})") from None
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{name}: not a CIFAR-10 python batch (expected a dict with 'data' and 'labels')")
    images = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{name}: 'data' must be uint8 [N, 3072], got {images.dtype} {list(images.shape)}")
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
        raise DatasetError(f"{name}: 'labels' must be {images.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{name}: labels must lie in 0..{NUM_CLASSES - 1}")
    # Rows are stored as three 32x32 planes (R, G, B).
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _read_batches(source: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    if source.is_dir():
        folder = source / ARCHIVE_FOLDER if (source / ARCHIVE_FOLDER).is_dir() else source
        missing = [name for name in BATCH_NAMES if not (folder / name).is_file()]
        if missing:
            raise DatasetError(f"{folder}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
        return [read_batch((folder / name).read_bytes(), str(folder / name)) for name in BATCH_NAMES]
    try:
        with tarfile.open(source, "r:*") as archive:
            batches = []
            for name in BATCH_NAMES:
                member = archive.extractfile(f"{ARCHIVE_FOLDER}/{name}")
                if member is None:
                    raise KeyError(name)
                batches.append(read_batch(member.read(), f"{source}/{ARCHIVE_FOLDER}/{name}"))
            return batches
    except KeyError as error:
        raise DatasetError(f"{source}: no {ARCHIVE_FOLDER}/{error.args[0]} inside the archive") from None
    except (tarfile.TarError, OSError) as error:
        raise DatasetError(f"{source}: not a readable cifar-10-python.tar.gz ({error})") from None


def _source_stamp(source: Path) -> str:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("data_batch_*") if p.is_file())
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])


def convert_cifar10(source: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write the 50,000 training images as `<out_dir>/<block>/<index>.png` + `dataset.json`, unless already there."""
    source, out_dir = Path(source).expanduser(), Path(out_dir)
    if not source.exists():
        raise DatasetError(f"{source}: CIFAR-10 source does not exist (download cifar-10-python.tar.gz first)")
    stamp = _source_stamp(source)
    marker = out_dir / MARKER_FILE
    if marker.is_file() and marker.read_text() == stamp:
        return out_dir
    if out_dir.exists() and not marker.is_file():
        raise DatasetError(f"{out_dir}: exists and is not a converted CIFAR-10 folder; choose another path")
    batches = _read_batches(source)
    with atomic_directory(out_dir) as temp:
        labels = []
        index = 0
        for images, batch_labels in batches:
            for image, label in zip(images, batch_labels, strict=True):
                name = f"{index // 1000:03d}/{index:05d}.png"
                (temp / name).parent.mkdir(parents=True, exist_ok=True)
                PIL.Image.fromarray(image, "RGB").save(temp / name, format="png", compress_level=0)
                labels.append([name, int(label)])
                index += 1
        (temp / "dataset.json").write_text(json.dumps({"labels": labels}))
        (temp / MARKER_FILE).write_text(stamp)
    return out_dir
