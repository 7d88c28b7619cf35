"""Listing a source folder or zip safely: which files are images, their labels, and what is wrong with any of them.

Per-file problems (zip entries escaping the archive, symlinks out of the folder, files without labels, bad label
values, labels for files that do not exist) are collected, not raised, so `on_error: skip` can leave them out;
problems with the source as a whole (missing, empty, malformed dataset.json) raise `DatasetError` at once.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from stylegan_core.data.options import (
    BadFileError,
    DatasetError,
    LabelSource,
    is_hidden,
    is_image_name,
    path_sort_key,
)
from stylegan_core.io.limits import MAX_C_DIM

LABELS_FILE = "dataset.json"
# A single zip entry larger than this is refused before reading (zip bombs; no training image is this big).
MAX_ENTRY_BYTES = 1 << 30


@dataclass(frozen=True)
class SourceItem:
    """One image file of the source, by its path relative to the source root ('/' separators)."""

    path: str
    label: int | None = None


@dataclass(frozen=True)
class SourceListing:
    """The images of a source in NVIDIA's order, with labels, plus the per-file problems found while listing."""

    root: Path
    kind: Literal["folder", "zip"]
    items: tuple[SourceItem, ...]
    problems: tuple[BadFileError, ...] = ()
    ignored: tuple[str, ...] = ()
    labelled: bool = False
    class_names: tuple[str, ...] | None = None
    num_classes: int | None = None

    @property
    def label_dim(self) -> int:
        """One-hot width: the declared class count, else the largest label + 1 (NVIDIA's rule); 0 if unlabelled."""
        if not self.labelled:
            return 0
        if self.num_classes is not None:
            return self.num_classes
        return max((item.label for item in self.items if item.label is not None), default=-1) + 1


@dataclass
class SourceReader:
    """Reads file bytes from a folder or a zip; safe to pickle into worker processes (the zip is reopened there)."""

    root: Path
    kind: Literal["folder", "zip"]
    _archive: zipfile.ZipFile | None = field(default=None, repr=False)
    _archive_pid: int | None = field(default=None, repr=False)

    def read(self, path: str) -> bytes:
        if self.kind == "folder":
            return (self.root / path).read_bytes()
        archive = self._open_archive()
        info = archive.getinfo(path)
        if info.file_size > MAX_ENTRY_BYTES:
            raise BadFileError(self.display_name(path), f"zip entry of {info.file_size} bytes is too large")
        try:
            return archive.read(info)  # checks the entry's CRC
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:  # RuntimeError: encrypted
            raise BadFileError(self.display_name(path), f"corrupt zip entry ({error})") from None

    def open(self, path: str) -> BinaryIO:
        """A stream of the file, for reading headers without reading whole files."""
        if self.kind == "folder":
            return (self.root / path).open("rb")
        return self._open_archive().open(path)

    def display_name(self, path: str) -> str:
        """How messages name the file: the full path of a folder file, `archive.zip/entry` for a zip entry."""
        return str(self.root / path)

    def _open_archive(self) -> zipfile.ZipFile:
        # A forked worker must not share the parent's file offset, so each process opens its own handle.
        if self._archive is None or self._archive_pid != os.getpid():
            self._archive = zipfile.ZipFile(self.root)
            self._archive_pid = os.getpid()
        return self._archive

    def close(self) -> None:
        if self._archive is not None and self._archive_pid == os.getpid():
            self._archive.close()
        self._archive = None

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root, "kind": self.kind, "_archive": None, "_archive_pid": None}


def source_kind(path: Path) -> Literal["folder", "zip"]:
    if path.is_dir():
        return "folder"
    if path.is_file() and zipfile.is_zipfile(path):
        return "zip"
    if not path.exists():
        raise DatasetError(f"{path}: source does not exist")
    raise DatasetError(f"{path}: source must be a folder of images or a .zip archive")


