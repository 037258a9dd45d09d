"""The detection path end to end: real GeoTIFFs, the real tiny model, and GDAL as the judge."""

from __future__ import annotations

import json
import shutil
import subprocess

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Geod
from shapely.geometry import box

from rscovlm.cli import main as cli
from rscovlm.engines.scripted import ScriptedEngine
from rscovlm.errors import UserError
from rscovlm.outputs import to_geojson_dict
from rscovlm.pipelines.detect import DetectOptions, detect, detect_from_responses
from rscovlm.responses import ResponseRecord, ResponsesWriter


def write_raster(path, width, height, *, count=3, dtype="uint8", crs="EPSG:32633", transform=None,
                 nodata=None, fill=None, colorinterp=None):
    rng = np.random.default_rng(0)
    if fill is None:
        data = rng.integers(20, 200, size=(count, height, width)).astype(dtype)
    else:
        data = np.full((count, height, width), fill, dtype=dtype)
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype,
                   transform=transform or Affine(0.5, 0, 500000, 0, -0.5, 4000000), tiled=True,
                   blockxsize=256, blockysize=256)
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


def write_responses(path, records):
    with ResponsesWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def quad_text(points, label):
    return ",".join(f"{x},{y}" for x, y in points) + f" {label}"


def gdal_transform(raster, pixels):
    """Ask GDAL's own command line where pixel/line positions land in the raster's CRS."""
    text = "\n".join(f"{x} {y}" for x, y in pixels)
    out = subprocess.run(["gdaltransform", str(raster)], input=text, capture_output=True, text=True, check=True)
    return np.array([[float(v) for v in line.split()[:2]] for line in out.stdout.strip().splitlines()])


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    from rscovlm.engines import create_engine

    return create_engine(str(tiny_model_dir), device="cpu", batch_size=4)


# ----------------------------------------------------------------------------- live runs


def test_cli_detect_with_tiny_model_writes_vector_in_raster_crs(synth_scene, tiny_model_dir, tmp_path, capsys):
    raster, _truth = synth_scene
    out, responses = tmp_path / "det.gpkg", tmp_path / "responses.jsonl"
    code = cli(["detect", str(raster), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                "--max-new-tokens", "12", "--responses-out", str(responses)])
    assert code == 0
    gdf = gpd.read_file(out)
    with rasterio.open(raster) as src:
        assert CRS.from_user_input(gdf.crs) == CRS.from_user_input(src.crs)
        footprint = box(*src.bounds)
        tiles = 9  # 1200 px, 512/100: starts 0, 412, 688 on each axis
    assert {"class", "support", "tile", "area_m2"} <= set(gdf.columns)
    assert all(footprint.buffer(1e-6).contains(g) for g in gdf.geometry)
    header, *lines = [json.loads(line) for line in responses.read_text().splitlines()]
    assert header["rscovlm_responses"] == 2 and header["tile_size"] == 512 and header["max_new_tokens"] == 12
    assert len(lines) == tiles  # the random model's cut answers hold no object lines: nothing to split
    assert set(lines[0]) == {"col_off", "row_off", "width", "height", "input_width", "input_height", "response",
                             "finished", "split", "tokens", "logprobs"}
    assert (lines[0]["input_width"], lines[0]["input_height"]) == (504, 504)
    assert not lines[0]["finished"] and lines[0]["tokens"] == 12 and not lines[0]["split"]
    assert len(lines[0]["logprobs"]) == 12 and all(lp <= 0 for _, lp in lines[0]["logprobs"])
    assert "Wrote" in capsys.readouterr().out


def test_all_nodata_tiles_are_never_sent_to_the_model(tmp_path):
    raster = write_raster(tmp_path / "holes.tif", 900, 500, nodata=0)
    with rasterio.open(raster, "r+") as dst:  # the left part holds no data
        for band in (1, 2, 3):
            data = dst.read(band)
            data[:, :520] = 0  # tile 0 spans columns 0-511
            dst.write(data, band)

    engine = ScriptedEngine("There are none.", batch_size=4)
    result = detect(raster, engine, DetectOptions())
    assert result.tiles_total == 2 and result.tiles_skipped_nodata == 1
    assert engine.request_count == 1
    assert engine.requests[0].windows == ((388, 0, 512, 500),)  # the tile with data, told to the engine
    assert any("nodata" in w for w in result.warnings)


@pytest.mark.parametrize(
    "kind",
    ["uint16-bgra", "one-band-nodata", "float-nan-no-crs", "geographic"],
)
def test_real_world_raster_kinds_run_with_the_tiny_model(kind, tmp_path, tiny_engine):
    path = tmp_path / f"{kind}.tif"
    if kind == "uint16-bgra":
        write_raster(path, 600, 300, count=4, dtype="uint16", colorinterp=[
            rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.alpha])
    elif kind == "one-band-nodata":
        write_raster(path, 300, 300, count=1, crs="EPSG:3857", nodata=255)
    elif kind == "float-nan-no-crs":
        write_raster(path, 200, 100, count=1, dtype="float32", crs=None, transform=Affine.identity())
    else:
        write_raster(path, 300, 200, crs="EPSG:4326", transform=Affine(0.0001, 0, 10.0, 0, -0.0001, 45.0))
    result = detect(path, tiny_engine, DetectOptions(max_new_tokens=8))
    assert result.tiles_total >= 1
    assert list(result.gdf.columns)[:4] == ["class", "support", "tile", "area_m2"]
    if kind == "float-nan-no-crs":
        assert result.crs is None or result.gdf.crs is None
        assert any("no georeference" in w for w in result.warnings)


