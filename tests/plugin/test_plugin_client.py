"""The plugin's client and tasks against the real backend server on loopback."""

from __future__ import annotations

import time

import pytest
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsRasterLayer

from rscovlm_qgis.client import BackendClient, BackendError
from rscovlm_qgis.params import DetectParams, ParamsError, params_for_layer
from rscovlm_qgis.tasks import DetectTask

# A random tiny model rarely stops by itself: a small answer budget keeps each tile quick.
QUICK = 32


def scene_params(path, **options) -> DetectParams:
    options.setdefault("max_new_tokens", QUICK)
    return DetectParams(raster_path=str(path), layer_name="scene", crs_authid="", crs_wkt="", **options)


def wait_for_state(client: BackendClient, job_id: str, states: set[str], timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.job(job_id)
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_health_and_status_answer(qgis_app, client):
    assert client.health() is True
    status = client.status()
    assert "version" in status and "queue_length" in status


def test_a_wrong_token_is_refused_with_the_servers_sentence(qgis_app, backend, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token-" + "x" * 40)
    with pytest.raises(BackendError) as caught:
        BackendClient(backend.url, wrong).status()
    assert caught.value.http_status == 401
    assert len(str(caught.value)) > 20  # a sentence, not a bare code


def test_a_missing_token_file_says_where_it_looked(qgis_app, backend, tmp_path):
    missing = tmp_path / "nowhere" / "token"
    with pytest.raises(BackendError, match="rscovlm serve") as caught:
        BackendClient(backend.url, missing).status()
    assert str(missing) in str(caught.value)


def test_a_silent_port_gives_the_start_it_sentence(qgis_app, closed_url, tmp_path):
    with pytest.raises(BackendError) as caught:
        BackendClient(closed_url, tmp_path / "token").health()
    message = str(caught.value)
    assert closed_url in message and "does not answer" in message and "rscovlm serve --model" in message
    assert caught.value.http_status is None


def test_a_bad_raster_path_is_refused_with_a_sentence_naming_it(qgis_app, client, tmp_path):
    missing = tmp_path / "no-such.tif"
    with pytest.raises(BackendError) as caught:
        client.submit_detect(scene_params(missing))
    assert caught.value.http_status == 422
    assert str(missing) in str(caught.value)
    assert client.health()  # and the server keeps serving


def test_submit_a_region_cancel_a_queued_job_poll_and_fetch(qgis_app, client, synth_scene, small_scene):
    raster, _ = synth_scene
    layer = QgsRasterLayer(str(raster), "scene")
    extent = layer.extent()  # a 250 m (500 px) square in the north-west corner: 1 tile, not 9
    region = (extent.xMinimum(), extent.yMaximum() - 250, extent.xMinimum() + 250, extent.yMaximum())
    params = params_for_layer(layer, region=region, max_new_tokens=QUICK)
    body = params.to_request()
    assert body["region"] == {"bounds": list(region), "crs": layer.crs().authid()}
    assert body["max_new_tokens"] == QUICK

    job_id = client.submit_detect(params)
    queued = client.submit_detect(scene_params(small_scene))  # waits behind the first: one model worker
    client.cancel(queued)
    assert client.job(queued)["state"] == "cancelled"

    job = wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job
    assert job["progress"]["done"] == job["progress"]["total"] == 1
    collection = client.result(job_id)
    assert collection["type"] == "FeatureCollection"
    assert QgsCoordinateReferenceSystem.fromWkt(collection["crs_wkt"]) == layer.crs()
    with pytest.raises(BackendError) as caught:
        client.result(queued)
    assert caught.value.http_status == 409 and str(caught.value)


def test_params_refuse_a_layer_that_is_not_a_file(qgis_app):
    tiles = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png", "tiles", "wms")
    assert tiles.isValid()
    with pytest.raises(ParamsError, match="not a raster file"):
        params_for_layer(tiles)
    with pytest.raises(ParamsError, match="Choose a raster layer"):
        params_for_layer(None)


def test_params_take_the_file_and_crs_of_a_gdal_layer(qgis_app, synth_scene):
    raster, _ = synth_scene
    layer = QgsRasterLayer(str(raster), "scene")
    params = params_for_layer(layer)
    assert params.raster_path == str(raster.resolve())
    assert params.crs_authid == layer.crs().authid() and params.crs_authid.startswith("EPSG:")
    with pytest.raises(ParamsError, match="overlap"):
        params_for_layer(layer, tile_size=256, overlap=300)


def test_detect_task_follows_the_job_and_returns_the_collection(qgis_app, qtbot, client, small_scene):
    raster = small_scene
    task = DetectTask(client, scene_params(raster), poll_s=0.2)
    outcomes = []
    task.done.connect(outcomes.append)
    QgsApplication.taskManager().addTask(task)
    qtbot.waitUntil(lambda: bool(outcomes), timeout=120_000)
    outcome = outcomes[0]
    assert outcome.error is None and not outcome.cancelled
    assert outcome.geojson["type"] == "FeatureCollection" and outcome.job_id


def test_cancelling_the_task_cancels_the_backend_job(qgis_app, qtbot, client, small_scene):
    blocker = client.submit_detect(scene_params(small_scene, max_new_tokens=128))  # keeps the task's job queued
    task = DetectTask(client, scene_params(small_scene), poll_s=0.2)
    outcomes = []
    task.done.connect(outcomes.append)
    QgsApplication.taskManager().addTask(task)
    qtbot.waitUntil(lambda: task.outcome.job_id is not None, timeout=30_000)
    task.cancel()
    qtbot.waitUntil(lambda: bool(outcomes), timeout=30_000)
    outcome = outcomes[0]
    assert outcome.cancelled and outcome.geojson is None and outcome.error is None
    assert client.job(outcome.job_id)["state"] == "cancelled"
    client.cancel(blocker)
    wait_for_state(client, blocker, {"succeeded", "failed", "cancelled"})
