"""The embedded demo dataset: procedurally drawn, labelled shapes on smooth gradient backgrounds.

Every image is a pure function of (seed, index, size). To give the same pixels on every machine, drawing uses only
operations IEEE 754 rounds exactly (+, -, *, /, sqrt, comparisons) on float64, no trigonometry or library reductions
(whose SIMD code paths differ between CPUs), and numpy's legacy RandomState, whose streams are frozen. Rotations use
the rational parametrisation cos = (1 - t^2) / (1 + t^2), sin = 2t / (1 + t^2). PNGs are stored uncompressed, so the
file bytes do not depend on the zlib build either.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_core.data.options import SHAPES_BOUNDS, DatasetError
from stylegan_core.data.parallel import ordered_map
from stylegan_core.io.atomic import atomic_directory

# Classes told apart by their coarse outline, because the demo trains at 16 px (a shape is 10-13 px across): a solid
# disc, a disc with a hole, four straight sides, three, and a cross of two thick bars with deep notches. A
# five-pointed star was one of them until issue 16: its points are 2-3 px wide at 16 px and the demo's 50-kimg
# network drew it as a blob (31-45 % of cells read as stars; a fatter star, inner radius 0.6, came out as a rounded
# pentagon, 17 %). The plus reads better (38-77 %) but is still the weakest row (benchmarks/RESULTS.md).
# Alphabetical, because labels come from the class sub-folders in sorted order.
SHAPE_CLASSES = ("circle", "plus", "ring", "square", "triangle")
SETTINGS_FILE = "shapes.json"

_HALF_SQRT3 = math.sqrt(3.0) / 2.0


@dataclass(frozen=True, kw_only=True)
class ShapesSettings:
    """What the generator draws; the folder is regenerated when these change."""

    count: int = 2000
    """Number of images (classes take turns, so each class gets count / 5)."""
    size: int = 128
    """Width and height of the source images in pixels."""
    seed: int = 0
    """Seed of the whole set; image i uses RandomState([seed, i])."""

    def __post_init__(self) -> None:
        for name, (low, high) in SHAPES_BOUNDS.items():
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"shapes {name} must be in [{low}, {high}], got {getattr(self, name)}")


# What varies within a class is kept small, so that a few CPU minutes of training draw each class recognisably at
# 16 px (the demo's point; textured backgrounds, free placement and any rotation took far longer, issue 16): a large
# shape (radius 0.3-0.4 of the image), centred within 6 % of the image, turned at most ~23 degrees either way
# (t = tan(angle / 2) <= 0.2), in a random colour that contrasts with a random two-colour gradient.
_RADIUS_RANGE = (0.3, 0.4)
_CENTRE_JITTER = 0.06
_TURN_RANGE = 0.2


def render_shape_image(index: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, int]:
    """Image `index` of the set: uint8 [size, size, 3] and its class index into SHAPE_CLASSES."""
    rng = np.random.RandomState([seed, index])
    label = index % len(SHAPE_CLASSES)
    background, typical_colour = _background(rng, size)
    colour = _contrasting_colour(rng, typical_colour)
    radius = rng.uniform(*_RADIUS_RANGE) * size
    centre = size / 2.0 + rng.uniform(-_CENTRE_JITTER, _CENTRE_JITTER, size=2) * size
    t = rng.uniform(-_TURN_RANGE, _TURN_RANGE)
    rotation = ((1 - t * t) / (1 + t * t), 2 * t / (1 + t * t))
    (y0, y1, x0, x1), coverage = _coverage(SHAPE_CLASSES[label], size, centre, radius, rotation)
    box = background[:, y0:y1, x0:x1]
    box += (colour[:, np.newaxis, np.newaxis] - box) * coverage
    # Values lie in [0, 255], so truncating x + 0.5 rounds half up.
    background += 0.5
    return background.transpose(1, 2, 0).astype(np.uint8), label


def _background(rng: np.random.RandomState, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A two-colour linear gradient, float64 [3, H, W] (channels first keeps numpy's inner loops long), and its
    typical colour (the gradient's midpoint: exact, unlike a mean over pixels)."""
    start, end = rng.randint(0, 256, size=3).astype(np.float64), rng.randint(0, 256, size=3).astype(np.float64)
    dx, dy = rng.uniform(-1.0, 1.0, size=2)
    coords = np.arange(size, dtype=np.float64) + 0.5
    projection = coords[np.newaxis, :] * dx + coords[:, np.newaxis] * dy
    low, high = projection.min(), projection.max()
    ramp = (projection - low) / (high - low) if high > low else np.zeros_like(projection)
    image = start[:, np.newaxis, np.newaxis] + (end - start)[:, np.newaxis, np.newaxis] * ramp
    return np.clip(image, 0.0, 255.0, out=image), (start + end) / 2.0


