"""Image pixels to map coordinates, and polygon areas in square metres.

Pixel coordinates follow GDAL's convention: (0, 0) is the top-left CORNER of the top-left
pixel, x grows to the right (columns), y grows down (rows). The geotransform is applied in
full, rotation and shear terms included, because rasters from some satellites and
georeferencers are not north-up and dropping those terms silently shifts every polygon.

Areas are what a GIS user expects to read in an attribute table: planar area in a
projected CRS (converted from the CRS's linear unit to metres), geodesic area on the
CRS's own ellipsoid in a geographic CRS (planar "square degrees" would be meaningless),
and NaN when the raster has no CRS.

A raster placed by ground control points or RPCs instead of a geotransform has no affine
that says where its pixels are; ``RasterSource`` then gives a :class:`PointMapping` (GDAL's
own GCP or RPC transformer) as its ``transform``, and every function here takes either.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

__all__ = [
    "PointMapping",
    "map_to_pixel",
    "pixel_polygons_to_map",
    "pixel_to_map",
    "points_to_pixel",
    "polygon_areas_m2",
]


@runtime_checkable
class PointMapping(Protocol):
    """Pixel <-> map coordinates that no affine describes (GCPs, RPCs).

    Pixel coordinates follow the module's convention (corner of the top-left pixel at
    0, 0); arrays are 1-D float64 of equal length, and a point that cannot be mapped
    comes back as NaN.
    """

    def pixel_to_map(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def map_to_pixel(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


Transform = Affine | PointMapping


def _apply(xy: np.ndarray, transform: Transform, inverse: bool = False) -> np.ndarray:
    """Map an (..., 2) array of points through the full affine (or the point mapping)."""
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    out = np.empty_like(xy, dtype=np.float64)
    if isinstance(transform, Affine):
        t = ~transform if inverse else transform
        out[..., 0] = t.a * x + t.b * y + t.c
        out[..., 1] = t.d * x + t.e * y + t.f
        return out
    if not isinstance(transform, PointMapping):
        raise TypeError(f"transform must be an affine.Affine or a PointMapping, not {type(transform).__name__}")
    if xy.size == 0:
        return out
    convert = transform.map_to_pixel if inverse else transform.pixel_to_map
    u, v = convert(x.reshape(-1), y.reshape(-1))
    out[..., 0] = np.asarray(u, dtype=np.float64).reshape(x.shape)
    out[..., 1] = np.asarray(v, dtype=np.float64).reshape(y.shape)
    return out


def _quads(quads: np.ndarray) -> np.ndarray | None:
    quads = np.asarray(quads, dtype=np.float64)
    if quads.size == 0:
        return None
    if quads.ndim != 2 or quads.shape[1] != 8:
        raise ValueError(f"quads must have shape (N, 8); got {quads.shape}")
    return quads


def pixel_to_map(quads_img: np.ndarray, transform: Transform) -> np.ndarray:
    """Quads (N, 8) in image pixels -> the same quads (N, 8) in the raster's map CRS."""
    quads = _quads(quads_img)
    if quads is None:
        return np.zeros((0, 8), dtype=np.float64)
    return _apply(quads.reshape(-1, 4, 2), transform).reshape(-1, 8)


def map_to_pixel(quads_map: np.ndarray, transform: Transform) -> np.ndarray:
    """Quads (N, 8) in the raster's map CRS -> image pixels (the inverse of pixel_to_map)."""
    quads = _quads(quads_map)
    if quads is None:
        return np.zeros((0, 8), dtype=np.float64)
    return _apply(quads.reshape(-1, 4, 2), transform, inverse=True).reshape(-1, 8)


def points_to_pixel(xs: Any, ys: Any, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Map points (1-D arrays in the raster's CRS) -> (cols, rows) in image pixels."""
    xy = np.column_stack([np.ravel(xs), np.ravel(ys)]).astype(np.float64)
    out = _apply(xy, transform, inverse=True)
    return out[:, 0], out[:, 1]


def pixel_polygons_to_map(polygons: Any, transform: Transform) -> np.ndarray:
    """Shapely geometries in image pixels -> geometries in map coordinates (vectorised)."""
    geoms = np.asarray(polygons, dtype=object)
    return shapely.transform(geoms, lambda xy: _apply(xy, transform))


def _linear_unit_to_metres(crs: CRS) -> float:
    """Metres per unit of the CRS's first axis (1.0 for metres, 0.3048 for feet)."""
    for axis in crs.axis_info:
        factor = axis.unit_conversion_factor
        if factor and math.isfinite(factor):
            return float(factor)
    return 1.0


def _geodesic_areas(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Geodesic areas on the CRS's ellipsoid; coordinates are lon/lat in the CRS's angle unit."""
    geod = crs.get_geod()
    if geod is None:  # a CRS without an ellipsoid: fall back to WGS 84, the common case
        geod = CRS.from_epsg(4326).get_geod()
    # Rasters store geographic coordinates as x = longitude, y = latitude (GIS order),
    # possibly in grads or radians: convert the angle unit to degrees first.
    radians_per_unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    to_degrees = math.degrees(radians_per_unit) if radians_per_unit else 1.0
    areas = np.full(len(geoms), np.nan)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            areas[i] = 0.0
            continue
        if to_degrees != 1.0:
            geom = shapely.transform(geom, lambda xy: xy * to_degrees)
        area, _perimeter = geod.geometry_area_perimeter(geom)
        areas[i] = abs(area)
    return areas


def polygon_areas_m2(polygons: Any, crs: CRS | None) -> np.ndarray:
    """Area of each polygon (in the map CRS) in square metres; NaN without a CRS."""
    geoms = np.asarray(polygons, dtype=object).reshape(-1)
    if crs is None:
        return np.full(len(geoms), np.nan)
    crs = CRS.from_user_input(crs)
    if crs.is_bound and crs.source_crs is not None:  # CRS with a TOWGS84 clause
        crs = crs.source_crs
    if crs.is_compound:  # horizontal + vertical: the horizontal part carries the area
        crs = crs.sub_crs_list[0]
    if crs.is_geographic:
        return _geodesic_areas(geoms, crs)
    planar = shapely.area(geoms).astype(np.float64)
    return planar * _linear_unit_to_metres(crs) ** 2