# ----------------------------------------------------------------------------- replay


def rotated_raster(tmp_path):
    # A rotated and sheared geotransform: GDAL must agree with us at every vertex.
    transform = Affine(0.42, 0.17, 600000.0, 0.11, -0.47, 5200000.0)
    return write_raster(tmp_path / "rotated.tif", 900, 700, transform=transform)


def test_replayed_polygons_land_where_gdal_says(tmp_path):
    raster = rotated_raster(tmp_path)
    # One plane in the tile at (388, 0) — the second column (900 px: starts 0, 388).
    # The model saw a 504x504 input of a 512x512 tile, so x_img = x * 512 / 504 + col_off.
    quad = [(100, 50), (300, 80), (280, 200), (90, 170)]
    responses = write_responses(tmp_path / "r.jsonl", [
        ResponseRecord(388, 0, 512, 512, 504, 504, quad_text(quad, "plane")),
    ])
    result = detect_from_responses(raster, responses)
    assert len(result.gdf) == 1 and result.gdf["class"][0] == "plane"
    expected_px = [(388 + x * 512 / 504, 0 + y * 512 / 504) for x, y in quad]
    expected_map = gdal_transform(raster, expected_px) if shutil.which("gdaltransform") else None
    with rasterio.open(raster) as src:
        by_rasterio = np.array([src.transform @ p for p in expected_px])
    got = np.array(result.gdf.geometry[0].exterior.coords)[:4]
    # Same vertex set (the output ring may start elsewhere): compare sorted rows.
    order = np.lexsort(got.T[::-1])
    np.testing.assert_allclose(got[order], by_rasterio[np.lexsort(by_rasterio.T[::-1])], atol=1e-6)
    if expected_map is not None:
        np.testing.assert_allclose(got[order], expected_map[np.lexsort(expected_map.T[::-1])], atol=1e-3)


def test_replay_merges_the_same_object_seen_by_two_tiles(tmp_path):
    raster = write_raster(tmp_path / "plain.tif", 900, 512)
    # A ship at image x 420..480 lies in both tiles (0 and 388). Model coords = img * 504 / 512.
    s = 504 / 512
    img_quad = [(420, 100), (480, 100), (480, 140), (420, 140)]
    in_tile0 = [(x * s, y * s) for x, y in img_quad]
    in_tile1 = [((x - 388) * s, y * s) for x, y in img_quad]
    responses = write_responses(tmp_path / "r.jsonl", [
        ResponseRecord(0, 0, 512, 512, 504, 504, quad_text([(round(x), round(y)) for x, y in in_tile0], "ship")),
        ResponseRecord(388, 0, 512, 512, 504, 504, quad_text([(round(x), round(y)) for x, y in in_tile1], "ship")),
    ])
    result = detect_from_responses(raster, responses)
    assert len(result.gdf) == 1
    assert result.gdf["support"][0] == 2
    np.testing.assert_allclose(result.gdf["area_m2"][0], 60 * 40 * 0.25, rtol=0.06)


def test_cli_replay_and_dota_export(tmp_path):
    raster = write_raster(tmp_path / "plain.tif", 600, 600)
    responses = write_responses(tmp_path / "r.jsonl", [
        ResponseRecord(0, 0, 512, 512, 504, 504, "10,10,60,10,60,40,10,40 small vehicle\n100,100,150,100"),
        ResponseRecord(88, 88, 512, 512, 504, 504, "There are none."),
    ])
    out, dota = tmp_path / "out.shp", tmp_path / "out.txt"
    assert cli(["detect", str(raster), "-o", str(out), "--from-responses", str(responses),
                "--dota-out", str(dota)]) == 0
    gdf = gpd.read_file(out)
    assert len(gdf) == 1 and (tmp_path / "out.prj").exists()
    assert CRS.from_user_input(gdf.crs).to_epsg() == 32633
    assert dota.read_text().split()[8] in ("small-vehicle", "small vehicle", "small")


