"""The scripted engine: the Engine protocol without a model, token budgets, and the truth oracle."""

from __future__ import annotations

import threading
import time

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rscovlm.engines.base import Answer, Engine
from rscovlm.engines.scripted import (
    ScriptedEngine,
    cut_at_tokens,
    estimate_tokens,
    token_pieces,
    truth_answerer,
)
from rscovlm.errors import CancelledError, UserError
from rscovlm.formats.detection import parse_detections
from rscovlm.formats.prompts import detection_prompt, messages
from rscovlm.geometry import order_quad
from rscovlm.responses import ResponseRecord, ResponsesWriter

LINE = "123,45,130,50,128,60,121,55 storage tank\n"


def tile(window=(0, 0, 512, 512), size=(504, 504), classes=("plane", "ship", "storage tank")):
    image = Image.new("RGB", size)
    image.info["window"] = window
    system, user = detection_prompt(classes)
    return messages(system, user, image)


# --------------------------------------------------------------------------- the protocol


def test_it_is_an_engine_with_the_protocol_attributes():
    engine = ScriptedEngine(batch_size=3, concurrency=5, pixel_bounds=(100, 200), max_new_tokens_limit=64)
    assert isinstance(engine, Engine)
    assert (engine.batch_size, engine.concurrency, engine.pixel_bounds, engine.max_new_tokens_limit) == (3, 5, (100, 200), 64)
    info = engine.describe()
    assert info["engine"] == "scripted" and info["device"] == "none" and info["concurrency"] == 5
    (answer,) = engine.generate([tile()])
    assert answer == Answer("There are none.", finished=True, tokens=5)  # 4 + end of text


def test_answers_from_a_constant_a_list_or_a_function():
    assert [a.text for a in ScriptedEngine("Farmland.").generate([tile(), tile()])] == ["Farmland."] * 2
    listed = ScriptedEngine(["one", lambda c: f"{len(c)} messages"], after="later")
    assert [a.text for a in listed.generate([tile(), tile(), tile()])] == ["one", "2 messages", "later"]
    assert [a.text for a in ScriptedEngine(["only"]).generate([tile(), tile()])] == ["only", ""]
    by_size = ScriptedEngine(lambda c: str(c[-1]["content"][0]["image"].size))
    assert by_size.generate([tile(size=(224, 280))])[0].text == "(224, 280)"


def test_it_records_what_it_was_asked():
    engine = ScriptedEngine()
    engine.generate([tile((388, 0, 512, 512)), tile((0, 412, 512, 300), size=(504, 308))], max_new_tokens=99)
    engine.generate([messages(None, "no picture")])
    first, second, third = engine.requests
    assert (first.index, first.call, first.windows, first.image_sizes) == (0, 0, ((388, 0, 512, 512),), ((504, 504),))
    assert (second.call, second.windows, second.image_sizes) == (0, ((0, 412, 512, 300),), ((504, 308),))
    assert (third.index, third.call, third.windows, third.image_sizes) == (2, 1, (), ())
    assert first.max_new_tokens == 99 and first.answer.text == "There are none."
    assert engine.request_count == 3 and engine.calls == 2 and len(engine.conversations) == 3
    lean = ScriptedEngine(keep_conversations=False, max_records=1)
    lean.generate([tile(), tile((5, 5, 512, 512))])
    assert lean.request_count == 2 and lean.conversations == []
    assert [r.windows for r in lean.requests] == [((5, 5, 512, 512),)]


