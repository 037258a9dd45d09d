"""The Zoom-in Chain on real GeoTIFFs: native-resolution crops, overviews, regions, fallbacks.

The scripted engine (``rscovlm.engines.scripted``: the Engine protocol, fixed answers,
a record of what it was sent) pins the flow; the real tiny Qwen2.5-VL runs the whole
chain at the end.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pyproj import CRS, Transformer
from rasterio.enums import Resampling

from rscovlm.engines.base import Engine
from rscovlm.engines.scripted import ScriptedEngine
from rscovlm.errors import CancelledError, NotFoundError, UserError
from rscovlm.formats.zoom import ZOOM_FOLLOWUP_TEXT, ZOOM_SYSTEM_PROMPT, zoom_call_text, zoom_user_text
from rscovlm.model_input import smart_resize
from rscovlm.pipelines.ask import (
    AskOptions,
    AskResult,
    Conversation,
    ConversationStore,
    ask,
    caption,
    classify,
    ground,
    zoom_window,
)
from rscovlm.raster import RasterSource
from rscovlm.tiling import Window

WIDTH, HEIGHT = 2048, 1536
OVERVIEW_COLOUR = (10, 200, 30)  # what the overviews hold; the full resolution holds noise
BUDGET = 448 * 448  # the region is ~4x the budget per side, so GDAL serves the 4x overview
UTM = "EPSG:32633"


def script(*replies: str) -> ScriptedEngine:
    """Answers ``replies`` one per conversation, then ``""``; keeps what it was sent."""
    return ScriptedEngine(list(replies), batch_size=1)


def _images(message: dict) -> list[Image.Image]:
    return [part["image"] for part in message["content"] if part.get("type") == "image"]


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


@pytest.fixture(scope="module")
def rotated_raster(tmp_path_factory):
    """A rotated UTM GeoTIFF whose overviews (flat colour) differ from its pixels (noise)."""
    path = tmp_path_factory.mktemp("ask") / "rotated.tif"
    transform = Affine.translation(500_000.0, 4_200_000.0) @ Affine.rotation(20.0) @ Affine.scale(0.5, -0.5)
    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8", crs=UTM,
                   transform=transform, tiled=True, blockxsize=256, blockysize=256)
    flat = np.empty((3, HEIGHT, WIDTH), dtype=np.uint8)
    for band, value in enumerate(OVERVIEW_COLOUR):
        flat[band] = value
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(flat)
        dst.build_overviews([2, 4, 8], Resampling.average)
    noise = np.random.default_rng(3).integers(0, 256, (3, HEIGHT, WIDTH), dtype=np.uint8)
    with rasterio.open(path, "r+") as dst:  # new full-resolution pixels; overviews left as they were
        dst.write(noise)
    with rasterio.open(path, overview_level=1) as overview:
        assert (overview.read(1) == OVERVIEW_COLOUR[0]).all()
    return path


def native(path, window: Window) -> np.ndarray:
    with RasterSource.open(path) as source:
        return source.read_rgb(window)[0]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.integers(0, 500), st.integers(28, 3000), st.integers(28, 3000),
       st.lists(st.floats(-500, 4000), min_size=4, max_size=4))
def test_zoom_window_is_whole_patches_inside_the_region(col, row, width, height, values):
    region = Window(col, row, width, height)
    x1, x2 = sorted(values[:2])
    y1, y2 = sorted(values[2:])
    window = zoom_window((x1, y1, x2, y2), region)
    clipped = (max(x1, col), max(y1, row), min(x2, col + width), min(y2, row + height))
    if clipped[2] < clipped[0] or clipped[3] < clipped[1]:
        assert window is None
        return
    assert window.width % 28 == 0 and window.height % 28 == 0 and window.width >= 28 and window.height >= 28
    assert col <= window.col_off and window.col_end <= col + width
    assert row <= window.row_off and window.row_end <= row + height
    if window.width < width - 28:  # not squeezed by the region: centred on the box within a pixel
        assert abs((window.col_off + window.col_end) / 2 - (clipped[0] + clipped[2]) / 2) <= 1 or \
            window.col_off in (col, col + width - window.width)
    assert abs(window.width - (clipped[2] - clipped[0])) <= 14 or window.width in (28, width // 28 * 28)


def test_scripted_engine_is_an_engine():
    assert isinstance(script(), Engine)


def test_second_turn_is_the_native_window_and_first_pass_reads_overviews(rotated_raster):
    call = zoom_call_text([100, 80, 200, 180])
    engine = script(call, "Two white ships are docked.")
    result = ask(rotated_raster, "How many ships are docked?", engine, AskOptions(max_pixels=BUDGET))

    assert isinstance(result, AskResult)
    assert result.answer == "Two white ships are docked."
    assert result.zoomed and result.zoom_fallback_reason is None

    first, second = engine.conversations
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert _text(second[0]) == ZOOM_SYSTEM_PROMPT
    assert _text(second[1]) == zoom_user_text("How many ships are docked?")
    assert _text(second[2]) == call
    assert _text(second[3]) == ZOOM_FOLLOWUP_TEXT
    overview_image, = _images(second[1])
    zoom_image, = _images(second[3])
    assert _images(first[1])[0] is overview_image

    # First pass: the whole raster at the budget, served from the flat-colour overview.
    in_h, in_w = smart_resize(HEIGHT, WIDTH, max_pixels=BUDGET)
    assert overview_image.size == (in_w, in_h)
    assert (np.asarray(overview_image) == np.array(OVERVIEW_COLOUR, dtype=np.uint8)).all()

    # Second turn: the chosen box, read at native resolution, pixel for pixel.
    roi = result.roi_window
    sx, sy = WIDTH / in_w, HEIGHT / in_h
    box = (100 * sx, 80 * sy, 200 * sx, 180 * sy)
    assert roi.width % 28 == 0 and roi.height % 28 == 0
    assert abs(roi.col_off - box[0]) <= 15 and abs(roi.col_end - box[2]) <= 15
    assert abs(roi.row_off - box[1]) <= 15 and abs(roi.row_end - box[3]) <= 15
    assert zoom_image.size == (roi.width, roi.height)
    assert np.array_equal(np.asarray(zoom_image), native(rotated_raster, roi))
    assert np.asarray(zoom_image).std() > 50  # noise: nothing of the overview in it

    # The ROI polygon is the window's corners through the full (rotated) affine.
    with rasterio.open(rotated_raster) as dataset:
        transform = dataset.transform
    corners = [transform @ (c, r) for c, r in
               [(roi.col_off, roi.row_off), (roi.col_end, roi.row_off), (roi.col_end, roi.row_end),
                (roi.col_off, roi.row_end)]]
    assert np.allclose(np.asarray(result.roi_polygon.exterior.coords)[:4], corners, rtol=0, atol=1e-6)
    assert result.roi_polygon.area < 0.9 * shapely.envelope(result.roi_polygon).area  # rotated, not north-up
    assert math.isclose(result.roi_polygon.area, roi.width * roi.height * 0.25, rel_tol=1e-9)
    assert result.crs.equals(CRS.from_user_input(UTM)) and result.region_crs is None

    assert [t["role"] for t in result.transcript] == ["system", "user", "assistant", "user", "assistant"]
    assert result.transcript[3]["images"][0]["source"] == "native"
    assert result.transcript[3]["images"][0]["window"] == list(roi.as_tuple())
    assert set(result.timings) >= {"read_region_s", "first_turn_s", "zoom_read_s", "second_turn_s", "total_s"}
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["zoomed"] is True and payload["roi_window"] == list(roi.as_tuple())
    feature, region_shown = payload["features"]["features"]
    assert region_shown["properties"]["kind"] == "region"
    assert payload["features"]["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert shapely.geometry.shape(feature["geometry"]).equals(result.roi_polygon)


def test_a_zoom_box_larger_than_the_budget_is_downsampled(rotated_raster):
    engine = script(zoom_call_text([0, 0, 504, 364]), "a harbour")
    result = ask(rotated_raster, "What is this?", engine, AskOptions(max_pixels=BUDGET))
    image, = _images(engine.conversations[1][3])
    roi = result.roi_window
    assert roi.width * roi.height > BUDGET
    assert image.width * image.height <= BUDGET and image.width % 28 == 0 and image.height % 28 == 0
    assert result.transcript[3]["images"][0]["source"] == "resampled"


def test_a_tiny_zoom_box_is_upsampled_from_native_pixels(rotated_raster):
    engine = script(zoom_call_text([50, 50, 51, 51]), "a car")
    result = ask(rotated_raster, "What is this?", engine, AskOptions(max_pixels=BUDGET))
    roi = result.roi_window
    assert (roi.width, roi.height) == (28, 28)
    image, = _images(engine.conversations[1][3])
    assert image.size == (224, 224)
    expected = Image.fromarray(native(rotated_raster, roi)).resize((224, 224), Image.BICUBIC)
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_a_pixel_region_offsets_the_zoom_window(rotated_raster):
    region = Window(600, 400, 800, 600)
    engine = script(zoom_call_text([0, 0, 200, 150]), "ok")
    result = ask(rotated_raster, "What is here?", engine, AskOptions(window=region, max_pixels=BUDGET))
    in_h, in_w = smart_resize(600, 800, max_pixels=BUDGET)
    first = _images(engine.conversations[0][1])[0]
    assert first.size == (in_w, in_h)
    roi = result.roi_window
    assert result.region_window == region
    assert region.col_off <= roi.col_off and roi.col_end <= region.col_end
    assert abs(roi.col_off - 600) <= 15 and abs(roi.row_off - 400) <= 15
    assert abs(roi.col_end - (600 + 200 * 800 / in_w)) <= 15
    assert np.array_equal(np.asarray(_images(engine.conversations[1][3])[0]), native(rotated_raster, roi))


def test_garbage_tool_call_falls_back_to_a_plain_question(rotated_raster):
    engine = script('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2', "Three ships.")
    result = ask(rotated_raster, "How many ships?", engine, AskOptions(max_pixels=BUDGET))
    assert result.answer == "Three ships."
    assert not result.zoomed and result.roi_window is None and result.roi_polygon is None
    assert "could not be read" in result.zoom_fallback_reason
    plain = engine.conversations[1]
    assert [m["role"] for m in plain] == ["user"] and _text(plain[0]) == "How many ships?"
    assert _images(plain[0])[0] is _images(engine.conversations[0][1])[0]


def test_a_direct_answer_is_kept_without_a_second_turn(rotated_raster):
    engine = script("Three ships.")
    result = ask(rotated_raster, "How many ships?", engine, AskOptions(max_pixels=BUDGET))
    assert result.answer == "Three ships." and not result.zoomed
    assert result.zoom_fallback_reason.endswith(".") and len(engine.conversations) == 1


def test_a_zoom_box_outside_the_picture_falls_back(rotated_raster):
    engine = script(zoom_call_text([900, 900, 1000, 1000]), "A river.")
    result = ask(rotated_raster, "What is there?", engine, AskOptions(max_pixels=BUDGET))
    assert not result.zoomed and "outside" in result.zoom_fallback_reason
    assert len(engine.conversations) == 2 and _text(engine.conversations[1][0]) == "What is there?"


def test_zoom_off_asks_plainly(rotated_raster):
    engine = script("Farmland.")
    result = ask(rotated_raster, "What land use is this?", engine, AskOptions(zoom=False, max_pixels=BUDGET))
    conversation, = engine.conversations
    assert [m["role"] for m in conversation] == ["user"]
    assert _text(conversation[0]) == "What land use is this?"
    assert result.answer == "Farmland." and not result.zoomed and "off" in result.zoom_fallback_reason


def test_region_in_another_crs(rotated_raster):
    pixel_box = Window(512, 384, 512, 384)
    with RasterSource.open(rotated_raster) as source:
        to_wgs84 = Transformer.from_crs(source.crs, "EPSG:4326", always_xy=True)
        xs, ys = zip(*[source.transform @ (c, r) for c, r in
                       [(512, 384), (1024, 384), (1024, 768), (512, 768)]])
        lons, lats = to_wgs84.transform(xs, ys)
        bounds = (min(lons), min(lats), max(lons), max(lats))
        expected_region = source.region_window(bounds, "EPSG:4326")
    engine = script(zoom_call_text([10, 10, 250, 200]), "A pier.")
    result = ask(rotated_raster, "What is at the water?", engine,
                 AskOptions(bounds=bounds, bounds_crs="EPSG:4326", max_pixels=BUDGET))
    assert result.region_window == expected_region
    assert expected_region.col_off <= pixel_box.col_off and expected_region.col_end >= pixel_box.col_end
    assert result.region_crs.equals(CRS.from_epsg(4326))
    assert result.transcript[3]["images"][0]["source"] == "native"
    assert np.array_equal(np.asarray(_images(engine.conversations[1][3])[0]), native(rotated_raster, result.roi_window))
    lonlat = result.roi_polygon_region_crs
    for x, y in list(result.roi_polygon.exterior.coords)[:4]:
        lon, lat = to_wgs84.transform(x, y)
        assert min(math.dist((lon, lat), v) for v in lonlat.exterior.coords) < 1e-9
    assert lonlat.buffer(1e-4).contains(shapely.box(*bounds).intersection(lonlat))
    assert json.loads(json.dumps(result.to_json()))["features_region_crs"]["crs"]["properties"]["name"].endswith("4326")


@pytest.mark.parametrize(
    ("question", "options", "message"),
    [
        ("   ", AskOptions(), "question is empty"),
        ("Ships?", AskOptions(bounds=(0.0, 0.0, 10.0, 10.0)), "outside the raster"),
        ("Ships?", AskOptions(bounds=(0.0, 0.0, 1.0, 1.0), bounds_crs="EPSG:4326"), "outside the raster"),
        ("Ships?", AskOptions(window=Window(5000, 5000, 100, 100)), "outside the raster"),
        ("Ships?", AskOptions(window=Window(100, 100, 20, 300)), "at least 28 pixels"),
        ("Ships?", AskOptions(window=Window(2040, 100, 100, 100)), "at least 28 pixels"),
    ],
)
def test_bad_input_gives_a_sentence(rotated_raster, question, options, message):
    engine = script("never asked")
    with pytest.raises(UserError, match=message) as info:
        ask(rotated_raster, question, engine, options)
    assert str(info.value)[0].isupper() and str(info.value).endswith(".")
    assert engine.conversations == []


def test_bad_options_and_paths_give_sentences(rotated_raster, tmp_path):
    with pytest.raises(UserError, match="MAXX must exceed MINX"):
        AskOptions(bounds=(10.0, 0.0, 5.0, 1.0))
    with pytest.raises(UserError, match="not both"):
        AskOptions(bounds=(0.0, 0.0, 5.0, 1.0), window=Window(0, 0, 100, 100))
    with pytest.raises(NotFoundError, match="does not exist"):
        ask(tmp_path / "missing.tif", "Ships?", script())


def test_an_empty_model_answer_is_flagged(rotated_raster):
    result = ask(rotated_raster, "Ships?", script(zoom_call_text([0, 0, 100, 100]), "  "),
                 AskOptions(max_pixels=BUDGET))
    assert result.answer == "" and result.answer_empty
    assert any("empty answer" in w for w in result.warnings)


def test_cancel_is_polled_between_turns(rotated_raster):
    engine = script(zoom_call_text([0, 0, 100, 100]), "never")
    with pytest.raises(CancelledError):
        ask(rotated_raster, "Ships?", engine, AskOptions(max_pixels=BUDGET),
            should_cancel=lambda: len(engine.conversations) >= 1)
    assert len(engine.conversations) == 1


def test_follow_ups_continue_the_conversation_and_can_start_over(rotated_raster):
    history = Conversation()
    options = AskOptions(max_pixels=BUDGET)
    engine = script(zoom_call_text([100, 80, 200, 180]), "Two ships.", "White.", "A harbour.")
    first = ask(rotated_raster, "How many ships?", engine, options, history=history)
    follow = ask(rotated_raster, "What colour are they?", engine, options, history=history)
    sent = engine.conversations[2]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert _text(sent[4]) == "Two ships." and _text(sent[5]) == "What colour are they?"
    assert _images(sent[5]) == []  # the pictures are already in the conversation
    assert follow.answer == "White." and follow.follow_up and follow.zoomed
    assert follow.roi_window == first.roi_window and history.questions == 2
    assert len(history.messages) == 7 and len(history.transcript) == 7

    history.reset()
    ask(rotated_raster, "What is this?", engine, AskOptions(zoom=False, max_pixels=BUDGET), history=history)
    assert [m["role"] for m in engine.conversations[3]] == ["user"]

    engine = script("Forest.")
    moved = ask(rotated_raster, "And here?", engine, AskOptions(zoom=False, window=Window(0, 0, 300, 300)),
                history=history)
    assert [m["role"] for m in engine.conversations[0]] == ["user"]
    assert any("started over" in w for w in moved.warnings)
    assert history.region_window == Window(0, 0, 300, 300)


def test_conversation_store_expires_caps_and_resets():
    now = [0.0]
    store = ConversationStore(ttl_s=60, max_items=2, clock=lambda: now[0])
    first_id, first = store.create()
    second_id, _ = store.create()
    assert store.get(first_id) is first  # refreshes first: second is now least recently used
    third_id, _ = store.create()
    assert len(store) == 2
    with pytest.raises(NotFoundError, match="unknown or expired"):
        store.get(second_id)
    first.messages.append({"role": "user", "content": "x"})
    assert not store.reset(first_id).started
    now[0] = 61.0
    with pytest.raises(NotFoundError):
        store.get(third_id)
    new_id, conversation = store.get_or_create(None)
    assert store.get_or_create(new_id) == (new_id, conversation) and new_id not in (first_id, third_id)


def test_caption_classify_and_ground(rotated_raster):
    options = AskOptions(window=Window(200, 100, 1008, 1008), max_pixels=BUDGET)
    engine = script("Many buildings.")
    described = caption(rotated_raster, engine, options)
    assert described.answer == "Many buildings." and described.task == "caption"
    assert _text(engine.conversations[0][-1]) == "Describe the image"

    engine = script("Dense residential")
    classes = ["forest", "dense residential", "residential"]
    classified = classify(rotated_raster, classes, engine, options)
    assert classified.label == "dense residential" and classified.label_score == 1.0
    assert _text(engine.conversations[0][-1]).endswith("forest,dense residential,residential.")

    engine = script("50,100,150,200 white ship\n")
    grounded = ground(rotated_raster, "white ship", engine, options)
    image = _images(engine.conversations[0][-1])[0]
    assert image.size == (448, 448)
    scale = 1008 / 448
    expected = (200 + 50 * scale, 100 + 100 * scale, 200 + 150 * scale, 100 + 200 * scale)
    assert np.allclose(grounded.box_pixels, expected)
    with rasterio.open(rotated_raster) as dataset:
        transform = dataset.transform
    x1, y1, x2, y2 = expected
    corners = [transform @ p for p in [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]]
    assert np.allclose(np.asarray(grounded.box_polygon.exterior.coords)[:4], corners, atol=1e-6)
    assert json.loads(json.dumps(grounded.to_json()))["features"]["features"][0]["properties"]["kind"] == "box"

    nothing = ground(rotated_raster, "white ship", script("There are none."), options)
    assert nothing.box_polygon is None and nothing.warnings


def test_cli_writes_the_roi(rotated_raster, tmp_path):
    import geopandas as gpd

    from rscovlm.cli.ask import _write_roi

    result = ask(rotated_raster, "Ships?", script(zoom_call_text([100, 80, 200, 180]), "Two."),
                 AskOptions(max_pixels=BUDGET))
    _write_roi(result, tmp_path / "roi.gpkg")
    frame = gpd.read_file(tmp_path / "roi.gpkg")
    assert frame.crs.equals(CRS.from_user_input(UTM))
    assert frame.geometry.iloc[0].equals(result.roi_polygon) and frame["kind"].tolist() == ["roi", "region"]


# --------------------------------------------------------------------------- the real tiny model


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    from rscovlm.engines import create_engine

    return create_engine(str(tiny_model_dir), device="cpu", batch_size=1)


def forced_zoom(engine) -> ScriptedEngine:
    """The real engine, except that its first answer is a fixed tool call (to run turn two)."""
    return ScriptedEngine(
        [zoom_call_text([20, 20, 120, 100])],
        after=lambda conversation: engine.generate([conversation], max_new_tokens=8)[0].text,
        batch_size=1,
    )


def test_whole_chain_with_the_tiny_model(rotated_raster, tiny_engine):
    options = AskOptions(max_pixels=BUDGET, max_new_tokens=8)
    result = ask(rotated_raster, "How many ships are docked?", tiny_engine, options)
    assert isinstance(result, AskResult) and isinstance(result.answer, str)
    assert result.zoomed == (result.roi_window is not None)
    # The scripted tool call costs ~40 tokens: give the turns room for it (the real model
    # still writes at most 8 tokens in turn two).
    roomy = AskOptions(max_pixels=BUDGET, max_new_tokens=64)
    zoomed = ask(rotated_raster, "How many ships are docked?", forced_zoom(tiny_engine), roomy)
    assert zoomed.zoomed and isinstance(zoomed.answer, str) and zoomed.timings["second_turn_s"] > 0
    json.dumps(zoomed.to_json())


def test_cli_runs_with_the_tiny_model(rotated_raster, tiny_model_dir, tmp_path, capsys):
    from rscovlm.cli import main

    out = tmp_path / "answer.json"
    code = main(["ask", str(rotated_raster), "How many ships?", "--model", str(tiny_model_dir), "--device", "cpu",
                 "--max-pixels", str(224 * 224), "--max-new-tokens", "4", "--no-zoom", "--json", str(out)])
    assert code == 0
    assert "Answer:" in capsys.readouterr().out
    assert json.loads(out.read_text())["zoomed"] is False
    code = main(["ask", str(rotated_raster), "Ships?", "--model", str(tiny_model_dir),
                 "--region", "0,0,10,10"])
    assert code == 2 and "outside the raster" in capsys.readouterr().err
    assert main(["ask", str(rotated_raster), "--model", str(tiny_model_dir)]) == 2
    assert "needs a question" in capsys.readouterr().err


def test_a_raster_without_crs_gives_pixel_geometries(tmp_path):
    path = tmp_path / "plain.tif"
    pixels = np.random.default_rng(5).integers(0, 256, (3, 600, 800), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=800, height=600, count=3, dtype="uint8") as dst:
        dst.write(pixels)
    engine = script(zoom_call_text([100, 100, 400, 300]), "A field.")
    result = ask(path, "What is this?", engine, AskOptions(max_pixels=BUDGET))
    roi = result.roi_window
    assert result.crs is None and result.zoomed
    assert result.roi_polygon.equals(shapely.box(roi.col_off, roi.row_off, roi.col_end, roi.row_end))
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["features"]["crs"] is None
    assert [f["properties"]["kind"] for f in payload["features"]["features"]] == ["roi", "region"]
    with pytest.raises(UserError, match="no CRS"):
        ask(path, "What is this?", engine, AskOptions(bounds=(0, 0, 1, 1), bounds_crs="EPSG:4326"))
