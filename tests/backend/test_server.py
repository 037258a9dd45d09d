"""The backend service over real HTTP: auth, Host check, jobs, errors, and one real detection.

Flow tests (queue full, cancel, a crashing job) register runners with a controlled
workload through ``create_app(runners=...)``: the job system, HTTP stack and engine are
real, only the work each job does is chosen by the test.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from server_harness import client, serving, wait_for, write_small_geotiff

from rscovlm.errors import CancelledError, UserError
from rscovlm.server.app import create_app
from rscovlm.server.auth import (
    allowed_hosts_for,
    bearer_matches,
    host_name,
    is_loopback,
    load_or_create_token,
    token_path,
)

TOKEN = "test-token-" + "x" * 32


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from rscovlm.engines import create_engine

    return create_engine(str(tiny_model_dir), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    path = tmp_path_factory.mktemp("raster") / "small.tif"
    write_small_geotiff(path)
    return path


def quick(request, engine, progress, should_cancel):
    progress(1, 1)
    return {"echo": request.raster_path}


def stepping(steps: int, pause: float):
    """A runner that reports progress step by step and honours cancel between steps."""

    def run(request, engine, progress, should_cancel):
        progress(0, steps)
        for done in range(1, steps + 1):
            if should_cancel():
                raise CancelledError("cancelled by the test")
            time.sleep(pause)
            progress(done, steps)
        return {"steps": steps}

    return run


@pytest.fixture
def flow_server(engine):
    """Start a server with the given runners; yields (base_url) per call."""
    started = []

    def start(runners, **options):
        app = create_app(engine, token=TOKEN, version="test", runners=runners, **options)
        context = serving(app)
        started.append(context)
        return context.__enter__()

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def quick_url(engine):
    """One shared server whose jobs finish at once, for tests that do not depend on timing."""
    with serving(create_app(engine, token=TOKEN, version="test", runners={"detect": quick, "ask": quick})) as url:
        yield url


# --- who may talk to the server ----------------------------------------------------------


def test_health_needs_no_token_and_says_nothing_else(quick_url):
    answer = client(quick_url, None).get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/status"),
        ("POST", "/v1/jobs/detect"),
        ("POST", "/v1/jobs/ask"),
        ("GET", "/v1/jobs/abc"),
        ("GET", "/v1/jobs/abc/result"),
        ("DELETE", "/v1/jobs/abc"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/path"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Bearer"])
def test_every_endpoint_but_health_needs_the_token(quick_url, method, path, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = client(quick_url, None).request(method, path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "token" in answer.json()["detail"]


def test_other_auth_schemes_and_token_prefixes_are_refused(quick_url):
    plain = client(quick_url, None)
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x"):
        assert plain.get("/v1/status", headers={"Authorization": header}).status_code == 401
    assert plain.get("/v1/status", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example:80", "192.168.1.10"]
)
def test_foreign_host_header_is_refused_even_with_the_token(quick_url, host):
    for path in ("/health", "/v1/status"):
        answer = client(quick_url, TOKEN).get(path, headers={"Host": host})
        assert answer.status_code == 400
        assert "loopback" in answer.json()["detail"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8765", "127.0.0.1:1", "[::1]:8765", "LOCALHOST"])
def test_loopback_host_names_are_accepted(quick_url, host):
    assert client(quick_url, TOKEN).get("/v1/status", headers={"Host": host}).status_code == 200


def test_no_cors_headers_ever_even_on_preflight(quick_url):
    browser = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
    answers = [
        client(quick_url, None).options("/v1/jobs/detect", headers=browser),
        client(quick_url, TOKEN).options("/v1/jobs/detect", headers=browser),
        client(quick_url, None).options("/health", headers=browser),
        client(quick_url, TOKEN).get("/v1/status", headers={"Origin": "http://evil.example"}),
        client(quick_url, None).get("/health", headers={"Origin": "http://evil.example"}),
    ]
    for answer in answers:
        assert not any(name.lower().startswith("access-control-") for name in answer.headers), answer.headers
    assert answers[0].status_code == 401  # a preflight carries no token, so it never succeeds
    assert answers[3].status_code == 200


def test_status_describes_the_real_engine_and_queue(quick_url):
    status = client(quick_url, TOKEN).get("/v1/status").json()
    assert status["version"] == "test"
    assert status["device"] == "cpu"
    assert status["queue_length"] == 0 and status["max_queue"] == 8
    assert {"model", "adapter", "dtype", "quantization", "attention", "gpu", "memory"} <= set(status)


def test_openapi_schema_is_served_with_the_token_and_declares_bearer_auth(quick_url):
    schema = client(quick_url, TOKEN).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"/health", "/v1/status", "/v1/jobs/detect", "/v1/jobs/ask", "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/result"} <= set(schema["paths"])
    assert schema["paths"]["/health"]["get"]["security"] == []


# --- the token file ----------------------------------------------------------------------


def test_token_file_is_owner_only_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RSCOVLM_TOKEN_FILE", str(tmp_path / "cfg" / "rscovlm" / "token"))
    first = load_or_create_token()
    path = token_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 40 and load_or_create_token() == first
    assert not [p for p in path.parent.iterdir() if p.name != "token"]  # no temp files left


def test_token_readable_by_others_is_replaced_with_a_warning(tmp_path, monkeypatch, caplog):
    path = tmp_path / "token"
    monkeypatch.setenv("RSCOVLM_TOKEN_FILE", str(path))
    old = load_or_create_token()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        new = load_or_create_token()
    assert new != old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "other users" in caplog.text


def test_token_path_follows_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.delenv("RSCOVLM_TOKEN_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert token_path() == tmp_path / "rscovlm" / "token"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert token_path().parts[-3:] == (".config", "rscovlm", "token")


def test_auth_helpers():
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN) and not bearer_matches(None, TOKEN)
    assert not bearer_matches("Bearer ", "")
    assert host_name("[::1]:8765") == "::1" and host_name("LocalHost:1") == "localhost"
    assert host_name("::1") == "::1"
    assert allowed_hosts_for("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}
    assert "10.0.0.5" in allowed_hosts_for("10.0.0.5")
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")


# --- requests that are wrong -------------------------------------------------------------


def test_validation_error_names_the_field_and_the_problem(quick_url, raster):
    api = client(quick_url, TOKEN)
    answer = api.post("/v1/jobs/detect", json={"raster_path": str(raster), "tile_size": 5000})
    assert answer.status_code == 422
    body = answer.json()
    assert body["errors"][0]["field"] == "tile_size"
    assert "2048" in body["errors"][0]["problem"] and "tile_size" in body["detail"]

    answer = api.post("/v1/jobs/detect", json={"raster_path": str(raster), "tile_size": 256, "overlap": 256})
    problem = "overlap (256) must be smaller than tile_size (256)"
    assert answer.json()["errors"] == [{"field": "overlap", "problem": problem}]

    answer = api.post("/v1/jobs/detect", json={"raster_path": str(raster), "tilesize": 256})
    assert answer.json()["errors"][0]["field"] == "tilesize"
    assert "spelling" in answer.json()["errors"][0]["problem"]

    answer = api.post("/v1/jobs/detect", json={"raster_path": str(raster), "region": {"bounds": [3, 0, 1, 1]}})
    assert answer.json()["errors"][0]["field"] == "region.bounds"

    answer = api.post("/v1/jobs/ask", json={"raster_path": str(raster), "question": "   "})
    assert answer.json()["errors"][0]["field"] == "question"

    answer = api.post("/v1/jobs/detect", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body"


def test_bad_raster_path_and_corrupt_file_get_a_sentence_and_the_server_goes_on(quick_url, tmp_path, raster):
    api = client(quick_url, TOKEN)
    missing = api.post("/v1/jobs/detect", json={"raster_path": str(tmp_path / "nope.tif")})
    assert missing.status_code == 422
    assert "there is no file at" in missing.json()["detail"]
    relative = api.post("/v1/jobs/ask", json={"raster_path": "nope.tif", "question": "what?"})
    assert "absolute path" in relative.json()["detail"]

    corrupt = tmp_path / "x.tif"
    corrupt.write_bytes(b"\x00garbage, not a TIFF\xff" * 100)
    answer = api.post("/v1/jobs/detect", json={"raster_path": str(corrupt)})
    assert answer.status_code == 400
    assert "not a raster" in answer.json()["detail"]
    assert "Traceback" not in answer.text

    good = api.post("/v1/jobs/detect", json={"raster_path": str(raster)})
    assert good.status_code == 202
    assert wait_for(api, good.json()["job_id"], {"succeeded"})["progress"] == {"done": 1, "total": 1}


def test_empty_path_and_empty_class_list_are_refused_and_the_schema_says_so(quick_url, raster):
    api = client(quick_url, TOKEN)
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    for name in ("DetectRequest", "AskRequest"):
        fields = schemas[name]["properties"]
        assert fields["raster_path"]["minLength"] == 1, name
        classes = next(kind for kind in fields["classes"]["anyOf"] if kind.get("type") == "array")
        assert classes["minItems"] == 1 and classes["items"]["minLength"] == 1, name

    answer = api.post("/v1/jobs/detect", json={"raster_path": "", "classes": []})
    assert answer.status_code == 422
    problems = {p["field"]: p["problem"] for p in answer.json()["errors"]}
    assert "full path of a raster file" in problems["raster_path"]
    assert "at least one class name" in problems["classes"]
    answer = api.post("/v1/jobs/detect", json={"raster_path": "   ", "classes": ["plane", " "]})
    problems = {p["field"]: p["problem"] for p in answer.json()["errors"]}
    assert set(problems) == {"raster_path", "classes.1"} and problems["classes.1"] == "cannot be empty"
    answer = api.post("/v1/jobs/ask", json={"raster_path": str(raster), "task": "classify", "classes": []})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "classes"


def test_request_defaults_and_limits_come_from_the_defaults_module(quick_url):
    from rscovlm import defaults

    schemas = client(quick_url, TOKEN).get("/openapi.json").json()["components"]["schemas"]
    detect, ask = schemas["DetectRequest"]["properties"], schemas["AskRequest"]["properties"]
    assert detect["tile_size"]["default"] == defaults.TILE_SIZE
    assert (detect["tile_size"]["minimum"], detect["tile_size"]["maximum"]) == (
        defaults.TILE_SIZE_MIN, defaults.TILE_SIZE_MAX)
    assert detect["overlap"]["default"] == defaults.OVERLAP
    assert detect["max_new_tokens"]["default"] == defaults.DETECT_MAX_NEW_TOKENS == 16384
    assert ask["max_new_tokens"]["default"] == defaults.ASK_MAX_NEW_TOKENS
    for tokens in (detect["max_new_tokens"], ask["max_new_tokens"]):
        assert (tokens["minimum"], tokens["maximum"]) == (defaults.MIN_NEW_TOKENS, defaults.MAX_NEW_TOKENS_LIMIT)


def test_complex_and_pipe_rasters_get_a_sentence_not_a_500_or_a_hang(quick_url, tmp_path):
    import rasterio
    from affine import Affine

    api = client(quick_url, TOKEN)
    slc = tmp_path / "slc.tif"
    with rasterio.open(slc, "w", driver="GTiff", width=8, height=8, count=1, dtype="complex64",
                       crs="EPSG:32633", transform=Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 4500000.0)) as dst:
        dst.write(np.full((1, 8, 8), 1 + 2j, dtype="complex64"))
    for kind, body in (("detect", {}), ("ask", {"question": "what is here?"})):
        answer = api.post(f"/v1/jobs/{kind}", json={"raster_path": str(slc), **body})
        assert answer.status_code == 400, answer.text
        assert "complex values" in answer.json()["detail"] and "amplitude" in answer.json()["detail"]
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.tif"
        os.mkfifo(fifo)
        answer = api.post("/v1/jobs/detect", json={"raster_path": str(fifo)}, timeout=10)
        assert answer.status_code in (400, 422) and "regular file" in answer.json()["detail"]


def test_405_names_every_method_the_path_serves(quick_url):
    api = client(quick_url, TOKEN)
    for method in ("OPTIONS", "PUT", "PATCH"):
        answer = api.request(method, "/v1/jobs/abc")
        assert answer.status_code == 405
        assert answer.headers["allow"] == "DELETE, GET", answer.headers
        assert "DELETE, GET" in answer.json()["detail"]
    answer = api.request("OPTIONS", "/v1/jobs/abc/result")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
    answer = api.request("PUT", "/v1/status")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"


def test_body_too_large_gets_413_declared_or_chunked(quick_url, raster):
    api = client(quick_url, TOKEN)
    big = {"raster_path": str(raster), "question": "x" * 70_000}
    answer = api.post("/v1/jobs/ask", json=big)
    assert answer.status_code == 413
    assert "64 KiB" in answer.json()["detail"]

    def chunks():  # no Content-Length: the server must count as it reads
        yield b'{"raster_path": "' + str(raster).encode() + b'", "question": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}'

    answer = api.post("/v1/jobs/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert api.get("/v1/status").status_code == 200


def test_unknown_job_is_404_and_unfinished_result_is_409(flow_server, raster):
    release = threading.Event()

    def blocked(request, engine, progress, should_cancel):
        release.wait(10)
        return {"ok": True}

    api = client(flow_server({"detect": blocked, "ask": quick}), TOKEN)
    unknown = (("GET", "/v1/jobs/deadbeef"), ("GET", "/v1/jobs/deadbeef/result"), ("DELETE", "/v1/jobs/deadbeef"))
    for method, path in unknown:
        answer = api.request(method, path)
        assert answer.status_code == 404 and "no job" in answer.json()["detail"]
    job = api.post("/v1/jobs/detect", json={"raster_path": str(raster)}).json()["job_id"]
    early = api.get(f"/v1/jobs/{job}/result")
    assert early.status_code == 409 and "poll" in early.json()["detail"]
    release.set()
    wait_for(api, job, {"succeeded"})
    assert api.get(f"/v1/jobs/{job}/result").json() == {"ok": True}


# --- the job system ----------------------------------------------------------------------


def test_queue_full_gives_429_and_queued_jobs_cancel_at_once(flow_server, raster):
    release = threading.Event()

    def blocked(request, engine, progress, should_cancel):
        release.wait(10)
        return {"ok": True}

    api = client(flow_server({"detect": blocked, "ask": blocked}, max_queue=2), TOKEN)
    body = {"raster_path": str(raster)}
    running = api.post("/v1/jobs/detect", json=body).json()["job_id"]
    wait_for(api, running, {"running"})
    queued = [api.post("/v1/jobs/detect", json=body) for _ in range(2)]
    assert [a.status_code for a in queued] == [202, 202]
    assert api.get(f"/v1/jobs/{queued[1].json()['job_id']}").json()["queue_position"] == 2

    full = api.post("/v1/jobs/detect", json=body)
    assert full.status_code == 429
    assert "queue is full" in full.json()["detail"]
    assert api.get("/v1/status").json()["queue_length"] == 2

    cancelled = api.delete(f"/v1/jobs/{queued[0].json()['job_id']}").json()
    assert cancelled["state"] == "cancelled"
    assert api.post("/v1/jobs/ask", json={**body, "question": "and now?"}).status_code == 202
    release.set()
    wait_for(api, queued[1].json()["job_id"], {"succeeded"})


def test_cancel_mid_job_stops_within_one_step(flow_server, raster):
    api = client(flow_server({"detect": stepping(steps=200, pause=0.03), "ask": quick}), TOKEN)
    job = api.post("/v1/jobs/detect", json={"raster_path": str(raster)}).json()["job_id"]
    deadline = time.monotonic() + 10
    while api.get(f"/v1/jobs/{job}").json()["progress"]["done"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    asked = time.monotonic()
    assert api.delete(f"/v1/jobs/{job}").json()["message"].startswith("cancelling")
    final = wait_for(api, job, {"cancelled", "succeeded", "failed"}, timeout=5)
    assert final["state"] == "cancelled"
    assert time.monotonic() - asked < 1.0
    assert final["progress"]["done"] < 200
    assert api.get(f"/v1/jobs/{job}/result").status_code == 409


def test_progress_and_eta_move_while_running(flow_server, raster):
    api = client(flow_server({"detect": stepping(steps=12, pause=0.08), "ask": quick}), TOKEN)
    job = api.post("/v1/jobs/detect", json={"raster_path": str(raster)}).json()["job_id"]
    seen = []
    while True:
        status = api.get(f"/v1/jobs/{job}").json()
        if status["state"] == "running":
            seen.append((status["progress"]["done"], status["eta_s"]))
        if status["state"] == "succeeded":
            break
        time.sleep(0.05)
    done_values = {done for done, _ in seen}
    etas = [eta for done, eta in seen if eta is not None]
    assert len(done_values) >= 3
    assert etas and all(eta >= 0 for eta in etas)
    assert max(etas) > min(etas)  # it shrinks as the job advances
    assert max(etas) < 5  # 12 steps of 0.08 s: an honest estimate, not a wild one
    assert status["progress"] == {"done": 12, "total": 12} and status["eta_s"] == 0.0


def test_server_survives_crashing_and_failing_jobs(flow_server, raster, caplog):
    def crash(request, engine, progress, should_cancel):
        raise RuntimeError("boom in the pipeline")

    def refuse(request, engine, progress, should_cancel):
        raise UserError("band 4 does not exist: the raster has 3 bands.")

    api = client(flow_server({"detect": crash, "ask": refuse}), TOKEN)
    with caplog.at_level(logging.ERROR):
        crashed = api.post("/v1/jobs/detect", json={"raster_path": str(raster)}).json()["job_id"]
        status = wait_for(api, crashed, {"failed"})
    assert status["error"].startswith("internal error while running the job")
    assert "see the server log" in status["error"] and "Traceback" not in status["error"]
    assert "Traceback" in caplog.text or "boom in the pipeline" in caplog.text

    refused = api.post("/v1/jobs/ask", json={"raster_path": str(raster), "question": "bands?"}).json()["job_id"]
    assert wait_for(api, refused, {"failed"})["error"] == "band 4 does not exist: the raster has 3 bands."
    result = api.get(f"/v1/jobs/{refused}/result")
    assert result.status_code == 409 and "band 4" in result.json()["detail"]

    again = api.post("/v1/jobs/detect", json={"raster_path": str(raster)})
    assert again.status_code == 202  # the worker is still alive and takes jobs
    assert wait_for(api, again.json()["job_id"], {"failed"})["state"] == "failed"


def test_finished_jobs_expire_after_the_ttl_and_beyond_the_cap(flow_server, raster):
    body = {"raster_path": str(raster)}
    capped = client(flow_server({"detect": quick, "ask": quick}, max_finished_jobs=2), TOKEN)
    ids = [capped.post("/v1/jobs/detect", json=body).json()["job_id"] for _ in range(3)]
    wait_for(capped, ids[-1], {"succeeded"})  # one worker, first in first out: all are done
    assert capped.get(f"/v1/jobs/{ids[0]}").status_code == 404
    assert [capped.get(f"/v1/jobs/{job}").json()["state"] for job in ids[1:]] == ["succeeded"] * 2

    short = client(flow_server({"detect": quick, "ask": quick}, job_ttl_s=0.3), TOKEN)
    job = short.post("/v1/jobs/detect", json=body).json()["job_id"]
    wait_for(short, job, {"succeeded"})
    time.sleep(0.4)
    expired = short.get(f"/v1/jobs/{job}")
    assert expired.status_code == 404 and "expired" in expired.json()["detail"]


def test_shutdown_cancels_the_running_job(engine, raster):
    runner = stepping(steps=500, pause=0.02)
    app = create_app(engine, token=TOKEN, runners={"detect": runner, "ask": quick})
    with serving(app) as url:
        api = client(url, TOKEN)
        job = api.post("/v1/jobs/detect", json={"raster_path": str(raster)}).json()["job_id"]
        wait_for(api, job, {"running"})
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert app.state.jobs.status(job)["state"] == "cancelled"
    assert app.state.jobs.counts() == {"queued": 0, "running": 0}


# --- the committed schema, and one real detection ----------------------------------------


def test_docs_openapi_json_is_current(tmp_path):
    from pathlib import Path

    from rscovlm.cli.serve import export_openapi

    fresh = export_openapi(tmp_path / "openapi.json")
    kept = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert json.loads(kept.read_text()) == json.loads(json.dumps(fresh)), (
        "docs/openapi.json is stale: run `rscovlm serve --write-openapi docs/openapi.json`"
    )


def test_real_detection_over_http_returns_geojson_in_the_raster_crs(engine, synth_scene):
    import rasterio

    raster, _truth = synth_scene
    with rasterio.open(raster) as src:
        epsg = src.crs.to_epsg()
        left, bottom, right, top = src.bounds
    region = [left, top - (top - bottom) * 0.2, left + (right - left) * 0.2, top]  # one tile's worth
    app = create_app(engine, token=TOKEN, version="test")
    with serving(app) as url:
        api = client(url, TOKEN)
        answer = api.post(
            "/v1/jobs/detect",
            json={"raster_path": str(raster), "classes": ["plane", "ship"], "tile_size": 256,
                  "overlap": 32, "region": {"bounds": region}, "max_new_tokens": 64},
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()["job_id"]
        status = wait_for(api, job, {"succeeded", "failed", "cancelled"}, timeout=240)
        assert status["state"] == "succeeded", status
        assert status["progress"]["done"] == status["progress"]["total"] >= 1
        collection = api.get(f"/v1/jobs/{job}/result").json()
    assert collection["type"] == "FeatureCollection"
    assert str(epsg) in json.dumps(collection["crs"])
    assert "crs_wkt" in collection
    assert collection["rscovlm"]["tiles_total"] == status["progress"]["total"]
    # The job kept its raw per-tile responses, replayable without the model.
    from rscovlm.pipelines.detect import DetectOptions, detect_from_responses
    from rscovlm.responses import read_responses

    kept = Path(collection["rscovlm"]["responses_path"])
    assert len(read_responses(kept)) >= status["progress"]["total"]
    options = DetectOptions(classes=("plane", "ship"), tile_size=256, overlap=32, bounds=tuple(region))
    replayed = detect_from_responses(raster, kept, options)
    assert len(replayed.gdf) == len(collection["features"])
    for feature in collection["features"]:
        assert {"class", "support", "tile", "area_m2"} <= set(feature["properties"])


# --- the command ---------------------------------------------------------------------------


def _rscovlm_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "rscovlm"]


def _start_serve(arguments: list[str], env: dict):
    """``rscovlm serve ARGUMENTS`` in a subprocess, and what it printed up to its device line."""
    import subprocess

    process = subprocess.Popen([*_rscovlm_command(), "serve", *arguments], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    printed = []
    for line in process.stdout:
        printed.append(line)
        if line.strip().startswith("device:"):
            break
    return process, "".join(printed)


def test_rscovlm_serve_starts_says_where_answers_and_stops_cleanly(tiny_model_dir, tmp_path):
    import signal
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RSCOVLM_TOKEN_FILE": str(tmp_path / "conf" / "token"), "HF_HUB_OFFLINE": "1"}
    process, text = _start_serve(["--model", str(tiny_model_dir), "--device", "cpu", "--port", str(port)], env)
    try:
        assert f"http://127.0.0.1:{port}" in text and str(tmp_path / "conf" / "token") in text
        token = (tmp_path / "conf" / "token").read_text().strip()
        assert token not in text  # only --print-token shows it
        deadline = time.monotonic() + 30
        while True:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
        assert status.status_code == 200 and status.json()["device"] == "cpu"
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "running on the CPU" in errors
    assert "Application shutdown complete" in errors


def test_rscovlm_serve_on_a_busy_port_says_so_without_loading_the_model(tmp_path):
    import socket
    import subprocess

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*_rscovlm_command(), "serve", "--model", str(tmp_path / "no-model"), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "RSCOVLM_TOKEN_FILE": str(tmp_path / "token")},
        )
    assert done.returncode == 2
    assert "another server may be running there" in done.stderr
    assert "Traceback" not in done.stderr


def test_real_question_over_http_and_a_follow_up_in_the_same_conversation(engine, synth_scene):
    import rasterio

    raster, _truth = synth_scene
    with rasterio.open(raster) as src:
        left, bottom, right, top = src.bounds
    # A small corner keeps the picture (and the tiny model's work) small.
    region = {"bounds": [left, top - (top - bottom) * 0.15, left + (right - left) * 0.15, top]}
    with serving(create_app(engine, token=TOKEN, version="test")) as url:
        api = client(url, TOKEN)
        first = api.post("/v1/jobs/ask", json={"raster_path": str(raster), "question": "How many planes?",
                                               "zoom": False, "region": region, "max_new_tokens": 32})
        assert first.status_code == 202, first.text
        assert wait_for(api, first.json()["job_id"], {"succeeded", "failed"}, timeout=240)["state"] == "succeeded"
        answer = api.get(f"/v1/jobs/{first.json()['job_id']}/result").json()
        assert isinstance(answer["answer"], str) and answer["conversation_id"]

        follow_up = {"raster_path": str(raster), "question": "And ships?", "zoom": False, "region": region,
                     "max_new_tokens": 32, "conversation_id": answer["conversation_id"]}
        follow = api.post("/v1/jobs/ask", json=follow_up)
        wait_for(api, follow.json()["job_id"], {"succeeded", "failed"}, timeout=240)
        again = api.get(f"/v1/jobs/{follow.json()['job_id']}/result").json()
        assert again["follow_up"] is True and again["conversation_id"] == answer["conversation_id"]

        unknown = api.post("/v1/jobs/ask", json={"raster_path": str(raster), "question": "Hello?",
                                                 "conversation_id": "not-a-real-one"})
        failed = wait_for(api, unknown.json()["job_id"], {"succeeded", "failed"}, timeout=60)
        assert failed["state"] == "failed" and "unknown or expired" in failed["error"]


def test_single_turn_tasks_run_as_ask_jobs_and_need_their_inputs(engine, synth_scene):
    import rasterio

    raster, _truth = synth_scene
    with rasterio.open(raster) as src:
        left, bottom, right, top = src.bounds
        epsg = src.crs.to_epsg()
    region = {"bounds": [left, top - (top - bottom) * 0.15, left + (right - left) * 0.15, top]}
    base = {"raster_path": str(raster), "region": region, "max_new_tokens": 16}
    with serving(create_app(engine, token=TOKEN, version="test")) as url:
        api = client(url, TOKEN)
        missing = api.post("/v1/jobs/ask", json={**base, "task": "classify"})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "classes"
        missing = api.post("/v1/jobs/ask", json={**base, "task": "ground"})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "question"
        bad = api.post("/v1/jobs/ask", json={**base, "task": "caption", "conversation_id": "abc"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "conversation_id"

        results = {}
        for task, extra in (("caption", {}), ("classify", {"classes": ["airport", "farmland", "river"]}),
                            ("ground", {"question": "the white plane"})):
            job = api.post("/v1/jobs/ask", json={**base, "task": task, **extra})
            assert job.status_code == 202, job.text
            state = wait_for(api, job.json()["job_id"], {"succeeded", "failed"}, timeout=240)
            assert state["state"] == "succeeded", state
            results[task] = api.get(f"/v1/jobs/{job.json()['job_id']}/result").json()
    assert {r["task"] for r in results.values()} == {"caption", "classify", "ground"}
    assert results["classify"]["label"] in ("airport", "farmland", "river")
    assert all(r["conversation_id"] is None for r in results.values())
    for result in results.values():  # the region shown to the model comes back on the map
        kinds = [f["properties"]["kind"] for f in result["features"]["features"]]
        assert "region" in kinds and str(epsg) in json.dumps(result["features"]["crs"])


def test_a_cancelled_detection_keeps_no_half_written_responses_file(engine, synth_scene):
    from rscovlm.server.runners import responses_dir

    raster, _truth = synth_scene
    before = set(responses_dir().glob("*.jsonl")) if responses_dir().exists() else set()
    with serving(create_app(engine, token=TOKEN, version="test")) as url:
        api = client(url, TOKEN)
        job = api.post("/v1/jobs/detect", json={"raster_path": str(raster), "tile_size": 128, "overlap": 0,
                                                "max_new_tokens": 64}).json()["job_id"]
        wait_until = time.monotonic() + 120
        while api.get(f"/v1/jobs/{job}").json()["progress"]["done"] < 1:  # some tiles are on disk
            assert time.monotonic() < wait_until
            time.sleep(0.05)
        assert any(responses_dir().glob("*.jsonl"))  # the run writes as it goes...
        api.delete(f"/v1/jobs/{job}")
        assert wait_for(api, job, {"succeeded", "failed", "cancelled"}, timeout=120)["state"] == "cancelled"
    assert set(responses_dir().glob("*.jsonl")) == before  # ...and a cancelled run leaves nothing behind


def test_model_free_serve_answers_jobs_and_clears_a_killed_servers_partial_file(tmp_path, synth_scene):
    import signal
    import socket

    import httpx

    raster, _truth = synth_scene
    cache = tmp_path / "cache"
    stale = cache / "rscovlm" / "responses" / "20260101-000000-deadbeef.jsonl.partial"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"col_off": 0')  # what a server killed with -9 mid-job leaves
    kept = stale.parent / "20260101-000000-cafef00d.jsonl"
    kept.write_text("")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RSCOVLM_TOKEN_FILE": str(tmp_path / "token"), "XDG_CACHE_HOME": str(cache)}
    process, text = _start_serve(["--scripted-answers", "none", "--port", str(port)], env)
    try:
        assert "Removed 1 unfinished responses file" in text
        assert not stale.exists() and kept.exists()
        token = (tmp_path / "token").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                job = api.post("/v1/jobs/detect", json={"raster_path": str(raster)})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
        assert job.status_code == 202, job.text
        assert wait_for(api, job.json()["job_id"], {"succeeded", "failed"}, timeout=60)["state"] == "succeeded"
        result = api.get(f"/v1/jobs/{job.json()['job_id']}/result").json()
        assert result["features"] == [] and result["rscovlm"]["tiles_total"] == 9
        assert result["rscovlm"]["responses_path"].endswith(".jsonl")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
