"""Reading truth and predictions from real files: GeoPackages in two CRSs, DOTA text, JSONL."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely import Polygon

from rscovlm.errors import UserError
from rscovlm.evaluate.loaders import align_predictions, load_predictions, load_truth
from rscovlm.evaluate.metrics import evaluate

UTM = "EPSG:32633"


def _rotated_quads(n: int, seed: int = 0) -> np.ndarray:
    """n rotated 30 x 12 m rectangles spread over a few hundred metres of UTM zone 33N."""
    rng = np.random.default_rng(seed)
    quads = []
    for k in range(n):
        cx, cy = 500_000 + 60 * k, 4_500_000 + rng.uniform(0, 200)
        a = rng.uniform(0, np.pi)
        c, s = np.cos(a), np.sin(a)
        corners = [(-15, -6), (15, -6), (15, 6), (-15, 6)]
        quads.append([v for dx, dy in corners for v in (cx + c * dx - s * dy, cy + s * dx + c * dy)])
    return np.array(quads)


@pytest.fixture()
def utm_truth(tmp_path):
    quads = _rotated_quads(6)
    gdf = gpd.GeoDataFrame(
        {
            "label": ["plane", "ship", "small-vehicle", "plane", "ship", "Small_Vehicle"],
            "hard": [0, 0, 1, 0, 0, 0],
        },
        geometry=[Polygon(q.reshape(4, 2)) for q in quads],
        crs=UTM,
    )
    path = tmp_path / "truth.gpkg"
    gdf.to_file(path, driver="GPKG")
    return path, gdf


def test_geopackage_predictions_in_another_crs_are_reprojected_to_the_truth(tmp_path, utm_truth):
    truth_path, truth_gdf = utm_truth
    pred_gdf = truth_gdf.rename(columns={"label": "class"}).drop(columns="hard").to_crs("EPSG:4326")
    pred_gdf["score"] = np.linspace(0.9, 0.4, len(pred_gdf))
    pred_path = tmp_path / "pred.gpkg"
    pred_gdf.to_file(pred_path, driver="GPKG")

    truth = load_truth(truth_path, class_field="label", difficult_field="hard")
    assert truth.space == "map" and truth.crs.to_epsg() == 32633
    (objects,) = truth.objects.values()
    assert [o.cls for o in objects] == ["plane", "ship", "small vehicle", "plane", "ship", "small vehicle"]
    assert [o.difficult for o in objects] == [False, False, True, False, False, False]

    raw = load_predictions(pred_path)
    assert raw.crs.to_epsg() == 4326
    (raw_objects,) = raw.objects.values()
    assert abs(raw_objects[0].quad[0]) < 180  # still degrees
    assert raw_objects[0].score == pytest.approx(0.9)

    aligned = align_predictions(raw, truth)
    assert any("reprojected" in n for n in aligned.notes)
    assert set(aligned.objects) == set(truth.objects)
    (pred_objects,) = aligned.objects.values()
    assert np.allclose([o.quad for o in pred_objects], [o.quad for o in objects], atol=1e-3)

    for convention in ("dota_devkit", "mmrotate"):
        result = evaluate(truth.objects, aligned.objects, convention)
        assert result.scored and result.map["AP50"] == pytest.approx(1.0)
        assert result.mean_f1 == pytest.approx(1.0)


def test_non_quadrilateral_polygons_become_minimum_area_rectangles(tmp_path):
    octagon = Polygon([(0, 1), (1, 0), (3, 0), (4, 1), (4, 3), (3, 4), (1, 4), (0, 3)])
    path = tmp_path / "octagon.geojson"
    gpd.GeoDataFrame({"class": ["storage tank"]}, geometry=[octagon], crs=UTM).to_file(path, driver="GeoJSON")
    loaded = load_truth(path)
    (objects,) = loaded.objects.values()
    assert len(objects) == 1 and Polygon(np.reshape(objects[0].quad, (4, 2))).area == pytest.approx(16.0)
    assert any("minimum-area rectangles" in n for n in loaded.notes)


def test_dota_label_folder_with_headers_difficult_flags_and_hyphenated_classes(tmp_path):
    folder = tmp_path / "labelTxt"
    folder.mkdir()
    (folder / "P0001.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.146343590398\n"
        "10 10 50 10 50 30 10 30 small-vehicle 0\n"
        "100 100 140 100 140 120 100 120 large-vehicle 1\n"
    )
    (folder / "P0002.txt").write_text("")  # an image without objects is still an image
    truth = load_truth(folder)
    assert truth.space == "pixel" and set(truth.objects) == {"P0001", "P0002"}
    first, second = truth.objects["P0001"]
    assert first.quad == (10, 10, 50, 10, 50, 30, 10, 30) and first.cls == "small vehicle"
    assert not first.difficult and second.difficult and second.cls == "large vehicle"
    assert truth.objects["P0002"] == []

    # Task1 submission files: class from the file name, "image score x1 ... y4" lines.
    task1 = tmp_path / "task1"
    task1.mkdir()
    (task1 / "Task1_small-vehicle.txt").write_text("P0001 0.8 10 10 50 10 50 30 10 30\n")
    (task1 / "Task1_large-vehicle.txt").write_text("P0002 0.3 0 0 5 0 5 5 0 5\n")
    preds = align_predictions(load_predictions(task1), truth)
    assert preds.objects["P0001"][0].score == pytest.approx(0.8)
    assert preds.objects["P0002"][0].cls == "large vehicle"
    dota = evaluate(truth.objects, preds.objects, "dota_devkit")
    small = next(c for c in dota.per_class if c.name == "small vehicle")
    large = next(c for c in dota.per_class if c.name == "large vehicle")
    assert small.ap["AP50"] == 1.0
    assert large.ground_truth == 0 and large.false_positives == 1  # its only GT is difficult


def test_responses_jsonl_is_replayed_into_image_pixels(tmp_path):
    from rscovlm.responses import ResponseRecord

    # A 512 px tile shown to the model at 504 px: model pixel 252 is image pixel 256.
    record = ResponseRecord(0, 0, 512, 512, 504, 504, "126,126,252,126,252,189,126,189 plane")
    responses = tmp_path / "scene.jsonl"
    responses.write_text(record.to_json_line())
    truth_folder = tmp_path / "truth"
    truth_folder.mkdir()
    (truth_folder / "scene.txt").write_text("128 128 256 128 256 192 128 192 plane 0\n")

    truth = load_truth(truth_folder)
    preds = align_predictions(load_predictions(responses, classes=["plane"], space=truth.space), truth)
    (objects,) = preds.objects.values()
    assert np.allclose(objects[0].quad, (128, 128, 256, 128, 256, 192, 128, 192))
    assert evaluate(truth.objects, preds.objects, "mmrotate").map["AP50"] == 1.0

    with pytest.raises(UserError, match="--raster"):
        load_predictions(responses, classes=["plane"], space="map")


def test_clear_errors_for_bad_inputs(tmp_path, utm_truth):
    truth_path, _ = utm_truth
    with pytest.raises(UserError, match="no field 'class'.*'label'"):
        load_truth(truth_path)
    with pytest.raises(UserError, match="does not exist"):
        load_truth(tmp_path / "missing.gpkg")
    odd = tmp_path / "truth.csv"
    odd.write_text("x,y\n")
    with pytest.raises(UserError, match="Cannot tell the format"):
        load_truth(odd)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("1 2 3 plane\n")
    with pytest.raises(UserError, match="Line 1 of .*a.txt"):
        load_truth(labels)
    (labels / "a.txt").write_text("0 0 1 0 1 1 0 1 plane 0\n")
    with pytest.raises(UserError, match="image pixels but the ground truth .* map"):
        align_predictions(load_predictions(labels), load_truth(truth_path, class_field="label"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_text("0 0 1 0 1 1 0 1 plane 0\n")
    (other / "c.txt").write_text("0 0 1 0 1 1 0 1 plane 0\n")
    with pytest.raises(UserError, match="No prediction image matches"):
        align_predictions(load_predictions(other), load_truth(labels))