def test_geographic_raster_areas_are_square_metres(tmp_path):
    transform = Affine(0.0001, 0, 10.0, 0, -0.0001, 45.0)
    raster = write_raster(tmp_path / "geo.tif", 512, 512, crs="EPSG:4326", transform=transform)
    quad = [(0, 0), (504, 0), (504, 504), (0, 504)]
    responses = write_responses(tmp_path / "r.jsonl", [ResponseRecord(0, 0, 512, 512, 504, 504, quad_text(quad, "harbor"))])
    result = detect_from_responses(raster, responses)
    lon0, lat0, lon1, lat1 = 10.0, 45.0 - 0.0512, 10.0512, 45.0
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter([lon0, lon1, lon1, lon0], [lat0, lat0, lat1, lat1])[0])
    np.testing.assert_allclose(result.gdf["area_m2"][0], expected, rtol=1e-3)


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_give_sentences_and_exit_2(tmp_path, capsys):
    raster = write_raster(tmp_path / "plain.tif", 300, 300)
    assert cli(["detect", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.gpkg"), "--model", "m"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["detect", str(raster), "-o", str(tmp_path / "x.kml"), "--model", "m"]) == 2
    assert "extension" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 definitely not a tiff")
    assert cli(["detect", str(corrupt), "-o", str(tmp_path / "x.gpkg"), "--from-responses", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    foreign = write_responses(tmp_path / "foreign.jsonl", [ResponseRecord(800, 0, 512, 512, 504, 504, "There are none.")])
    with pytest.raises(UserError, match="another raster"):
        detect_from_responses(raster, foreign)
    assert not (tmp_path / "x.gpkg").exists()


def _with_logprobs(record: ResponseRecord, logprob: float) -> ResponseRecord:
    """The record as an engine giving every token ``logprob`` would have written it (end token included)."""
    from dataclasses import replace

    from rscovlm.engines.scripted import token_pieces

    pieces = [*token_pieces(record.response), "<|im_end|>"]
    return replace(record, logprobs=tuple((p, logprob) for p in pieces))


def test_scores_choose_the_sighting_kept_and_reach_every_output(tmp_path, capsys):
    raster = write_raster(tmp_path / "plain.tif", 900, 512)
    s = 504 / 512
    loose = [(415, 95), (485, 95), (485, 145), (415, 145)]  # tile 0's sighting: larger, less sure
    tight = [(420, 100), (480, 100), (480, 140), (420, 140)]  # tile 1's: smaller, surer
    records = [
        ResponseRecord(0, 0, 512, 512, 504, 504, quad_text([(round(x * s), round(y * s)) for x, y in loose], "ship")),
        ResponseRecord(388, 0, 512, 512, 504, 504,
                       quad_text([(round((x - 388) * s), round(y * s)) for x, y in tight], "ship")),
    ]
    plain = detect_from_responses(raster, write_responses(tmp_path / "plain.jsonl", records))
    scored_path = write_responses(tmp_path / "scored.jsonl",
                                  [_with_logprobs(records[0], -0.5), _with_logprobs(records[1], -0.05)])
    scored = detect_from_responses(raster, scored_path)  # by default the merge keeps its score-free survivor
    by_score = detect_from_responses(raster, scored_path, DetectOptions.build(merge_by_score=True))
    assert len(plain.gdf) == len(scored.gdf) == len(by_score.gdf) == 1
    assert plain.gdf["support"][0] == scored.gdf["support"][0] == by_score.gdf["support"][0] == 2
    assert plain.gdf.geometry[0].equals(scored.gdf.geometry[0])  # the larger one, with its own score
    assert plain.gdf.geometry[0].area > by_score.gdf.geometry[0].area  # asked to: the surer one
    assert plain.gdf["score"].isna().all() and not plain.scored
    assert scored.gdf["score"][0] == pytest.approx(np.exp(-0.5)) and scored.scored
    assert by_score.gdf["score"][0] == pytest.approx(np.exp(-0.05))

    out, task1 = tmp_path / "scored.gpkg", tmp_path / "task1"
    task1.mkdir()
    assert cli(["detect", str(raster), "-o", str(out), "--from-responses", str(scored_path),
                "--task1-out", str(task1), "--classes", "ship,plane", "--merge-by-score"]) == 0
    assert gpd.read_file(out)["score"].tolist() == pytest.approx([np.exp(-0.05)])
    [line] = (task1 / "Task1_ship.txt").read_text().splitlines()
    assert line.split()[:2] == ["plain", f"{np.exp(-0.05):.6f}"] and len(line.split()) == 10
    assert (task1 / "Task1_plane.txt").read_text() == ""
    capsys.readouterr()
    assert cli(["detect", str(raster), "-o", str(tmp_path / "plain.gpkg"), "--from-responses",
                str(tmp_path / "plain.jsonl"), "--task1-out", str(task1), "--classes", "ship,plane"]) == 0
    assert "score 1.0" in capsys.readouterr().err
    assert (task1 / "Task1_ship.txt").read_text().split()[1] == "1.000000"
    assert gpd.read_file(tmp_path / "plain.gpkg")["score"].isna().all()


def test_engine_without_log_probabilities_gives_null_scores(tmp_path):
    raster = write_raster(tmp_path / "plain.tif", 600, 600)
    engine = ScriptedEngine("10,10,60,10,60,40,10,40 small vehicle\n", batch_size=4)
    result = detect(raster, engine, DetectOptions(classes=("small vehicle",)))
    assert len(result.gdf) == 4 and result.gdf["score"].isna().all()  # one box in each of the 4 tiles
    assert not result.scored and not any("score" in w for w in result.warnings)
    assert to_geojson_dict(result.gdf)["features"][0]["properties"]["score"] is None