def test_counts_are_exact_under_threads():
    engine = ScriptedEngine(lambda c: "x", delay=0.002, concurrency=8)
    threads = [threading.Thread(target=lambda: [engine.generate([tile(), tile()]) for _ in range(25)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.request_count == 400 and engine.calls == 200
    assert sorted(r.index for r in engine.requests) == list(range(400))
    assert 1 < engine.peak_in_flight <= 8


# --------------------------------------------------------------------------- tokens and budgets


def test_token_estimate_on_answers():
    assert estimate_tokens(LINE) == 20 + 7 + 2 + 1  # digits, commas, two words, the newline
    assert estimate_tokens("123,456,130,500,128,600,121,550 small vehicle\n") == 24 + 7 + 2 + 1
    assert estimate_tokens("There are none.") == 4
    assert token_pieces("12 ships") == ["1", "2", " ships"]
    assert token_pieces("<tool_call>\n{") == ["<tool_call>", "\n", "{"]
    assert estimate_tokens("internationalisation") == 3  # long words: one token per 8 letters
    assert estimate_tokens("港口有船") == 4


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(0, 60))
def test_pieces_rebuild_the_text_and_cuts_are_prefixes(text, budget):
    assert "".join(token_pieces(text)) == text
    answer = cut_at_tokens(text, budget)
    assert text.startswith(answer.text)
    if answer.finished:
        assert answer.text == text and answer.tokens == estimate_tokens(text) + 1 <= budget
    else:
        assert answer.tokens == budget and estimate_tokens(text) >= budget


def test_answers_are_cut_at_the_budget_as_a_model_would():
    text = LINE * 10  # 300 tokens
    answer = ScriptedEngine(text).generate([tile()], max_new_tokens=100)[0]
    assert not answer.finished and answer.tokens == 100
    assert answer.text == LINE * 3 + "123,45,130"  # 90 tokens of whole lines, 10 of the fourth
    parsed = parse_detections(answer.text, ["storage tank"])
    assert parsed.dropped.get("truncated") == 1  # the cut line is dropped by the parser
    # an answer of exactly the budget has no room for its end-of-text token
    assert not ScriptedEngine(LINE).generate([tile()], max_new_tokens=30)[0].finished
    assert ScriptedEngine(LINE).generate([tile()], max_new_tokens=31)[0] == Answer(LINE, True, 31)
    limited = ScriptedEngine(text, max_new_tokens_limit=60)
    assert limited.generate([tile()], max_new_tokens=4096)[0].tokens == 60
    assert limited.requests[0].max_new_tokens == 60


# --------------------------------------------------------------------------- time and cancelling


def test_a_batch_lasts_as_long_as_its_longest_answer():
    engine = ScriptedEngine(["ok", LINE * 5], seconds_per_token=0.001, delay=0.02)
    started = time.perf_counter()
    engine.generate([tile(), tile()], max_new_tokens=4096)
    elapsed = time.perf_counter() - started
    assert 0.02 + 0.151 <= elapsed < 1.0  # 151 tokens of the longer answer, not the sum
    by_answer = ScriptedEngine("abc", delay=lambda answer: 0.05 * answer.tokens)
    started = time.perf_counter()
    by_answer.generate([tile()])
    assert time.perf_counter() - started >= 0.1


def test_cancelling_raises_before_and_during_generation():
    engine = ScriptedEngine(delay=5.0)
    with pytest.raises(CancelledError):
        engine.generate([tile()], should_cancel=lambda: True)
    assert engine.request_count == 0
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    started = time.perf_counter()
    with pytest.raises(CancelledError):
        engine.generate([tile()], should_cancel=flag.is_set)
    assert time.perf_counter() - started < 1.0
    assert ScriptedEngine().generate([tile()], should_cancel=lambda: False)[0].finished


# --------------------------------------------------------------------------- the truth oracle

TRANSFORM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_000_000.0)


@pytest.fixture
def scene(tmp_path):
    """A 1000 x 800 px raster and a truth file with objects at known pixel positions."""
    raster = tmp_path / "scene.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=1000, height=800, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=TRANSFORM) as dst:
        dst.write(np.zeros((3, 800, 1000), dtype=np.uint8))
    pixel_quads = {
        "ship": [(400, 100), (440, 100), (440, 120), (400, 120)],           # centre (420, 110)
        "plane": [(600, 300), (660, 320), (650, 350), (590, 330)],          # centre (625, 325)
        "storage tank": [(380, 200), (396, 200), (396, 216), (380, 216)],   # centre (388, 208): on the edge
        "small vehicle": [(700, 600), (709, 600), (709, 604), (700, 604)],  # centre (704.5, 602)
        "outside": [(100, 100), (120, 100), (120, 120), (100, 120)],        # centre (110, 110)
    }
    classes = ["ship", "plane", "storage tank", "small vehicle", "ship"]
    polygons = [shapely.Polygon([TRANSFORM @ p for p in q]) for q in pixel_quads.values()]
    truth = tmp_path / "truth.gpkg"
    gpd.GeoDataFrame({"class": classes}, geometry=polygons, crs="EPSG:32633").to_file(truth)
    return raster, truth, pixel_quads


def model_line(quad_px, window, label, scale=504 / 512):
    col, row = window[:2]
    values = order_quad([v for x, y in quad_px for v in ((x - col) * scale, (y - row) * scale)])
    return ",".join(str(int(v)) for v in np.rint(values)) + f" {label}"


def test_oracle_answers_a_tile_in_the_models_exact_format(scene):
    raster, truth, q = scene
    engine = ScriptedEngine.from_truth(truth, raster)
    window = (388, 0, 512, 512)
    (answer,) = engine.generate([tile(window, classes=["plane", "ship", "storage tank", "small vehicle"])])
    # by class, alphabetically; the tank's centre (388, 208) is on the window's left edge: inside
    assert answer.text.splitlines() == [
        model_line(q["plane"], window, "plane"),
        model_line(q["ship"], window, "ship"),
        model_line(q["storage tank"], window, "storage tank"),
    ]
    assert answer.finished
    parsed = parse_detections(answer.text, ["plane", "ship", "storage tank"])
    assert len(parsed.quads) == 3


def test_oracle_uses_the_centre_rule_the_prompts_classes_and_the_input_size(scene):
    raster, truth, q = scene
    answer = truth_answerer(truth, raster)
    # the left tile holds the "outside" ship's centre (110, 110), the ship's and the tank's
    # (388 < 512: in both tiles), not the plane's (625, 325)
    left = answer(tile((0, 0, 512, 512), classes=["plane", "ship", "storage tank"]))
    assert left.splitlines() == [
        model_line(q["outside"], (0, 0), "ship"),
        model_line(q["ship"], (0, 0), "ship"),
        model_line(q["storage tank"], (0, 0), "storage tank"),
    ]
    assert answer(tile((0, 0, 512, 512), classes=["plane"])) == "There are none."
    # max mode: the same tile at 1008 x 1008 gives coordinates twice as large (rounded)
    big = answer(tile((388, 288, 512, 512), size=(1008, 1008), classes=["small vehicle"]))
    assert big == model_line(q["small vehicle"], (388, 288), "small vehicle", scale=1008 / 512) + "\n"
    # an explicit class list overrides the prompt
    only_ships = truth_answerer(truth, raster, classes=["ship"])
    assert "plane" not in only_ships(tile((388, 0, 512, 512), classes=["plane", "ship"]))


def test_oracle_reprojects_a_truth_file_in_another_crs(scene, tmp_path):
    raster, truth, _q = scene
    lonlat = tmp_path / "truth_4326.geojson"
    gpd.read_file(truth).to_crs("EPSG:4326").to_file(lonlat)
    request = tile((388, 0, 512, 512), classes=["plane", "ship", "storage tank"])
    assert truth_answerer(lonlat, raster)(request) == truth_answerer(truth, raster)(request)


def test_oracle_needs_the_tile_window(scene):
    raster, truth, _q = scene
    conversation = tile()
    conversation[-1]["content"][0]["image"].info.pop("window")
    with pytest.raises(ValueError, match='info\\["window"\\]'):
        truth_answerer(truth, raster)(conversation)
    with pytest.raises(UserError, match="no field 'kind'"):
        truth_answerer(truth, raster, class_field="kind")


def test_dense_truth_is_cut_at_the_budget(scene, tmp_path):
    raster, _truth, _q = scene
    cars = [shapely.box(*(TRANSFORM @ (x, y + 6)), *(TRANSFORM @ (x + 9, y))) for x in range(10, 500, 12) for y in range(10, 500, 12)]
    dense = tmp_path / "dense.gpkg"
    gpd.GeoDataFrame({"class": ["small vehicle"] * len(cars)}, geometry=cars, crs="EPSG:32633").to_file(dense)
    engine = ScriptedEngine.from_truth(dense, raster)
    cut = engine.generate([tile(classes=["small vehicle"])], max_new_tokens=1024)[0]
    whole = engine.generate([tile(classes=["small vehicle"])], max_new_tokens=100_000)[0]
    assert not cut.finished and cut.tokens == 1024 and whole.finished
    assert whole.text.count("\n") == len(cars) == 41 * 41
    assert 25 <= 1024 / len(parse_detections(cut.text, ["small vehicle"]).quads) <= 36  # ~30 tokens a line


@pytest.mark.slow
def test_detecting_with_the_oracle_finds_the_synthetic_truth(synth_scene):
    """End to end through the detection pipeline (needs image.info["window"] from it)."""
    from rscovlm.pipelines.detect import DetectOptions, detect

    raster, truth = synth_scene
    engine = ScriptedEngine.from_truth(truth, raster, batch_size=4)
    result = detect(raster, engine, DetectOptions(max_new_tokens=16384))
    expected = gpd.read_file(truth)
    assert engine.request_count == 9  # a 1200 px scene: 3 x 3 tiles
    assert len(result.gdf) == len(expected)
    for geom, cls in zip(expected.geometry, expected["class"]):
        same = result.gdf[result.gdf["class"] == cls]
        # vertices rounded to whole model-input pixels: within a raster pixel (0.5 m) of the truth
        assert min(g.hausdorff_distance(geom) for g in same.geometry) < 0.5, cls


# --------------------------------------------------------------------------- serving without a model


def test_for_serving(tmp_path, scene):
    none = ScriptedEngine.for_serving("none")
    assert none.generate([tile()])[0].text == "There are none." and none.conversations == []
    text = tmp_path / "answer.txt"
    text.write_text("10,10,40,10,40,30,10,30 plane\n")
    assert ScriptedEngine.for_serving(text).generate([tile()])[0].text == text.read_text()
    responses = tmp_path / "r.jsonl"
    with ResponsesWriter(responses) as writer:
        writer.write(ResponseRecord(388, 0, 512, 512, 504, 504, "1,2,3,2,3,4,1,4 ship\n"))
    replay = ScriptedEngine.for_serving(responses, batch_size=2)
    answers = replay.generate([tile((388, 0, 512, 512)), tile((0, 0, 512, 512)), messages(None, "Ships?")])
    assert [a.text for a in answers] == ["1,2,3,2,3,4,1,4 ship\n", "There are none.", "There are none."]
    assert replay.batch_size == 2 and replay.describe()["model"] == "scripted: r.jsonl"
    with pytest.raises(UserError, match="does not exist"):
        ScriptedEngine.for_serving(tmp_path / "missing.jsonl")
