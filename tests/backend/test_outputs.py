"""Vector outputs read back with pyogrio/geopandas; atomic writes; GeoJSON dict; DOTA text."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import CRS

from rscovlm.errors import UserError
from rscovlm.outputs import build_detections_gdf, to_geojson_dict, write_dota, write_vector

UTM = CRS.from_epsg(32633)


def detections(n=3, crs=UTM):
    polygons = [shapely.box(500_000 + 10 * i, 4_650_000, 500_004 + 10 * i, 4_650_002) for i in range(n)]
    labels = ["plane", "small vehicle", "ship", "storage tank"][:n]
    tiles = ["c0_r0", "c412_r0", "c824_r412"][:n]
    return build_detections_gdf(polygons, labels, [1, 2, 3][:n], tiles, [8.0, 8.0, np.nan][:n], crs,
                                scores=[0.91, np.nan, 0.25][:n])


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp", "out.geojson", "out.json"])
def test_each_format_reads_back_with_crs_and_fields(tmp_path, name):
    path = write_vector(detections(), tmp_path / name)
    back = gpd.read_file(path)
    assert back.crs is not None and back.crs.to_epsg() == 32633
    assert list(back["class"]) == ["plane", "small vehicle", "ship"]
    assert list(back["support"]) == [1, 2, 3]
    assert list(back["tile"]) == ["c0_r0", "c412_r0", "c824_r412"]
    assert back["area_m2"].iloc[0] == pytest.approx(8.0)
    assert back["score"].iloc[0] == pytest.approx(0.91) and back["score"].iloc[2] == pytest.approx(0.25)
    assert np.isnan(back["score"].iloc[1])  # an object without a score reads back as null
    assert back.geometry.iloc[1].equals(shapely.box(500_010, 4_650_000, 500_014, 4_650_002))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_shapefile_has_all_sidecars_and_no_stale_prj(tmp_path):
    write_vector(detections(), tmp_path / "d.shp")
    assert {p.suffix for p in tmp_path.iterdir()} >= {".shp", ".shx", ".dbf", ".prj", ".cpg"}
    assert CRS.from_wkt((tmp_path / "d.prj").read_text()).equals(UTM, ignore_axis_order=True)
    # rewriting without a CRS must not leave the old .prj claiming one
    write_vector(detections(crs=None), tmp_path / "d.shp")
    assert not (tmp_path / "d.prj").exists()
    assert gpd.read_file(tmp_path / "d.shp").crs is None


@pytest.mark.parametrize("name", ["empty.gpkg", "empty.shp"])
def test_empty_result_is_a_valid_layer_with_fields(tmp_path, name):
    path = write_vector(detections(0), tmp_path / name)
    info = pyogrio.read_info(path)
    assert info["features"] == 0
    assert list(info["fields"]) == ["class", "support", "tile", "area_m2", "score"]
    assert info["geometry_type"] == "Polygon"
    assert CRS.from_user_input(info["crs"]).to_epsg() == 32633


def test_empty_geojson_is_a_valid_collection(tmp_path):
    path = write_vector(detections(0), tmp_path / "empty.geojson")
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and data["features"] == []
    assert len(gpd.read_file(path)) == 0


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    with pytest.raises(UserError, match=r"\.geojson.*\.gpkg.*\.json.*\.shp"):
        write_vector(detections(), tmp_path / "out.kml")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_previous_file_and_no_debris(tmp_path):
    target = tmp_path / "d.shp"
    write_vector(detections(), target)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # A point among polygons: the shapefile layer is created as polygons and the write
    # fails on the point, half-way through the features.
    bad = detections()
    bad.loc[2, "geometry"] = shapely.Point(500_000, 4_650_000)
    with pytest.raises(UserError, match="Could not write"):
        write_vector(bad, target)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    bad = detections()
    bad.loc[2, "geometry"] = shapely.Point(500_000, 4_650_000)
    with pytest.raises(UserError):
        write_vector(bad, tmp_path / "new.shp")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_vector(detections(), tmp_path / "nowhere" / "d.gpkg")


def test_geojson_dict_names_the_crs():
    data = to_geojson_dict(detections())
    assert data["type"] == "FeatureCollection"
    assert data["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    assert CRS.from_wkt(data["crs_wkt"]).to_epsg() == 32633
    assert [f["properties"]["class"] for f in data["features"]] == ["plane", "small vehicle", "ship"]
    assert data["features"][2]["properties"]["area_m2"] is None  # NaN is not JSON
    assert [f["properties"]["score"] for f in data["features"]] == [0.91, None, 0.25]
    json.dumps(data, allow_nan=False)  # strictly valid JSON
    assert shapely.geometry.shape(data["features"][0]["geometry"]).equals(detections().geometry.iloc[0])


def test_geojson_dict_without_crs():
    data = to_geojson_dict(detections(crs=None))
    assert data["crs"] is None and data["crs_wkt"] is None and len(data["features"]) == 3


def test_dota_text(tmp_path):
    quads = np.array([[10, 20, 30.5, 20, 30.5, 40, 10, 40], [1.25, 2, 3, 4, 5, 6, 7, 8]], dtype=float)
    path = write_dota(tmp_path / "P0001.txt", quads, ["small vehicle", "plane"], difficult=[0, 1])
    lines = path.read_text().splitlines()
    assert lines == ["10 20 30.5 20 30.5 40 10 40 small-vehicle 0", "1.25 2 3 4 5 6 7 8 plane 1"]
    assert [p.name for p in tmp_path.iterdir()] == ["P0001.txt"]
    with pytest.raises(UserError):
        write_dota(tmp_path / "missing" / "x.txt", quads, ["plane", "ship"])


def test_task1_files_carry_the_scores_one_file_per_class(tmp_path):
    from rscovlm.outputs import write_task1

    quads = np.array([[10, 20, 30.5, 20, 30.5, 40, 10, 40], [1.25, 2, 3, 4, 5, 6, 7, 8]], dtype=float)
    written, note = write_task1(tmp_path, "P0001", quads, ["small vehicle", "plane"], [0.25, 0.875],
                                ["plane", "ship", "small vehicle"])
    assert note is None and sorted(p.name for p in written) == [
        "Task1_plane.txt", "Task1_ship.txt", "Task1_small-vehicle.txt"]
    assert (tmp_path / "Task1_plane.txt").read_text() == "P0001 0.875000 1.25 2 3 4 5 6 7 8\n"
    assert (tmp_path / "Task1_small-vehicle.txt").read_text() == "P0001 0.250000 10 20 30.5 20 30.5 40 10 40\n"
    assert (tmp_path / "Task1_ship.txt").read_text() == ""
    _, note = write_task1(tmp_path, "P0001", quads, ["small vehicle", "plane"], None, ["plane"])
    assert "score 1.0" in note and "mAP_nc" in note
    assert (tmp_path / "Task1_plane.txt").read_text().split()[1] == "1.000000"
    with pytest.raises(UserError, match="not an existing folder"):
        write_task1(tmp_path / "missing", "P0001", quads, ["plane", "plane"], None, ["plane"])