def list_source(
    path: str | os.PathLike[str],
    labels: LabelSource = "auto",
    num_classes: int | None = None,
    max_images: int | None = None,
) -> SourceListing:
    """Find the images of a source (sorted as NVIDIA numbers them) and attach labels from the chosen source."""
    root = Path(path).expanduser()
    kind = source_kind(root)
    files, label_text, problems, ignored = _walk_folder(root) if kind == "folder" else _walk_zip(root)
    files.sort(key=path_sort_key)
    present = set(files)  # labels may name files beyond max_images; those are not "missing"
    if max_images is not None:
        files = files[:max_images]
    if not files and not problems:
        raise DatasetError(f"{root}: no image files found in the source")
    reader_name = SourceReader(root, kind).display_name
    labelled, mapping, class_names, label_problems = _resolve_labels(
        labels, files, present, label_text, reader_name, num_classes
    )
    items = tuple(SourceItem(name, mapping.get(name) if labelled else None) for name in files)
    if labelled:
        unlabelled = [item for item in items if item.label is None]
        bad = {problem.path for problem in label_problems}
        label_problems += [
            BadFileError(reader_name(item.path), _missing_label_reason(labels))
            for item in unlabelled
            if reader_name(item.path) not in bad
        ]
    all_problems = [*problems, *label_problems]
    problem_paths = {problem.path for problem in all_problems}
    items = tuple(item for item in items if reader_name(item.path) not in problem_paths)
    return SourceListing(
        root, kind, items, tuple(all_problems), tuple(sorted(ignored)), labelled, class_names, num_classes
    )


def _missing_label_reason(labels: LabelSource) -> str:
    if labels == "subfolders":
        return "file is not inside a class sub-folder, so it has no label"
    return f"no label for this file in {LABELS_FILE}"


def _walk_folder(root: Path) -> tuple[list[str], str | None, list[BadFileError], list[str]]:
    files: list[str] = []
    problems: list[BadFileError] = []
    ignored: list[str] = []
    real_root = os.path.realpath(root)
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        relative_dir = os.path.relpath(directory, root).replace(os.sep, "/")
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        for name in sorted(dirnames):
            full, relative = os.path.join(directory, name), relative_dir + name
            if os.path.islink(full):
                # Linked folders are never followed: outside ones are a problem, inside ones would duplicate images.
                if _outside(full, real_root):
                    problems.append(BadFileError(full, "symbolic link points outside the source folder"))
                else:
                    ignored.append(relative + "/")
                dirnames.remove(name)
            elif is_hidden(relative):
                ignored.append(relative + "/")
                dirnames.remove(name)
        for name in filenames:
            full, relative = os.path.join(directory, name), relative_dir + name
            if os.path.islink(full) and _outside(full, real_root):
                problems.append(BadFileError(full, "symbolic link points outside the source folder"))
            elif os.path.islink(full) and not os.path.exists(full):
                problems.append(BadFileError(full, "broken symbolic link"))
            elif relative == LABELS_FILE:
                continue
            elif is_hidden(relative) or not is_image_name(name):
                ignored.append(relative)
            else:
                files.append(relative)
    label_file = root / LABELS_FILE
    label_text = None
    if label_file.is_file() and not _outside(str(label_file), real_root):
        label_text = label_file.read_text(encoding="utf-8")
    return files, label_text, problems, ignored


def _outside(path: str, real_root: str) -> bool:
    target = os.path.realpath(path)
    return os.path.commonpath([target, real_root]) != real_root


def _walk_zip(root: Path) -> tuple[list[str], str | None, list[BadFileError], list[str]]:
    files: list[str] = []
    problems: list[BadFileError] = []
    ignored: list[str] = []
    seen: set[str] = set()
    label_text = None
    try:
        with zipfile.ZipFile(root) as archive:
            for info in archive.infolist():
                name = info.filename
                display = f"{root}/{name}"
                if info.is_dir():
                    continue
                if _escapes(name):
                    problems.append(BadFileError(display, "zip entry escapes the archive ('..' or an absolute path)"))
                elif stat.S_ISLNK(info.external_attr >> 16):
                    problems.append(BadFileError(display, "zip entry is a symbolic link"))
                elif name in seen:
                    problems.append(BadFileError(display, "zip entry appears more than once"))
                elif name == LABELS_FILE:
                    label_text = archive.read(info).decode("utf-8")
                elif is_hidden(name) or not is_image_name(name):
                    ignored.append(name)
                else:
                    files.append(name)
                seen.add(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError) as error:
        raise DatasetError(f"{root}: unreadable zip archive ({error})") from None
    return files, label_text, problems, ignored


