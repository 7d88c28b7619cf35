"""Pictures for the UI, drawn with Pillow alone (already a dependency): line charts and labelled image grids.

Dagster has no image or chart metadata type; an asset page shows PNGs embedded in markdown (`metadata.png_markdown`).
These helpers make those PNGs: a line chart of FID/KID against kimg or of the losses in `stats.jsonl`, and an image
grid scaled up to a readable size with one label per row (class names for class-conditional grids).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

Series = Sequence[tuple[float, float]]

CHART_SIZE = (640, 300)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 150, 28, 40
# Colour-blind-safe (Okabe-Ito), in the order series are given.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
GRID_CELL_MIN = 64
"""Grid cells are scaled up (whole factors, nearest neighbour) until at least this many pixels wide."""
LABEL_WIDTH = 96


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 x 10^k apart) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(series: Mapping[str, Series], title: str, x_label: str, size: tuple[int, int] = CHART_SIZE) -> bytes:
    """A PNG line chart (markers at each point) of named (x, y) series sharing one y axis; empty series are skipped."""
    series = {name: [(float(x), float(y)) for x, y in points if math.isfinite(y)] for name, points in series.items()}
    series = {name: points for name, points in series.items() if points}
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    draw.text((MARGIN_LEFT, 6), title, fill="black", font=font)
    if not series:
        draw.text((MARGIN_LEFT, height // 2), "no data yet", fill="grey", font=font)
        return _png(image)
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    left, right, top, bottom = MARGIN_LEFT, width - MARGIN_RIGHT, MARGIN_TOP, height - MARGIN_BOTTOM

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for tick in y_ticks:
        _, py = to_pixel(x0, tick)
        draw.line([(left, py), (right, py)], fill="#e6e6e6")
        draw.text((left - 6, py), _label(tick), fill="black", font=font, anchor="rm")
    for tick in x_ticks:
        px, _ = to_pixel(tick, y0)
        draw.line([(px, bottom), (px, bottom + 4)], fill="black")
        draw.text((px, bottom + 6), _label(tick), fill="black", font=font, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, height - 4), x_label, fill="black", font=font, anchor="md")
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        pixels = [to_pixel(x, y) for x, y in sorted(points)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        if len(pixels) <= 40:  # markers only where they stay distinct
            for px, py in pixels:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = top + 4 + 18 * index
        draw.line([(right + 10, legend_y + 7), (right + 28, legend_y + 7)], fill=colour, width=3)
        draw.text((right + 34, legend_y), name, fill="black", font=font)
    return _png(image)


def labelled_grid(
    grid: Image.Image, rows: int, row_labels: Sequence[str] | None = None, cell_min: int = GRID_CELL_MIN
) -> bytes:
    """`grid` (rows of equal cells) scaled up by a whole factor until a cell is >= `cell_min` px, with a label
    column on the left when `row_labels` is given (one per row; extra rows stay unlabelled)."""
    grid = grid.convert("RGB")
    cell_height = grid.height // max(rows, 1)
    factor = max(1, -(-cell_min // max(cell_height, 1)))
    scaled = grid.resize((grid.width * factor, grid.height * factor), Image.Resampling.NEAREST)
    if not row_labels:
        return _png(scaled)
    canvas = Image.new("RGB", (scaled.width + LABEL_WIDTH, scaled.height), "white")
    canvas.paste(scaled, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for row, text in enumerate(row_labels[:rows]):
        centre = (row + 0.5) * cell_height * factor
        draw.text((LABEL_WIDTH - 8, centre), str(text), fill="black", font=font, anchor="rm")
    return _png(canvas)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
