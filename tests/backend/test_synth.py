"""The synthetic scene: a real tiled GeoTIFF with overviews, truth that matches it, determinism."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from rscovlm import synth
from rscovlm.cli import main
from rscovlm.errors import UserError
from rscovlm.synth import SCENE_CLASSES, make_scene


def test_scene_is_a_tiled_georeferenced_geotiff_with_overviews(synth_scene):
    raster, _truth = synth_scene
    with rasterio.open(raster) as ds:
        assert (ds.width, ds.height, ds.count) == (1200, 1200, 3)
        assert ds.dtypes == ("uint8",) * 3
        assert ds.crs.to_epsg() == 32633
        assert ds.transform.a == pytest.approx(0.5) and ds.transform.e == pytest.approx(-0.5)
        assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
        assert ds.compression.name.lower() == "deflate"
        assert ds.overviews(1) == [2, 4]
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        small = ds.read(out_shape=(3, 300, 300))
    assert small.std() > 10  # a textured scene, not a flat colour


def test_truth_has_every_class_inside_the_footprint(synth_scene):
    raster, truth = synth_scene
    gdf = gpd.read_file(truth)
    with rasterio.open(raster) as ds:
        footprint = shapely.box(*ds.bounds)
        assert gdf.crs.equals(ds.crs.to_wkt()) or gdf.crs.to_epsg() == ds.crs.to_epsg()
    assert set(gdf["class"]) == set(SCENE_CLASSES)
    assert (gdf["difficult"] == 0).all()
    assert gdf.geometry.within(footprint).all()
    assert gdf.geometry.is_valid.all()
    assert (gdf.geometry.apply(lambda g: len(g.exterior.coords)) == 5).all()  # quads
    # objects do not overlap one another
    tree = shapely.STRtree(gdf.geometry.values)
    pairs = tree.query(gdf.geometry.values, predicate="intersects")
    assert (pairs[0] == pairs[1]).all()
    # sizes are realistic at 0.5 m: a car is a few metres long, a plane tens of metres
    corners = shapely.get_coordinates(gdf.geometry.values).reshape(len(gdf), 5, 2)[:, :4]
    sides = np.linalg.norm(np.roll(corners, -1, axis=1) - corners, axis=2)
    lengths = pd.Series(sides.max(axis=1), index=gdf.index)
    cars = lengths[gdf["class"] == "small vehicle"]
    planes = lengths[gdf["class"] == "plane"]
    assert cars.between(3.5, 5.5).all() and planes.between(25, 75).all()


def test_objects_are_drawn_where_the_truth_says(synth_scene):
    """Inside a storage tank's box the pixels are bright; inside a ship's, not water-dark."""
    raster, truth = synth_scene
    gdf = gpd.read_file(truth)
    with rasterio.open(raster) as ds:
        inverse = ~ds.transform
        for cls, check in (("storage tank", lambda px: px.mean() > 150), ("plane", lambda px: px.max() > 200)):
            geom = gdf[gdf["class"] == cls].geometry.iloc[0]
            col, row = inverse @ (geom.centroid.x, geom.centroid.y)
            window = rasterio.windows.Window(int(col) - 2, int(row) - 2, 4, 4)
            assert check(ds.read(window=window)), cls


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    def pixels(name, seed):
        raster = tmp_path / f"{name}.tif"
        make_scene(raster, tmp_path / f"{name}.geojson", size=400, seed=seed)
        with rasterio.open(raster) as ds:
            return ds.read()

    first, again, other = pixels("a", 11), pixels("b", 11), pixels("c", 12)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    truth_a = gpd.read_file(tmp_path / "a.geojson")
    truth_b = gpd.read_file(tmp_path / "b.geojson")
    assert truth_a.geometry.equals(truth_b.geometry)


def test_chunks_join_exactly(tmp_path):
    """Any window renders the same pixels: chunked rendering has no seams."""
    scene = synth._layout(1200, 0.5, 7)
    a = synth._render_chunk(scene, 500, 301, 301, 300, scene.objects)
    b = synth._render_chunk(scene, 601, 400, 300, 301, scene.objects)
    np.testing.assert_array_equal(a[99:, 101:], b[:201, :200])


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="projected"):
        make_scene(tmp_path / "s.tif", tmp_path / "t.gpkg", size=300, crs="EPSG:4326")
    with pytest.raises(UserError, match="size"):
        make_scene(tmp_path / "s.tif", tmp_path / "t.gpkg", size=10)
    with pytest.raises(UserError, match=r"\.gpkg"):
        make_scene(tmp_path / "s.tif", tmp_path / "t.csv", size=300)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_files_and_counts(tmp_path, capsys):
    raster, truth = tmp_path / "cli.tif", tmp_path / "cli.shp"
    code = main(["synth", str(raster), "--truth", str(truth), "--size", "600", "--seed", "2",
                 "--crs", "EPSG:32610", "--gsd", "0.6"])
    assert code == 0
    out = capsys.readouterr().out
    assert str(raster) in out and "plane:" in out and "small vehicle:" in out
    with rasterio.open(raster) as ds:
        assert ds.crs.to_epsg() == 32610 and ds.transform.a == pytest.approx(0.6)
    gdf = gpd.read_file(truth)
    assert gdf.crs.to_epsg() == 32610
    total = int(out.split("wrote " + str(truth) + ": ")[1].split()[0])
    assert total == len(gdf)
    assert main(["synth", str(raster), "--truth", str(truth), "--crs", "EPSG:4326"]) == 2


# ----------------------------------------------------------------------------- density

# The default scene's truth before dense scenes existed (seed 7, 1200 px: the session's
# synth_scene): coordinates to the millimetre, classes and difficult flags.
NORMAL_TRUTH_SHA256 = "7b8a73947ef534bb4b95ef4b508e3995ddbfb20df62aa2b20849a29bc8898293"


def _truth_digest(gdf) -> str:
    import hashlib

    digest = hashlib.sha256()
    digest.update(np.round(shapely.get_coordinates(gdf.geometry.values), 3).tobytes())
    digest.update("|".join(gdf["class"]).encode())
    digest.update(np.asarray(gdf["difficult"], dtype=np.int64).tobytes())
    return digest.hexdigest()


def test_the_default_density_leaves_the_truth_as_it_was(synth_scene):
    _raster, truth = synth_scene
    gdf = gpd.read_file(truth)
    assert list(gdf.columns) == ["class", "difficult", "geometry"] and len(gdf) == 62
    assert _truth_digest(gdf) == NORMAL_TRUTH_SHA256
    with rasterio.open(_raster) as ds:
        assert "SYNTH_DENSITY" not in ds.tags()


def test_dense_scenes_have_tiles_with_a_hundred_objects(tmp_path, capsys):
    from rscovlm.tiling import tile_windows

    raster, truth = tmp_path / "dense.tif", tmp_path / "dense.gpkg"
    assert main(["synth", str(raster), "--truth", str(truth), "--size", "1024", "--density", "dense"]) == 0
    assert "objects (dense)" in capsys.readouterr().out
    gdf = gpd.read_file(truth)
    assert list(gdf.columns) == ["class", "difficult", "geometry"]  # the same fields as a normal scene
    with rasterio.open(raster) as ds:
        assert ds.tags()["SYNTH_DENSITY"] == "dense"
        footprint = shapely.box(*ds.bounds)
        centres = shapely.get_coordinates(gdf.geometry.centroid.values)
        cols, rows = ~ds.transform @ (centres[:, 0], centres[:, 1])
        counts = [
            int(((cols >= w.col_off) & (cols < w.col_end) & (rows >= w.row_off) & (rows < w.row_end)).sum())
            for w in tile_windows(ds.width, ds.height, 512, 100)
        ]
    assert max(counts) >= 100, counts
    assert set(gdf["class"]) >= {"ship", "small vehicle"} and gdf.geometry.within(footprint).all()
    tree = shapely.STRtree(gdf.geometry.values)  # packed, yet no two objects overlap
    pairs = tree.query(gdf.geometry.values, predicate="intersects")
    assert (pairs[0] == pairs[1]).all()
    corners = shapely.get_coordinates(gdf.geometry.values).reshape(len(gdf), 5, 2)[:, :4]
    lengths = np.linalg.norm(np.roll(corners, -1, axis=1) - corners, axis=2).max(axis=1)
    assert pd.Series(lengths[gdf["class"] == "small vehicle"]).between(3.5, 5.5).all()


def test_an_unknown_density_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="density"):
        make_scene(tmp_path / "s.tif", tmp_path / "t.gpkg", size=300, density="crowded")
    assert list(tmp_path.iterdir()) == []
