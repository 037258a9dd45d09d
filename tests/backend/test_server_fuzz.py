"""Property-based fuzzing of the live API from its own OpenAPI schema: never a 5xx.

Schemathesis generates valid and invalid requests for every operation from the schema
the app builds, sends them with the token to a real server on loopback, and checks each
answer. The schema is built eagerly (the same code the server runs, and a test checks the
served copy is identical) because schemathesis' fixture-based lazy loader does not work
with pytest 9. Bounded to 30 examples per operation: well under a minute here.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from server_harness import client, serving

from rscovlm.server.app import create_app

TOKEN = "fuzz-token-" + "z" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 30

schema = schemathesis.openapi.from_dict(create_app(None, token=TOKEN).openapi())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=True,
)


def finished_at_once(request, engine, progress, should_cancel):
    progress(1, 1)
    return {"echo": request.raster_path}


@pytest.fixture(scope="module")
def live_url(tiny_model_dir):
    from rscovlm.engines import create_engine

    engine = create_engine(str(tiny_model_dir), device="cpu")
    runners = {"detect": finished_at_once, "ask": finished_at_once}
    with serving(create_app(engine, token=TOKEN, runners=runners, max_queue=4)) as url:
        yield url


def no_cors_headers(ctx, response, case):
    leaked = [name for name in response.headers if name.lower().startswith("access-control-")]
    if leaked:
        raise AssertionError(f"CORS headers sent: {leaked}")


def test_served_schema_is_the_fuzzed_schema(live_url):
    assert client(live_url, TOKEN).get("/openapi.json").json() == schema.raw_schema


def test_405_allow_header_lists_the_methods_the_schema_declares(live_url):
    """OPTIONS is served on no path, so each answers 405 with Allow = every method that the
    schema's paths matching it declare (/v1/jobs/detect is also a /v1/jobs/{job_id})."""
    paths = schema.raw_schema["paths"]
    templates = {path: re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$") for path in paths}
    api = client(live_url, TOKEN)
    for path in paths:
        concrete = path.replace("{job_id}", "some-job")
        declared = sorted({m.upper() for p, rx in templates.items() if rx.match(concrete) for m in paths[p]})
        answer = api.request("OPTIONS", concrete)
        assert answer.status_code == 405, (path, answer.status_code)
        assert answer.headers["allow"].split(", ") == declared, (path, answer.headers["allow"])


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case, live_url):
    response = case.call(base_url=live_url, headers=AUTH, timeout=10)
    case.validate_response(response, checks=[not_a_server_error], additional_checks=[no_cors_headers])
    assert response.status_code < 500
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("detail"), str) and body["detail"], body
