"""Which objects belong to which tile: mmrotate's 0.7 area rule, as a pure function.

An object goes to every tile that holds at least ``min_ratio`` of its area. It is kept
whole (its coordinates may reach past the tile edge) and marked truncated when the tile
holds less than all of it. Objects that no tile holds well enough are reported, not lost
silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from rscovlm.geometry import quads_to_polygons
from rscovlm.tiling import Window

__all__ = ["MIN_AREA_RATIO", "TileAssignment", "assign_to_tiles"]

MIN_AREA_RATIO = 0.7
_FULL = 1.0 - 1e-9


@dataclass(frozen=True)
class TileAssignment:
    """The objects of one tile: indexes into the image's objects and their truncation."""

    window: Window
    indexes: np.ndarray      # (K,) int, ascending
    ratios: np.ndarray       # (K,) area(object ∩ tile) / area(object)

    @property
    def truncated(self) -> np.ndarray:
        return self.ratios < _FULL


def assign_to_tiles(
    quads: np.ndarray, windows: list[Window], min_ratio: float = MIN_AREA_RATIO
) -> tuple[list[TileAssignment], np.ndarray]:
    """Assign image-pixel quads (N, 8) to windows; also return the indexes no tile took."""
    arr = np.asarray(quads, dtype=np.float64).reshape(-1, 8)
    polygons = shapely.make_valid(quads_to_polygons(arr)) if len(arr) else np.empty(0, dtype=object)
    areas = shapely.area(polygons) if len(arr) else np.empty(0)
    tree = shapely.STRtree(polygons)
    taken = np.zeros(len(arr), dtype=bool)
    result: list[TileAssignment] = []
    for window in windows:
        box = shapely.box(window.col_off, window.row_off, window.col_end, window.row_end)
        candidates = np.sort(tree.query(box, predicate="intersects")) if len(arr) else np.empty(0, dtype=np.int64)
        if len(candidates):
            inter = shapely.area(shapely.intersection(polygons[candidates], box))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(areas[candidates] > 0, inter / areas[candidates], 0.0)
            keep = ratios >= min_ratio
            candidates, ratios = candidates[keep].astype(np.int64), np.minimum(ratios[keep], 1.0)
        else:
            ratios = np.empty(0)
        taken[candidates] = True
        result.append(TileAssignment(window=window, indexes=candidates.astype(np.int64), ratios=ratios))
    return result, np.flatnonzero(~taken)