def _escapes(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in normalised.split("/")


def _resolve_labels(
    labels: LabelSource,
    files: list[str],
    present: set[str],
    label_text: str | None,
    display_name: Callable[[str], str],
    num_classes: int | None,
) -> tuple[bool, dict[str, int], tuple[str, ...] | None, list[BadFileError]]:
    """Returns (labelled, path → label, class names for sub-folder labels, per-file label problems)."""
    if labels == "none":
        return False, {}, None, []
    if labels == "subfolders":
        mapping, class_names = _subfolder_labels(files)
        problems = _range_problems(mapping, num_classes, display_name, "sub-folder")
        return True, mapping, class_names, problems
    if label_text is None:
        if labels == "dataset.json":
            raise DatasetError(f"{display_name(LABELS_FILE)}: not found, but labels come from {LABELS_FILE}")
        if class_folders(files):  # auto: class sub-folders are labels (silently unlabelled before; issue 16)
            mapping, class_names = _subfolder_labels(files)
            return True, mapping, class_names, _range_problems(mapping, num_classes, display_name, "sub-folder")
        return False, {}, None, []
    return _json_labels(labels, files, present, label_text, display_name, num_classes)


def class_folders(files: list[str]) -> bool:
    """`--labels auto` without dataset.json: every image sits in a sub-folder, there are at least two, and they are
    not NVIDIA's numbered chunk folders (00000/, 00001/, ... hold 1000 images each and mean nothing)."""
    if not files or any("/" not in name for name in files):
        return False
    folders = {name.split("/")[0] for name in files}
    return len(folders) >= 2 and not all(folder.isdigit() and len(folder) == 5 for folder in folders)


def _subfolder_labels(files: list[str]) -> tuple[dict[str, int], tuple[str, ...]]:
    class_names = tuple(sorted({name.split("/")[0] for name in files if "/" in name}))
    index = {class_name: label for label, class_name in enumerate(class_names)}
    return {name: index[name.split("/")[0]] for name in files if "/" in name}, class_names


def _json_labels(
    labels: LabelSource,
    files: list[str],
    present: set[str],
    label_text: str,
    display_name: Callable[[str], str],
    num_classes: int | None,
) -> tuple[bool, dict[str, int], None, list[BadFileError]]:
    json_name = display_name(LABELS_FILE)
    entries = _parse_label_json(label_text, json_name)
    if entries is None:
        if labels == "dataset.json":
            raise DatasetError(f"{json_name}: 'labels' is null, but labels come from {LABELS_FILE}")
        return False, {}, None, []
    mapping: dict[str, int] = {}
    raw_values: dict[str, object] = {}
    problems: list[BadFileError] = []
    for position, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f"{json_name}: labels[{position}] must be a [file name, label] pair, got {entry!r}")
        name = posixpath.normpath(entry[0].replace("\\", "/"))
        if name in raw_values:
            raise DatasetError(f"{json_name}: {name!r} is labelled more than once")
        raw_values[name] = entry[1]
        if name not in present:
            problems.append(BadFileError(f"{json_name}[{name}]", "labels a file that is not in the source"))
    for name in files:
        if name not in raw_values:
            continue
        value = raw_values[name]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(BadFileError(display_name(name), f"label {value!r} in {LABELS_FILE} is not an integer"))
        else:
            mapping[name] = value
    problems += _range_problems(mapping, num_classes, display_name, LABELS_FILE)
    return True, mapping, None, problems


def _parse_label_json(text: str, json_name: str) -> list[object] | None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{json_name}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or "labels" not in document:
        raise DatasetError(f"{json_name}: expected an object with a 'labels' list")
    entries = document["labels"]
    if entries is not None and not isinstance(entries, list):
        raise DatasetError(f"{json_name}: 'labels' must be a list of [file name, label] pairs or null")
    return entries


def _range_problems(
    mapping: dict[str, int], num_classes: int | None, display_name: Callable[[str], str], where: str
) -> list[BadFileError]:
    limit = num_classes if num_classes is not None else MAX_C_DIM
    problems = []
    for name, label in list(mapping.items()):
        if not 0 <= label < limit:
            bound = f"num_classes = {num_classes}" if num_classes is not None else f"the limit {limit}"
            problems.append(BadFileError(display_name(name), f"label {label} from {where} is outside [0, {bound})"))
            del mapping[name]
    return problems
