"""Quadrilaterals as (N, 8) arrays: vertex order, areas, polygons, overlaps, rectangles.

Everything is vectorised over N (numpy, shapely 2 ufuncs) because a large scene yields
tens of thousands of detections. Coordinates are image-like: x right, y DOWN, so
"clockwise" means clockwise as seen on screen, and the shoelace sum of a clockwise quad
is positive.
"""

from __future__ import annotations

import numpy as np
import shapely

from rscovlm.tiling import Window

__all__ = [
    "order_quad",
    "order_quads",
    "signed_areas",
    "quad_areas",
    "quads_to_polygons",
    "valid_polygons",
    "pair_overlaps",
    "min_area_rect",
    "touches_inner_edge",
]


def _as_quads(quads) -> np.ndarray:
    arr = np.asarray(quads, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 8)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.shape[1] != 8:
        raise ValueError(f"expected quads of shape (N, 8), got {arr.shape}")
    return arr


def order_quads(quads) -> np.ndarray:
    """Vertices sorted clockwise around their centroid, starting at min y (ties: min x).

    This is RSCoVLM's answer convention; sorting by angle also untangles a bow-tie.
    """
    arr = _as_quads(quads)
    pts = arr.reshape(-1, 4, 2)
    centre = pts.mean(axis=1, keepdims=True)
    angle = np.arctan2(pts[..., 1] - centre[..., 1], pts[..., 0] - centre[..., 0])
    by_angle = np.argsort(angle, axis=1, kind="stable")  # ascending angle = clockwise, y down
    pts = np.take_along_axis(pts, by_angle[..., None], axis=1)
    start = _lex_first(pts)
    roll = (np.arange(4)[None, :] + start[:, None]) % 4
    pts = np.take_along_axis(pts, roll[..., None], axis=1)
    return pts.reshape(-1, 8)


def _lex_first(pts: np.ndarray) -> np.ndarray:
    """Index of the vertex with the smallest y, ties smallest x, for each quad (vectorised)."""
    y, x = pts[..., 1], pts[..., 0]
    min_y = y.min(axis=1, keepdims=True)
    x_on_min_y = np.where(y == min_y, x, np.inf)
    return np.argmin(x_on_min_y, axis=1)


def order_quad(quad) -> np.ndarray:
    """One quad (8 values) in RSCoVLM's vertex order."""
    return order_quads(np.asarray(quad, dtype=np.float64).reshape(1, 8))[0]


def signed_areas(quads) -> np.ndarray:
    """Shoelace areas; positive for clockwise (on screen) vertex order."""
    pts = _as_quads(quads).reshape(-1, 4, 2)
    x, y = pts[..., 0], pts[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)


def quad_areas(quads) -> np.ndarray:
    """Areas of simple quads (px²)."""
    return np.abs(signed_areas(quads))


def quads_to_polygons(quads) -> np.ndarray:
    """Shapely polygons, one per quad, built in one vectorised call."""
    arr = _as_quads(quads)
    if len(arr) == 0:
        return np.empty(0, dtype=object)
    return shapely.polygons(arr.reshape(-1, 4, 2))


def valid_polygons(polygons: np.ndarray) -> np.ndarray:
    """Polygons GEOS can intersect safely: invalid ones (bow-ties) go through make_valid."""
    polygons = np.asarray(polygons, dtype=object)
    bad = ~shapely.is_valid(polygons)
    if bad.any():
        polygons = polygons.copy()
        polygons[bad] = shapely.make_valid(polygons[bad])
    return polygons


def pair_overlaps(
    polygons: np.ndarray, areas: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection area, IoU and IOS (intersection over the smaller area) for pairs (i, j)."""
    i, j = np.asarray(i, dtype=np.intp), np.asarray(j, dtype=np.intp)
    if len(i) == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    inter = shapely.area(shapely.intersection(polygons[i], polygons[j]))
    a_i, a_j = areas[i], areas[j]
    union = a_i + a_j - inter
    smaller = np.minimum(a_i, a_j)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        ios = np.where(smaller > 0, inter / smaller, 0.0)
    return inter, iou, ios


def min_area_rect(quads) -> np.ndarray:
    """Minimum-area enclosing rectangles as ordered quads (mmrotate converts ground truth so).

    Degenerate inputs (a segment or a point) give their axis-aligned bounds, which may have
    zero width.
    """
    arr = _as_quads(quads)
    out = np.empty_like(arr)
    if len(arr) == 0:
        return out
    env = shapely.oriented_envelope(quads_to_polygons(arr))
    is_poly = shapely.get_type_id(env) == 3
    if is_poly.any():
        ring = shapely.get_coordinates(shapely.get_exterior_ring(env[is_poly]))
        n_coords = shapely.get_num_coordinates(env[is_poly])
        if np.all(n_coords == 5):
            out[is_poly] = ring.reshape(-1, 5, 2)[:, :4, :].reshape(-1, 8)
        else:  # rare: GEOS returned a ring with extra points; fall back per polygon
            for k, geom in zip(np.flatnonzero(is_poly), env[is_poly]):
                out[k] = _rect_from_polygon(geom)
    for k in np.flatnonzero(~is_poly):
        x0, y0, x1, y1 = shapely.bounds(env[k])
        out[k] = [x0, y0, x1, y0, x1, y1, x0, y1]
    return order_quads(out)


def _rect_from_polygon(geom) -> np.ndarray:
    coords = np.asarray(geom.exterior.coords)[:-1]
    if len(coords) >= 4:
        return coords[:4].reshape(8)
    x0, y0, x1, y1 = geom.bounds
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)


def touches_inner_edge(
    quads_img, window: Window, image_wh: tuple[int, int], margin: float = 2.0
) -> np.ndarray:
    """True where a quad comes within ``margin`` px of a window edge inside the image.

    Such an edge cuts the scene, so the object may continue in the neighbouring tile and
    the detection may be a truncated piece. Edges on the image border cut nothing.
    """
    arr = _as_quads(quads_img)
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    xs, ys = arr[:, 0::2], arr[:, 1::2]
    image_w, image_h = image_wh
    near = np.zeros(len(arr), dtype=bool)
    if window.col_off > 0:
        near |= xs.min(axis=1) <= window.col_off + margin
    if window.col_end < image_w:
        near |= xs.max(axis=1) >= window.col_end - margin
    if window.row_off > 0:
        near |= ys.min(axis=1) <= window.row_off + margin
    if window.row_end < image_h:
        near |= ys.max(axis=1) >= window.row_end - margin
    return near
