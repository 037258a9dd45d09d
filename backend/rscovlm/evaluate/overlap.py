"""Intersection over union between oriented objects, as the two DOTA conventions see them.

DOTA_devkit compares the raw 4-point polygons; mmrotate first turns every polygon into
its minimum-area rectangle. Both only compute exact overlaps for pairs whose bounding
boxes touch, which an STRtree finds in one vectorised query; the areas are then computed
for all candidate pairs at once with shapely 2.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import STRtree

from .. import geometry
from ..geometry import valid_polygons


def quads_to_polygons(quads: np.ndarray) -> np.ndarray:
    """(N, 8) quads -> (N,) shapely polygons, made valid where the vertex order crosses.

    A self-intersecting quad (a "bow tie" from a misordered answer) is repaired to the
    area it encloses instead of being dropped, so a bad prediction still counts (usually
    as a false positive).
    """
    return valid_polygons(geometry.quads_to_polygons(quads))


def min_area_rectangles(polygons: np.ndarray) -> np.ndarray:
    """Each polygon's minimum-area enclosing rectangle (mmrotate's poly -> rotated box).

    A degenerate polygon (all points on a line) has no rectangle with area; it becomes an
    empty polygon, whose IoU with anything is 0.
    """
    rectangles = shapely.minimum_rotated_rectangle(polygons)
    degenerate = shapely.get_type_id(rectangles) != 3  # 3 = Polygon
    if degenerate.any():
        rectangles = rectangles.copy()
        rectangles[degenerate] = shapely.Polygon()
    return rectangles


def pairwise_iou(
    a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse IoU between two polygon arrays: (index in a, index in b, IoU) with IoU > 0.

    Pairs whose bounding boxes do not touch are never intersected; pairs that only touch
    along an edge are dropped because their IoU is 0.
    """
    empty = (np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, np.float64))
    if len(a) == 0 or len(b) == 0:
        return empty
    tree = STRtree(b)
    ia, ib = tree.query(a)
    if ia.size == 0:
        return empty
    inter = shapely.area(shapely.intersection(a[ia], b[ib]))
    union = shapely.area(a[ia]) + shapely.area(b[ib]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    keep = iou > 0
    return ia[keep].astype(np.intp), ib[keep].astype(np.intp), iou[keep]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense (len(a), len(b)) IoU matrix; convenient for small sets and for tests."""
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    ia, ib, iou = pairwise_iou(a, b)
    out[ia, ib] = iou
    return out
