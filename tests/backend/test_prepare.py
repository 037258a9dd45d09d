"""`rscovlm prepare`: objects land in the right tiles at the right pixels, whatever the CRS."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image

from rscovlm.cli import main
from rscovlm.errors import UserError
from rscovlm.formats.prompts import NONE_ANSWER, SYSTEM_PROMPT_QUAD, format_detection_answer
from rscovlm.tiling import Window
from rscovlm.training.assign import assign_to_tiles
from rscovlm.training.prepare import PrepareOptions, prepare_dataset
from rscovlm.training.records import read_jsonl
from rscovlm.training.sources import dota_images, parse_dota_labels, vector_image
from rscovlm.training.split import split_tiles


@pytest.fixture(scope="module")
def prepared_4326(synth_scene, tmp_path_factory):
    """The synthetic scene's truth reprojected to EPSG:4326 (raster in EPSG:32633), then prepared."""
    raster, truth = synth_scene
    folder = tmp_path_factory.mktemp("prepare-4326")
    labels = folder / "truth_4326.gpkg"
    gpd.read_file(truth).to_crs("EPSG:4326").to_file(labels)
    out = folder / "data"
    image = vector_image(raster, labels, class_field="class")
    summary = prepare_dataset([image], out, PrepareOptions(val_fraction=0.2, seed=3), show_progress=False)
    records = list(read_jsonl(out / "train.jsonl")) + list(read_jsonl(out / "val.jsonl"))
    return raster, truth, out, summary, records


def _truth_pixel_quads(raster, truth):
    """Truth polygons in raster pixels, computed independently with rasterio's inverse transform."""
    gdf = gpd.read_file(truth)
    with rasterio.open(raster) as ds:
        inverse = ~ds.transform
    quads = []
    for geom in gdf.geometry:
        ring = np.asarray(geom.exterior.coords)[:4]
        quads.append([c for x, y in ring for c in inverse @ (x, y)])
    return np.asarray(quads), list(gdf["class"])


def test_every_object_in_the_right_tile_at_the_right_pixels(prepared_4326):
    raster, truth, _out, summary, records = prepared_4326
    pixel_quads, classes = _truth_pixel_quads(raster, truth)
    polygons = shapely.polygons(pixel_quads.reshape(-1, 4, 2))
    assert "Labels reprojected from WGS 84" in " ".join(summary.notes)
    assert len(records) == 9  # 1200 px at 512/100: 3 x 3 tiles
    for record in records:
        col, row, width, height = record.window
        in_w, in_h = record.size
        assert (in_w, in_h) == (504, 504)
        tile = shapely.box(col, row, col + width, row + height)
        ratios = shapely.area(shapely.intersection(polygons, tile)) / shapely.area(polygons)
        expected = np.flatnonzero(ratios >= 0.7)
        want = pixel_quads[expected].copy()
        want[:, 0::2] = (want[:, 0::2] - col) * in_w / width
        want[:, 1::2] = (want[:, 1::2] - row) * in_h / height
        got = np.array([obj.quad for obj in record.objects]).reshape(-1, 8)
        assert len(got) == len(expected), record.id
        # same objects, same vertices (to a thousandth of a pixel after the 4326 round trip)
        order_w = np.lexsort(want.T[::-1])
        order_g = np.lexsort(got.T[::-1])
        np.testing.assert_allclose(got[order_g], want[order_w], atol=2e-3)
        assert sorted(o.label for o in record.objects) == sorted(classes[k] for k in expected)
        assert [o.truncated for o in record.objects].count(True) == int((ratios[expected] < 1 - 1e-9).sum())
        clipped = want.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, in_w)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, in_h)
        answer = record.messages[2]["content"]
        assert answer == format_detection_answer(clipped, [classes[k] for k in expected])


def test_records_are_conversations_in_the_exact_format(prepared_4326):
    _raster, _truth, out, summary, records = prepared_4326
    record = records[0]
    system, user, assistant = record.messages
    assert system == {"role": "system", "content": SYSTEM_PROMPT_QUAD}
    assert user["content"][0] == {"type": "image", "image": record.image}
    assert user["content"][1]["text"] == "find the large vehicle, plane, ship, small vehicle, storage tank."
    assert assistant["role"] == "assistant"
    with Image.open(out / record.image) as img:
        assert img.size == (504, 504)
    on_disk = json.loads((out / "summary.json").read_text())
    total = sum(sum(split.values()) for split in on_disk["objects"].values())
    assert total == sum(len(r.objects) for r in records)
    assert on_disk["tiles"] == {"train": 7, "val": 2}
    assert {r.split for r in records} == {"train", "val"}


