"""What the asset pages show besides numbers: a per-class dataset preview, labelled sample grids, the FID/KID history
of a run against kimg (from NVIDIA's `metric-<name>.jsonl` rows, one per evaluated snapshot) and its loss curves
(from `stats.jsonl`, one line per tick). Everything here reads files the core wrote; nothing is recomputed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster_project import plots

PREVIEW_PER_CLASS = 8
PREVIEW_MAX_CLASSES = 16
PREVIEW_UNLABELLED = (8, 4)
"""Columns x rows of the preview of an unlabelled dataset (its first images)."""
LOSS_KEYS = ("Loss/G/loss", "Loss/D/loss", "Loss/scores/real", "Loss/scores/fake")
METRIC_BETTER = {"fid": "lower", "kid": "lower", "ppl": "lower", "is": "higher", "pr": "higher"}
"""Which way each metric family improves (precision and recall, and IS, grow; distances shrink)."""
_METRIC_FAMILY = re.compile(r"^[a-z]+?(?=[0-9_]|$)")
_SNAPSHOT_KIMG = re.compile(r"network-snapshot-(\d+)(?:\.(\d{3}))?\.(?:pt|pkl)$")


def class_names(manifest_path: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """Class names recorded at ingestion (sub-folder names), or None (unlabelled, or labels without names)."""
    from stylegan_core.data.manifest import read_manifest_report

    names = read_manifest_report(manifest_path).get("class_names")
    return tuple(str(name) for name in names) if names else None


def dataset_preview(zip_path: str | os.PathLike[str], names: Sequence[str] | None) -> tuple[bytes, str]:
    """A PNG with one labelled row per class (its first PREVIEW_PER_CLASS images), or the first images of an
    unlabelled dataset; returns (png, caption)."""
    import numpy as np
    from PIL import Image

    from stylegan_core.data.dataset import ImageDataset

    dataset = ImageDataset(zip_path, use_labels=True, xflip=False)
    try:
        labels = None
        if dataset.has_onehot_labels:
            labels = np.array([int(np.argmax(dataset.get_label(i))) for i in range(len(dataset))])
        if labels is None:
            columns, rows = PREVIEW_UNLABELLED
            chosen = [list(range(min(len(dataset), columns * rows)))]
            row_labels: list[str] | None = None
        else:
            classes = sorted({int(v) for v in labels})[:PREVIEW_MAX_CLASSES]
            chosen = [[int(i) for i in np.flatnonzero(labels == c)[:PREVIEW_PER_CLASS]] for c in classes]
            row_labels = [names[c] if names and c < len(names) else f"class {c}" for c in classes]
            columns = PREVIEW_PER_CLASS
        blank = np.zeros(dataset.image_shape, dtype=np.uint8)
        cells = [[dataset[i][0] for i in row] for row in chosen]
    finally:
        dataset.close()
    if row_labels is None:  # unlabelled: one list of images wrapped into rows
        flat = cells[0]
        cells = [flat[r * columns : (r + 1) * columns] for r in range(-(-len(flat) // columns))]
    grid = np.concatenate(
        [np.concatenate(row + [blank] * (columns - len(row)), axis=2) for row in cells], axis=1
    )  # [C, rows*H, columns*W]
    image = Image.fromarray(grid.transpose(1, 2, 0).squeeze() if grid.shape[0] == 1 else grid.transpose(1, 2, 0))
    caption = (
        f"first {columns} images of each of {len(cells)} classes"
        if row_labels
        else f"first {sum(len(r) for r in cells)} images (unlabelled)"
    )
    return plots.labelled_grid(image, len(cells), row_labels), caption


def sample_grid(path: str | os.PathLike[str], rows: int, names: Sequence[str] | None, c_dim: int) -> bytes:
    """A sample grid scaled up for reading; rows are labelled with class names when the generator is conditional
    (row r shows class r mod c_dim, `export.grid.class_row_labels`)."""
    from PIL import Image

    row_labels = None
    if c_dim:
        row_labels = [names[r % c_dim] if names and len(names) == c_dim else f"class {r % c_dim}" for r in range(rows)]
    with Image.open(path) as image:
        return plots.labelled_grid(image, rows, row_labels)


def snapshot_kimg(snapshot: str | os.PathLike[str] | None) -> float | None:
    """kimg from a snapshot file name (`network-snapshot-000004.pt` -> 4.0, `...-000000.200.pt` -> 0.2)."""
    match = _SNAPSHOT_KIMG.search(str(snapshot or ""))
    if match is None:
        return None
    return int(match.group(1)) + int(match.group(2) or 0) / 1000


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash; the others still count
        if isinstance(row, dict):
            yield row


def metric_rows(run_dir: str | os.PathLike[str], name: str) -> dict[str, dict[str, float]]:
    """{snapshot (relative to run_dir): results} of `metric-<name>.jsonl`; a snapshot measured twice keeps its
    last row."""
    rows: dict[str, dict[str, float]] = {}
    for row in _jsonl(Path(run_dir) / f"metric-{name}.jsonl"):
        results, snapshot = row.get("results"), row.get("snapshot_pkl")
        if isinstance(results, dict) and isinstance(snapshot, str):
            rows[snapshot] = {str(k): float(v) for k, v in results.items() if isinstance(v, (int, float))}
    return rows


def metric_history(run_dir: str | os.PathLike[str], names: Iterable[str]) -> dict[str, list[tuple[float, float]]]:
    """{result name: [(kimg, value), ...]} sorted by kimg, for every evaluated snapshot of the run."""
    history: dict[str, list[tuple[float, float]]] = {}
    for name in names:
        for snapshot, results in metric_rows(run_dir, name).items():
            kimg = snapshot_kimg(snapshot)
            if kimg is None:
                continue
            for key, value in results.items():
                history.setdefault(key, []).append((kimg, value))
    return {key: sorted(points) for key, points in history.items()}


def metric_family(key: str) -> str:
    """The letters a metric result key starts with: fid50k_full -> fid, pr50k3_full_recall -> pr, ppl_zfull -> ppl."""
    match = _METRIC_FAMILY.match(key)
    return match.group(0) if match else key


def metric_direction(key: str) -> str | None:
    """Which way a result key improves, "lower" or "higher"; None for a spread (`is50k_std`) or unknown family."""
    return None if key.endswith("_std") else METRIC_BETTER.get(metric_family(key))


def metric_charts(history: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, bytes]:
    """One chart per metric family, since their scales differ: {"fid": png, "kid": png, "pr": png, ...}.

    Generic over result keys: a PR metric's precision and recall share the `pr` chart, IS's mean and std the `is`
    chart; a family this table does not know is still plotted, only without "lower/higher is better"."""
    families: dict[str, dict[str, Sequence[tuple[float, float]]]] = {}
    for key, points in history.items():
        families.setdefault(metric_family(key), {})[key] = points
    charts = {}
    for family, series in sorted(families.items()):
        better = METRIC_BETTER.get(family)
        title = f"{family.upper()} against training progress" + (f" ({better} is better)" if better else "")
        charts[family] = plots.line_chart(series, title, "kimg")
    return charts


def loss_history(stats_path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """{stat name: [(kimg, mean), ...]} of LOSS_KEYS, one point per tick line of `stats.jsonl`."""
    history: dict[str, list[tuple[float, float]]] = {key: [] for key in LOSS_KEYS}
    for row in _jsonl(Path(stats_path)):
        kimg = (row.get("Progress/kimg") or {}).get("mean")
        if not isinstance(kimg, (int, float)):
            continue
        for key in LOSS_KEYS:
            mean = (row.get(key) or {}).get("mean")
            if isinstance(mean, (int, float)):
                history[key].append((float(kimg), float(mean)))
    return {key.removeprefix("Loss/"): points for key, points in history.items() if points}


def loss_chart(stats_path: str | os.PathLike[str]) -> bytes | None:
    history = loss_history(stats_path)
    return plots.line_chart(history, "Losses and D scores per tick (stats.jsonl)", "kimg") if history else None
