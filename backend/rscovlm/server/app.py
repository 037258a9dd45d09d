"""The FastAPI application: the v1 HTTP API over a job queue and one loaded engine.

Handlers stay thin: validate (schemas), check the raster opens, enqueue (jobs), answer.
Every error leaves as ``{"detail": sentence}``; validation errors add
``"errors": [{"field", "problem"}]``. Everything but ``GET /health`` needs the bearer
token, the OpenAPI schema at ``/openapi.json`` included (the plugin does not need it; a
developer passes the token like any client). No interactive docs pages are served: they
load scripts from the internet, which a loopback service for GIS users should not do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import __version__
from ..errors import UserError
from .auth import LOOPBACK_HOSTS, GuardMiddleware, Receive, Scope, Send, send_error
from .jobs import JobManager, Runner
from .runners import default_runners
from .schemas import (
    MAX_BODY_BYTES,
    AskRequest,
    DetectRequest,
    ErrorBody,
    Health,
    JobAccepted,
    JobStatus,
    ServerStatus,
)

log = logging.getLogger(__name__)

RasterCheck = Callable[[str], None]

_ERRORS = {
    400: {"model": ErrorBody, "description": "the request cannot be served as it is"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "no such job"},
    409: {"model": ErrorBody, "description": "the job has no result (yet)"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "a field is invalid; `errors` names it"},
    429: {"model": ErrorBody, "description": "the job queue is full"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ERRORS[code] for code in (400, 401, 413, *codes)}


def create_app(
    engine: Any,
    *,
    token: str,
    version: str = __version__,
    runners: Mapping[str, Runner] | None = None,
    max_queue: int = 8,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    job_ttl_s: float = 3600.0,
    max_finished_jobs: int = 32,
    max_body_bytes: int = MAX_BODY_BYTES,
    check_raster: RasterCheck | None = None,
) -> FastAPI:
    """Build the app; its lifespan starts the model worker and stops it on shutdown."""
    jobs = JobManager(
        engine,
        runners if runners is not None else default_runners(),
        max_queue=max_queue,
        ttl_s=job_ttl_s,
        max_finished=max_finished_jobs,
    )
    check = check_raster or open_raster_check

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            stopped = await run_in_threadpool(jobs.shutdown, 30.0)
            if not stopped:
                log.warning("the model worker did not stop within 30 s; exiting anyway")

    app = FastAPI(
        title="RSCoVLM backend",
        version=version,
        summary="Local GPU service for RSCoVLM detection and question answering on rasters.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.jobs = jobs
    _install_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["service"], openapi_extra={"security": []})
    def health() -> dict:
        """Liveness only: answers without a token and says nothing else."""
        return {"status": "ok"}

    @app.get("/v1/status", response_model=ServerStatus, tags=["service"], responses=_errors())
    def server_status() -> dict:
        """Version, model, device and queue length, for the dock's Backend panel."""
        description = dict(engine.describe()) if engine is not None else {}
        counts = jobs.counts()
        used, total = description.get("gpu_memory_used_gb"), description.get("gpu_memory_total_gb")
        return {
            **description,
            "memory": {"used_gb": used, "total_gb": total} if total is not None else None,
            "version": version,
            "queue_length": counts["queued"],
            "running": counts["running"],
            "max_queue": jobs.max_queue,
        }

    @app.post(
        "/v1/jobs/detect", status_code=202, response_model=JobAccepted, tags=["jobs"], responses=_errors(422, 429)
    )
    def submit_detect(body: DetectRequest) -> dict:
        """Queue oriented object detection; poll the job, then fetch its GeoJSON result."""
        check(body.raster_path)
        return _accepted(jobs.submit("detect", body))

    @app.post(
        "/v1/jobs/ask", status_code=202, response_model=JobAccepted, tags=["jobs"], responses=_errors(422, 429)
    )
    def submit_ask(body: AskRequest) -> dict:
        """Queue a question about the raster (optionally zooming into a region first)."""
        check(body.raster_path)
        return _accepted(jobs.submit("ask", body))

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, tags=["jobs"], responses=_errors(404))
    def job_status(job_id: str) -> dict:
        """State, progress (done/total), ETA, message and error of one job."""
        return jobs.status(job_id)

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"], responses=_errors(404, 409))
    def job_result(job_id: str) -> dict[str, Any]:
        """Detect: a GeoJSON FeatureCollection naming its CRS. Ask: the answer as JSON."""
        return jobs.result(job_id)

    @app.delete("/v1/jobs/{job_id}", response_model=JobStatus, tags=["jobs"], responses=_errors(404))
    def cancel_job(job_id: str) -> dict:
        """Cancel: a queued job at once, a running one stops its requests in flight."""
        return jobs.cancel(job_id)

    _document_bearer_auth(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(GuardMiddleware, token=token, allowed_hosts=allowed_hosts)
    return app


def _accepted(snapshot: dict) -> dict:
    return {"job_id": snapshot["job_id"], "state": snapshot["state"]}


def open_raster_check(path: str) -> None:
    """Refuse at submission a file that is not a raster, rather than fail the job later.

    ``RasterSource.open`` raises a RasterError (a UserError) with a sentence: a 400.
    """
    from ..raster import RasterSource

    with RasterSource.open(path):
        pass


# --- errors as sentences ----------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=getattr(exc, "http_status", 400))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [field_problem(error) for error in exc.errors()]
        listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return JSONResponse(
            {"detail": f"The request is not valid. {listed}{more}.", "errors": problems},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no such endpoint; see /openapi.json for the API."
        elif exc.status_code == 405:
            # Starlette's Allow names the first route that matched the path only (GET for
            # /v1/jobs/{id}, which DELETE serves too): list every route's methods.
            allowed = allowed_methods(app, request.scope)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            detail = "This endpoint does not accept that HTTP method" + (
                f"; it accepts {', '.join(allowed)}." if allowed else "."
            )
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s %s crashed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"detail": f"Internal error ({type(exc).__name__}); see the server log."},
            status_code=500,
        )


