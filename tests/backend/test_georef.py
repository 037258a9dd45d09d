"""pixel -> map coordinates against GDAL itself, and areas against independent formulas."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS

from rscovlm.georef import (
    PointMapping,
    map_to_pixel,
    pixel_polygons_to_map,
    pixel_to_map,
    points_to_pixel,
    polygon_areas_m2,
)

ROTATED = Affine(0.48, 0.21, 512_345.0, 0.13, -0.52, 4_650_100.0)  # rotation + shear
GEOGRAPHIC = Affine(0.0005, 0.0, 14.25, 0.0, -0.0004, 45.75)


def _write(path, transform, crs):
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=48, count=1, dtype="uint8",
        transform=transform, crs=crs,
    ) as dst:
        dst.write(np.zeros((1, 48, 64), dtype=np.uint8))
    return path


QUADS = np.array(
    [
        [0.0, 0.0, 64.0, 0.0, 64.0, 48.0, 0.0, 48.0],
        [10.25, 3.5, 20.75, 7.0, 18.0, 30.5, 2.125, 25.0],
    ]
)


@pytest.mark.parametrize(
    "transform, crs", [(ROTATED, "EPSG:32633"), (GEOGRAPHIC, "EPSG:4326")], ids=["rotated-utm", "wgs84"]
)
def test_pixel_to_map_matches_rasterio(tmp_path, transform, crs):
    path = _write(tmp_path / "r.tif", transform, crs)
    mapped = pixel_to_map(QUADS, transform).reshape(-1, 2)
    with rasterio.open(path) as ds:
        # integer pixel corners through GDAL's own geotransform read back from the file
        rows, cols = QUADS[0, 1::2].astype(int), QUADS[0, 0::2].astype(int)
        xs, ys = ds.xy(rows, cols, offset="ul")
        np.testing.assert_allclose(mapped[:4, 0], xs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(mapped[:4, 1], ys, rtol=0, atol=1e-9)
        fx, fy = ds.transform @ (QUADS[1, 0::2], QUADS[1, 1::2])
        np.testing.assert_allclose(mapped[4:, 0], fx, atol=1e-9)
        np.testing.assert_allclose(mapped[4:, 1], fy, atol=1e-9)


@pytest.mark.skipif(shutil.which("gdaltransform") is None, reason="gdaltransform is not installed")
@pytest.mark.parametrize(
    "transform, crs", [(ROTATED, "EPSG:32633"), (GEOGRAPHIC, "EPSG:4326")], ids=["rotated-utm", "wgs84"]
)
def test_pixel_to_map_matches_gdaltransform(tmp_path, transform, crs):
    path = _write(tmp_path / "r.tif", transform, crs)
    points = QUADS.reshape(-1, 2)
    stdin = "".join(f"{x} {y}\n" for x, y in points)
    result = subprocess.run(
        ["gdaltransform", str(path)], input=stdin, capture_output=True, text=True, check=True, timeout=60
    )
    expected = np.array([[float(v) for v in line.split()[:2]] for line in result.stdout.strip().splitlines()])
    mapped = pixel_to_map(QUADS, transform).reshape(-1, 2)
    tolerance = 1e-6 if crs == "EPSG:32633" else 1e-9
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=tolerance)


def test_polygons_follow_the_same_affine():
    polygons = np.array([shapely.Polygon(q.reshape(4, 2)) for q in QUADS])
    mapped = pixel_polygons_to_map(polygons, ROTATED)
    expected = pixel_to_map(QUADS, ROTATED)
    for geom, quad in zip(mapped, expected):
        np.testing.assert_allclose(np.asarray(geom.exterior.coords)[:4].ravel(), quad, atol=1e-9)


def test_pixel_to_map_empty_and_bad_shape():
    assert pixel_to_map(np.zeros((0, 8)), ROTATED).shape == (0, 8)
    with pytest.raises(ValueError):
        pixel_to_map(np.zeros((2, 6)), ROTATED)


def _ellipsoidal_cell_area(lat1, lat2, dlon_deg, a=6378137.0, f=1 / 298.257223563):
    """Area of a lat/lon cell on an ellipsoid (closed form with the authalic integrand)."""
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    b2 = a * a * (1 - e2)

    def q(lat):
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return math.radians(dlon_deg) * b2 / 2 * (q(lat2) - q(lat1))


def test_geodesic_area_of_a_degree_cell():
    box = shapely.box(0, 0, 1, 1)
    assert polygon_areas_m2([box], CRS.from_epsg(4326))[0] == pytest.approx(12_309e6, rel=1e-4)
    # Edges between vertices are geodesics; densified, they follow the parallels of the
    # closed-form cell, which the areas must then match closely.
    cells = shapely.segmentize([box, shapely.box(10, 60, 11, 61)], 0.005)
    areas = polygon_areas_m2(cells, CRS.from_epsg(4326))
    assert areas[0] == pytest.approx(_ellipsoidal_cell_area(0, 1, 1), rel=1e-6)
    assert areas[1] == pytest.approx(_ellipsoidal_cell_area(60, 61, 1), rel=1e-6)


def test_planar_area_uses_the_linear_unit():
    square = shapely.box(0, 0, 100, 100)
    utm = polygon_areas_m2([square], CRS.from_epsg(32633))
    assert utm[0] == pytest.approx(10_000.0)
    us_feet = polygon_areas_m2([square], CRS.from_epsg(2229))  # NAD83 / California zone 5, US ft
    assert us_feet[0] == pytest.approx(10_000 * (1200 / 3937) ** 2, rel=1e-9)


def test_no_crs_gives_nan():
    areas = polygon_areas_m2([shapely.box(0, 0, 2, 2)], None)
    assert areas.shape == (1,) and np.isnan(areas[0])


class _Bent:
    """A PointMapping no affine describes: x grows with the square of the column."""

    def pixel_to_map(self, cols, rows):
        return 1000.0 + 0.01 * np.asarray(cols) ** 2, 5000.0 - 2.0 * np.asarray(rows)

    def map_to_pixel(self, xs, ys):
        return np.sqrt((np.asarray(xs) - 1000.0) / 0.01), (5000.0 - np.asarray(ys)) / 2.0


def test_a_point_mapping_is_applied_point_by_point_and_inverted():
    bent = _Bent()
    assert isinstance(bent, PointMapping)
    mapped = pixel_to_map(QUADS, bent)
    xs, ys = bent.pixel_to_map(QUADS[:, 0::2], QUADS[:, 1::2])
    np.testing.assert_allclose(mapped[:, 0::2], xs)
    np.testing.assert_allclose(mapped[:, 1::2], ys)
    np.testing.assert_allclose(map_to_pixel(mapped, bent), QUADS, atol=1e-9)
    cols, rows = points_to_pixel(mapped[0, 0::2], mapped[0, 1::2], bent)
    np.testing.assert_allclose(np.column_stack([cols, rows]).ravel(), QUADS[0], atol=1e-9)
    polygons = pixel_polygons_to_map(np.array([shapely.Polygon(q.reshape(4, 2)) for q in QUADS]), bent)
    for geom, quad in zip(polygons, mapped):
        np.testing.assert_allclose(np.asarray(geom.exterior.coords)[:4].ravel(), quad, atol=1e-9)
    assert pixel_to_map(np.zeros((0, 8)), bent).shape == (0, 8)


def test_map_to_pixel_inverts_the_full_affine():
    np.testing.assert_allclose(map_to_pixel(pixel_to_map(QUADS, ROTATED), ROTATED), QUADS, atol=1e-6)
    assert map_to_pixel(np.zeros((0, 8)), ROTATED).shape == (0, 8)


def test_anything_else_as_a_transform_is_a_type_error():
    with pytest.raises(TypeError, match="Affine or a PointMapping"):
        pixel_to_map(QUADS, (0.5, 0.0, 100.0, 0.0, -0.5, 200.0))
    with pytest.raises(TypeError):
        map_to_pixel(QUADS, None)


def test_compound_crs_areas_use_the_horizontal_part():
    square = shapely.box(0, 0, 100, 100)
    assert polygon_areas_m2([square], CRS.from_user_input("EPSG:32618+5773"))[0] == pytest.approx(10_000.0)