def _contrasting_colour(rng: np.random.RandomState, mean_background: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background's mean that the shape stays visible."""
    best, best_distance = None, -1.0
    for _ in range(16):
        candidate = rng.randint(0, 256, size=3).astype(np.float64)
        dr, dg, db = (float(c) for c in candidate - mean_background)
        distance = math.sqrt(dr * dr + dg * dg + db * db)
        if distance > best_distance:
            best, best_distance = candidate, distance
        if distance >= 160.0:
            break
    return best


def _coverage(
    shape: str, size: int, centre: np.ndarray, radius: float, rotation: tuple[float, float]
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The shape's bounding box (y0, y1, x0, x1) and its anti-aliased coverage in [0, 1] there, from the signed
    distance d in pixels: clip(0.5 - d, 0, 1). Outside the box the coverage is 0."""
    x0, x1 = max(0, int(centre[0] - radius) - 2), min(size, int(centre[0] + radius) + 3)
    y0, y1 = max(0, int(centre[1] - radius) - 2), min(size, int(centre[1] + radius) + 3)
    xs = np.arange(x0, x1, dtype=np.float64)[np.newaxis, :] + 0.5 - centre[0]
    ys = np.arange(y0, y1, dtype=np.float64)[:, np.newaxis] + 0.5 - centre[1]
    cos, sin = rotation
    u, v = cos * xs + sin * ys, cos * ys - sin * xs
    distance = _SIGNED_DISTANCES[shape](u, v, radius)
    return (y0, y1, x0, x1), np.clip(0.5 - distance, 0.0, 1.0)


def _circle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.sqrt(u * u + v * v) - r


def _ring(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return np.abs(np.sqrt(u * u + v * v) - 0.75 * r) - 0.25 * r


def _box(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    """Axis-aligned rectangle with half-sides half_u, half_v."""
    qx, qy = np.abs(u) - half_u, np.abs(v) - half_v
    ox, oy = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), 0.0)


def _square(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    return _box(u, v, 0.7 * r, 0.7 * r)


def _triangle(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    # Equilateral, circumradius r: the distance to the farthest edge line (exact on the edges, where it matters).
    return _convex(u, v, [(0.0, -r), (_HALF_SQRT3 * r, 0.5 * r), (-_HALF_SQRT3 * r, 0.5 * r)])


def _plus(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    # Two bars reaching r from the centre, 0.6 r thick (about 3-4 px at 16 px): the union of two rectangles. Its
    # area is close to the square's, so size says nothing about the class either.
    return np.minimum(_box(u, v, r, 0.3 * r), _box(u, v, 0.3 * r, r))


def _convex(u: np.ndarray, v: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    """max over edges of the signed distance to the edge's line; vertices in clockwise screen order (y down)."""
    distance = None
    for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        ex, ey = bx - ax, by - ay
        length = math.sqrt(ex * ex + ey * ey)
        nx, ny = ey / length, -ex / length
        edge = (u - ax) * nx + (v - ay) * ny
        distance = edge if distance is None else np.maximum(distance, edge)
    return distance


_SIGNED_DISTANCES = {"circle": _circle, "plus": _plus, "ring": _ring, "square": _square, "triangle": _triangle}


def shape_file_name(index: int) -> str:
    return f"{SHAPE_CLASSES[index % len(SHAPE_CLASSES)]}/{index:05d}.png"


def _write_image(context: tuple[ShapesSettings, Path], index: int) -> None:
    """Runs in the worker processes, which write their files themselves rather than sending pixels back."""
    settings, folder = context
    image, _label = render_shape_image(index, settings.size, settings.seed)
    PIL.Image.fromarray(image, "RGB").save(folder / shape_file_name(index), format="png", compress_level=0)


def generate_shapes(
    out_dir: str | os.PathLike[str],
    settings: ShapesSettings | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write the set as `<out_dir>/<class>/<index>.png` (labels = class sub-folders), unless already there.

    The folder is built under a temporary name and renamed, so an interrupted run never leaves half a set.
    """
    settings = settings or ShapesSettings()
    out_dir = Path(out_dir)
    marker = out_dir / SETTINGS_FILE
    wanted = json.dumps(asdict(settings), sort_keys=True)
    if marker.is_file() and marker.read_text() == wanted:
        return out_dir
    if out_dir.exists() and not marker.is_file():
        raise DatasetError(f"{out_dir}: exists and is not a generated shapes folder; choose another path")
    # An older generated set (the marker said so) with other settings is replaced.
    with atomic_directory(out_dir) as temp:
        for name in SHAPE_CLASSES:
            (temp / name).mkdir(parents=True)
        for _ in ordered_map(_write_image, (settings, temp), range(settings.count), workers, progress, "draw shapes"):
            pass
        (temp / SETTINGS_FILE).write_text(wanted)
    return out_dir