#: what to say when a field that must not be empty is
_EMPTY_HINTS = {
    "raster_path": "cannot be empty: give the full path of a raster file on the backend's machine",
    "classes": "cannot be an empty list: give at least one class name, or leave classes out",
}


def allowed_methods(app: FastAPI, scope: Mapping[str, Any]) -> list[str]:
    """Every HTTP method some route serves at the request's path, sorted."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(dict(scope))
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def field_problem(error: Mapping[str, Any]) -> dict[str, str]:
    """One pydantic error as ``{"field": "region.bounds", "problem": "..."}``."""
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    kind = error.get("type", "")
    message = str(error.get("msg", "is invalid"))
    if kind == "json_invalid":
        field, message = "body", "is not valid JSON"
    elif kind == "missing" and field == "body":
        message = "a JSON object is required"
    elif kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not a known field (check its spelling)"
    elif kind in ("string_too_short", "too_short") and (error.get("ctx") or {}).get("min_length") == 1:
        message = _EMPTY_HINTS.get(field) or (
            "cannot be empty" if kind == "string_too_short" else "give at least one item, or leave the field out"
        )
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if field == "body":  # a check across fields names its field as "name: problem"
        name, sep, rest = message.partition(": ")
        if sep and name.isidentifier():
            field, message = name, rest
    return {"field": field, "problem": message}


# --- request size -----------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before the app parses anything.

    The body is buffered (it is small by construction) so that a chunked upload without
    a Content-Length is counted too; the app then reads it from the buffer.
    """

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (
            f"The request body is larger than {self.max_bytes // 1024} KiB; send the raster's "
            "path, not its contents, and fewer or shorter fields."
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# --- OpenAPI ----------------------------------------------------------------------------


def _document_bearer_auth(app: FastAPI) -> None:
    """Declare the bearer scheme in the schema (auth itself lives in the middleware)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "the token from the server's token file (see `rscovlm serve`)",
            }
            schema["security"] = [{"bearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
