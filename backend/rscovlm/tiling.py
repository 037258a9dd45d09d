"""The window grid that cuts a large raster into model-sized tiles.

The grid follows mmrotate / DOTA_devkit (the rule the paper's numbers were produced with):
along an axis of length L with tile ``size`` and ``overlap``, the step is
``size - overlap``, there are ``1`` windows if ``L <= size`` else
``ceil((L - size) / step) + 1``, and the last start is clamped to ``L - size``. So every
window is full size and inside the image, and the last one overlaps its neighbour by more
than ``overlap`` instead of hanging over the edge. A raster smaller than a tile gives one
window of the raster's own size (it is resized for the model like any tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rscovlm.errors import UserError

__all__ = ["Window", "axis_starts", "tile_windows"]


@dataclass(frozen=True)
class Window:
    """A rectangle of image pixels: ``col`` is x, ``row`` is y, ends are exclusive."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.col_off, self.row_off, self.width, self.height)


def _check_grid(size: int, overlap: int) -> None:
    if int(size) != size or size <= 0:
        raise UserError(f"The tile size must be a positive whole number of pixels; got {size}.")
    if int(overlap) != overlap or overlap < 0:
        raise UserError(f"The tile overlap must be zero or a positive whole number of pixels; got {overlap}.")
    if overlap >= size:
        raise UserError(
            f"The tile overlap ({overlap} px) must be smaller than the tile size ({size} px); "
            "lower the overlap or raise the tile size."
        )


def axis_starts(length: int, size: int, overlap: int) -> list[int]:
    """Window starts along one axis (mmrotate rule, last start clamped to ``length - size``)."""
    _check_grid(size, overlap)
    if int(length) != length or length <= 0:
        raise UserError(f"The image side must be a positive number of pixels; got {length}.")
    if length <= size:
        return [0]
    step = size - overlap
    count = math.ceil((length - size) / step) + 1
    return [min(i * step, length - size) for i in range(count)]


def tile_windows(
    width: int,
    height: int,
    size: int = 512,
    overlap: int = 100,
    region: Window | None = None,
) -> list[Window]:
    """Row-major windows covering the image, or only ``region`` (clamped to the image)."""
    _check_grid(size, overlap)
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise UserError(f"The image must have a positive size; got {width} x {height} pixels.")
    col0, row0, col1, row1 = 0, 0, int(width), int(height)
    if region is not None:
        col0, row0 = max(col0, int(region.col_off)), max(row0, int(region.row_off))
        col1, row1 = min(col1, int(region.col_end)), min(row1, int(region.row_end))
        if col1 <= col0 or row1 <= row0:
            raise UserError(
                f"The region (columns {region.col_off}..{region.col_end}, rows "
                f"{region.row_off}..{region.row_end}) does not overlap the image "
                f"({width} x {height} pixels); choose a region inside the raster."
            )
    region_w, region_h = col1 - col0, row1 - row0
    tile_w, tile_h = min(size, region_w), min(size, region_h)
    cols = axis_starts(region_w, size, overlap)
    rows = axis_starts(region_h, size, overlap)
    return [Window(col0 + c, row0 + r, tile_w, tile_h) for r in rows for c in cols]
