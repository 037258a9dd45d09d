"""Detection at production scale: dense tiles, streaming, failures, resume, many rasters.

The engines here are real code paths a model would take: the scripted engine's truth
oracle answers each tile (or sub-tile) from the scene's ground truth in the model's exact
format and cuts answers at the budget as a model does; the kill-and-resume test drives the
real CLI in a subprocess against a real HTTP server answering from the tiny model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import geopandas as gpd
import numpy as np
import pytest
import shapely
from openai_server import openai_server

from rscovlm.engines.scripted import ScriptedEngine, estimate_tokens
from rscovlm.errors import CancelledError, EngineUnavailableError
from rscovlm.pipelines.detect import DetectOptions, detect, detect_from_responses, split_window
from rscovlm.responses import read_responses
from rscovlm.tiling import Window

CLASSES = ("small vehicle", "ship", "plane", "storage tank", "harbor", "large vehicle")


@pytest.fixture(scope="module")
def dense_scene(tmp_path_factory):
    from rscovlm.synth import make_scene

    folder = tmp_path_factory.mktemp("dense")
    raster, truth = folder / "dense.tif", folder / "truth.gpkg"
    make_scene(raster, truth, size=1536, seed=3, gsd=0.3, density="dense")
    return raster, truth


def recall(result, truth_path, classes=CLASSES, iou=0.5) -> tuple[float, int]:
    """Share of truth objects (of the asked classes) matched by a detection of their class."""
    truth = gpd.read_file(truth_path)
    truth = truth[truth["class"].isin(classes)]
    found = 0
    for cls in classes:
        t = truth[truth["class"] == cls].geometry.values
        d = result.gdf[result.gdf["class"] == cls].geometry.values
        if not len(t):
            continue
        if not len(d):
            continue
        tree = shapely.STRtree(d)
        pairs = tree.query(t, predicate="intersects")
        best = np.zeros(len(t))
        inter = shapely.area(shapely.intersection(t[pairs[0]], d[pairs[1]]))
        union = shapely.area(shapely.union(t[pairs[0]], d[pairs[1]]))
        np.maximum.at(best, pairs[0], inter / union)
        found += int((best >= iou).sum())
    return found / max(1, len(truth)), len(truth)


def test_dense_tiles_are_split_until_every_object_is_found(dense_scene):
    raster, truth = dense_scene
    budget = 3072  # about 95 oriented boxes: the densest tiles hold more
    oracle = ScriptedEngine.from_truth(truth, raster, batch_size=8)
    split = detect(raster, oracle, DetectOptions(classes=CLASSES, max_new_tokens=budget))
    found, total = recall(split, truth)
    assert total >= 300
    assert found >= 0.99, f"recall {found:.3f} of {total} with splitting"
    assert split.tiles_split > 0 and not split.tiles_incomplete and split.complete
    assert f"{split.tiles_split} dense tiles" in split.summary()
    assert split.to_geojson()["rscovlm"]["tiles_split"] == split.tiles_split

    plain = ScriptedEngine.from_truth(truth, raster, batch_size=8)
    cut = detect(raster, plain, DetectOptions(classes=CLASSES, max_new_tokens=budget, split_min_tile=0))
    cut_found, _ = recall(cut, truth)
    assert cut.tiles_split == 0 and len(cut.tiles_incomplete) > 0 and not cut.complete
    assert "cut by the 3072-token budget" in " ".join(cut.warnings)
    # Without splitting the loss is what the budget predicts: per cut tile, the lines past
    # the budget are never written.
    full = ScriptedEngine.from_truth(truth, raster)
    lines_lost = 0
    for request in plain.requests:
        whole = full._text_for(0, request.conversation)  # the answer without a budget
        kept = request.answer.text.count("\n") + (1 if request.answer.text.endswith("\n") else 0)
        lines_lost += max(0, whole.count("\n") + 1 - kept) if not request.answer.finished else 0
    assert lines_lost > 0 and cut_found < 0.99
    # Objects cut from one tile may still be seen whole by a neighbour: the loss is at most that.
    assert (1 - cut_found) * total <= lines_lost
    assert estimate_tokens("1,2,3,4,5,6,7,8 ship\n") < 32 <= estimate_tokens("123,456,123,456,123,456,123,456 ship\n")


def test_split_window_makes_overlapping_quarters():
    options = DetectOptions()
    quarters = split_window(Window(412, 0, 512, 512), (2000, 2000), options)
    assert len(quarters) == 4 and {q.width for q in quarters} == {306}
    assert {(q.col_off, q.row_off) for q in quarters} == {(412, 0), (618, 0), (412, 206), (618, 206)}
    assert split_window(Window(0, 0, 200, 200), (2000, 2000), options) == []  # quarters below the floor
    assert split_window(Window(0, 0, 512, 512), (2000, 2000), DetectOptions(split_min_tile=0)) == []


def test_a_looping_answer_is_not_split(synth_scene):
    raster, _ = synth_scene
    loop = "10,10,20,10,20,20,10,20 ship\n" * 200
    engine = ScriptedEngine(loop)
    result = detect(raster, engine, DetectOptions(max_new_tokens=256))
    assert result.tiles_split == 0 and len(result.tiles_incomplete) == result.tiles_total


def test_streaming_gives_the_same_result_whatever_order_answers_come_in(dense_scene):
    raster, truth = dense_scene
    options = DetectOptions(classes=CLASSES, max_new_tokens=3072)
    in_order = detect(raster, ScriptedEngine.from_truth(truth, raster, batch_size=4), options)
    # Many requests in flight, answers finishing in a shuffled order (random delays).
    rng = np.random.default_rng(5)
    delays = iter(rng.uniform(0.05, 0.15, 10_000))
    shuffled_engine = ScriptedEngine.from_truth(truth, raster, batch_size=1, concurrency=16,
                                                delay=lambda answer: next(delays))
    shuffled = detect(raster, shuffled_engine, options)
    assert shuffled_engine.peak_in_flight > 1
    order = [r.index for r in shuffled_engine.requests]
    assert order != sorted(order)  # they really did come back out of order
    assert shuffled.gdf.geometry.equals(in_order.gdf.geometry)
    assert list(shuffled.gdf["tile"]) == list(in_order.gdf["tile"])
    assert list(shuffled.gdf["support"]) == list(in_order.gdf["support"])


def test_cancel_stops_in_flight_requests(synth_scene):
    raster, _ = synth_scene
    engine = ScriptedEngine("There are none.", batch_size=1, concurrency=8, delay=60.0)
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        detect(raster, engine, DetectOptions(), should_cancel=flag.is_set)
    assert time.monotonic() - started < 20  # nowhere near the 60 s the answers would take


class FlakyEngine(ScriptedEngine):
    """Gives up on chosen tiles (as the OpenAI client does after its retries)."""

    def __init__(self, *args, failing=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.failing = set(failing)

    def generate(self, conversations, max_new_tokens=1024, should_cancel=None, **kwargs):
        windows = {c[-1]["content"][0]["image"].info["window"] for c in conversations}
        if windows & self.failing:
            raise EngineUnavailableError("The model server at http://x failed 5 times in a row.")
        return super().generate(conversations, max_new_tokens, should_cancel, **kwargs)


def test_failing_tiles_are_recorded_and_resume_asks_only_them(synth_scene, tmp_path):
    raster, truth = synth_scene
    responses = tmp_path / "r.jsonl"
    bad = (412, 412, 512, 512)
    flaky = FlakyEngine.from_truth(truth, raster, batch_size=1, failing={bad})
    first = detect(raster, flaky, DetectOptions(), responses_out=responses)
    assert [f["window"] for f in first.tiles_failed] == [list(bad)] and not first.complete
    assert "1 tiles FAILED" in first.summary()
    assert len(read_responses(responses)) == 8  # the failed tile left no record: resume asks it

    oracle = ScriptedEngine.from_truth(truth, raster, batch_size=1)
    resumed = detect(raster, oracle, DetectOptions(), responses_out=responses, resume=True)
    assert oracle.request_count == 1 and oracle.requests[0].windows == (bad,)
    assert resumed.complete and resumed.resumed == 8
    whole = detect(raster, ScriptedEngine.from_truth(truth, raster), DetectOptions())
    assert resumed.gdf.geometry.equals(whole.gdf.geometry)
    replay = detect_from_responses(raster, responses, DetectOptions())
    assert replay.gdf.geometry.equals(whole.gdf.geometry)


def test_an_engine_that_is_down_stops_the_run_with_a_sentence(synth_scene, tmp_path):
    raster, _ = synth_scene
    everything = {w for w in [(c, r, 512, 512) for c in (0, 412, 688) for r in (0, 412, 688)]}
    with pytest.raises(EngineUnavailableError, match="in a row, so the run stopped.*--resume"):
        detect(raster, FlakyEngine("There are none.", batch_size=1, failing=everything), DetectOptions())


def test_resume_refuses_a_file_from_other_settings(synth_scene, tmp_path):
    raster, _ = synth_scene
    responses = tmp_path / "r.jsonl"
    detect(raster, ScriptedEngine("There are none."), DetectOptions(tile_size=600), responses_out=responses)
    with pytest.raises(Exception, match="other settings \\(tile_size differ\\)"):
        detect(raster, ScriptedEngine("There are none."), DetectOptions(), responses_out=responses, resume=True)


def _rscovlm(*args, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rscovlm", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def slow_server(tiny_model_dir):
    from rscovlm.engines import create_engine

    engine = create_engine(str(tiny_model_dir), device="cpu", batch_size=1)
    with openai_server(engine) as (url, state):
        yield url, state


def test_a_killed_run_resumes_with_only_the_missing_tiles(synth_scene, slow_server, tmp_path):
    raster, _ = synth_scene
    url, state = slow_server
    common = ["detect", str(raster), "--openai-base-url", url, "--model", "tiny", "--max-new-tokens", "24",
              "--max-in-flight", "2"]
    state.delay = 0.4
    try:
        responses = tmp_path / "r.jsonl"
        run = _rscovlm(*common, "-o", str(tmp_path / "a.gpkg"), "--responses-out", str(responses))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not responses.exists() or responses.read_text().count("\n") < 5):
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(30)
        answered = len(read_responses(responses, tolerate_cut_end=True))
        assert 3 <= answered < 9, answered
        state.received.clear()
        resumed = _rscovlm(*common, "-o", str(tmp_path / "b.gpkg"), "--responses-out", str(responses), "--resume")
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        asked = [b for b in state.received if b.get("stream")]
        assert len(asked) == 9 - answered  # only the tiles the killed run never answered
        assert "reused from the responses file" in out
    finally:
        state.delay = 0.0
    whole = _rscovlm(*common, "-o", str(tmp_path / "c.gpkg"))
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    a, b = gpd.read_file(tmp_path / "b.gpkg"), gpd.read_file(tmp_path / "c.gpkg")
    assert len(a) == len(b) and a.geometry.equals(b.geometry) and list(a["tile"]) == list(b["tile"])


def test_several_rasters_one_broken_in_one_run(synth_scene, slow_server, tmp_path):
    raster, _ = synth_scene
    url, _ = slow_server
    folder = tmp_path / "rasters"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        (folder / name).write_bytes(raster.read_bytes())
    (folder / "broken.tif").write_bytes(b"not a raster at all")
    out = tmp_path / "all.gpkg"
    run = _rscovlm("detect", str(folder), "-o", str(out), "--openai-base-url", url, "--model", "tiny",
                   "--max-new-tokens", "16", "--responses-out", str(tmp_path / "responses"))
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 3, stderr  # partial failure
    assert "FAILED" in stderr and "broken.tif" in stderr and "is not a raster GDAL can read" in stderr
    assert "2 of 3 rasters done; 1 failed: broken.tif" in stdout
    gdf = gpd.read_file(out)
    assert "source" in gdf.columns
    assert len(list((tmp_path / "responses").glob("*.jsonl"))) == 2
    per_raster = tmp_path / "each"
    per_raster.mkdir()
    run = _rscovlm("detect", str(folder / "a.tif"), str(folder / "b.tif"), "-o", str(per_raster),
                   "--openai-base-url", url, "--model", "tiny", "--max-new-tokens", "16")
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert sorted(p.name for p in per_raster.iterdir()) == ["a.gpkg", "b.gpkg"]


def test_output_folder_is_checked_before_the_model_loads(synth_scene, tmp_path):
    raster, _ = synth_scene
    run = _rscovlm("detect", str(raster), "-o", str(tmp_path / "missing" / "x.gpkg"), "--model", "/nonexistent")
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 2 and "missing" in stderr and "Traceback" not in stderr