def test_area_rule_keeps_objects_whole_and_marks_truncation():
    windows = [Window(0, 0, 100, 100), Window(80, 0, 100, 100)]
    quads = np.array([
        [10, 10, 30, 10, 30, 30, 10, 30],      # inside the first tile only
        [85, 10, 95, 10, 95, 30, 85, 30],      # inside both (overlap)
        [70, 40, 120, 40, 120, 50, 70, 50],    # 60 % in tile 0, 80 % in tile 1
        [-30, 60, 20, 60, 20, 70, -30, 70],    # 40 % in the image: in no tile
    ], dtype=float)
    tiles, unassigned = assign_to_tiles(quads, windows)
    assert tiles[0].indexes.tolist() == [0, 1]
    assert tiles[1].indexes.tolist() == [1, 2]
    np.testing.assert_allclose(tiles[1].ratios, [1.0, 0.8])
    assert tiles[1].truncated.tolist() == [False, True]
    assert unassigned.tolist() == [3]


def _write_dota(root, width, height, label_text, name="P0001"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(root / "images" / f"{name}.png")
    (root / "labelTxt" / f"{name}.txt").write_text(label_text)


def test_dota_folder_keeps_empty_tiles_with_the_none_answer(tmp_path):
    labels = "imagesource:GoogleEarth\ngsd:0.5\n20 20 60 20 60 40 20 40 small-vehicle 0\n30 100 50 100 50 140 30 140 plane 1\nbad line\n"
    _write_dota(tmp_path / "dota", 1100, 512, labels)
    images = dota_images(tmp_path / "dota")
    assert images[0].labels == ["small vehicle", "plane"]
    assert images[0].difficult.tolist() == [False, True]
    assert images[0].skipped["malformed label line"] == 1
    summary = prepare_dataset(images, tmp_path / "out", PrepareOptions(val_fraction=0.0), show_progress=False)
    records = list(read_jsonl(tmp_path / "out" / "train.jsonl"))
    assert [r.window[0] for r in records] == [0, 412, 588]
    assert records[0].messages[2]["content"] == (
        "30,98,49,98,49,138,30,138 plane\n20,20,59,20,59,39,20,39 small vehicle\n"
    )
    assert [r.messages[2]["content"] for r in records[1:]] == [NONE_ANSWER, NONE_ANSWER]
    assert summary.empty_tiles["train"] == 2
    assert records[0].messages[1]["content"][1]["text"] == "find the plane, small vehicle."


def test_workers_cut_images_in_parallel_with_the_same_output(tmp_path):
    """Several images cut by two processes give the very records and PNGs one process gives."""
    for k in range(3):
        _write_dota(tmp_path / "dota", 700 + 50 * k, 512,
                    f"{20 + k},20,60,20,60,40,20,40 plane 0\n".replace(",", " "), name=f"P{k}")
    images = dota_images(tmp_path / "dota")
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        summary = prepare_dataset(images, out, PrepareOptions(val_fraction=0.3), show_progress=False, workers=workers)
        outputs[workers] = (
            [vars(r) for name in ("train", "val")
             for r in read_jsonl(out / f"{name}.jsonl")],
            {p.name: p.read_bytes() for p in sorted((out / "images").iterdir())},
            summary.tiles,
        )
    assert len(outputs[1][0]) == 6 and sum(outputs[1][2].values()) == 6
    assert outputs[2] == outputs[1]


def test_split_is_deterministic_and_by_tile():
    ids = [f"t{k}" for k in range(20)]
    first = split_tiles(ids, 0.25, seed=1)
    assert first == split_tiles(list(reversed(ids)), 0.25, seed=1)
    assert sum(v == "val" for v in first.values()) == 5
    assert first != split_tiles(ids, 0.25, seed=2)
    assert list(split_tiles(["a", "b"], 0.1).values()).count("val") == 1


def test_dota_label_parser_ignores_headers():
    quads, labels, difficult, skipped = parse_dota_labels("gsd:null\n1 2 3 4 5 6 7 8 Ship 0\n")
    assert quads.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]] and labels == ["ship"] and not skipped


def test_cli_prepare_prints_counts_and_rejects_missing_labels(synth_scene, tmp_path, capsys):
    raster, truth = synth_scene
    assert main(["prepare", str(tmp_path / "d"), "--raster", str(raster), "--labels", str(truth), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "small vehicle" in printed and "tiles: " in printed
    assert main(["prepare", str(tmp_path / "e"), "--raster", str(raster)]) == 2
    assert "--raster needs --labels" in capsys.readouterr().err
    with pytest.raises(UserError, match="no field 'kind'"):
        vector_image(raster, truth, class_field="kind")
