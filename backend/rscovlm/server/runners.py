"""The server's real job runners: an HTTP request turned into a pipeline call and back.

The job queue (:mod:`.jobs`) knows nothing of detection or questions; these functions
map a validated request onto the same options the command line builds
(:meth:`rscovlm.pipelines.detect.DetectOptions.build`), run the pipeline, and keep each
detection's raw responses for replay.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from .jobs import ProgressCallback, Runner, ShouldCancel

#: A responses file still being written ends in this; it is renamed when the job succeeds.
PARTIAL_SUFFIX = ".partial"
RESPONSES_MAX_AGE_S = 7 * 24 * 3600


def responses_dir() -> Path:
    """Where the server keeps each detection job's raw per-tile responses (JSONL).

    Keeping them means a result can be re-post-processed later without the model
    (``rscovlm detect RASTER -o OUT --from-responses FILE``). Files older than a week are
    removed when a new one is made, so the folder does not grow without bound.
    """
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rscovlm" / "responses"


def clean_responses_dir(max_age_s: float = RESPONSES_MAX_AGE_S) -> int:
    """Remove week-old responses and the partial files of jobs a killed server never finished.

    Called when the server starts, before any job runs, so no live job's file is touched.
    Returns how many partial files were removed.
    """
    folder = responses_dir()
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for path in folder.iterdir():
        try:
            if path.name.endswith(PARTIAL_SUFFIX):
                path.unlink()
                removed += 1
            elif path.suffix == ".jsonl" and now - path.stat().st_mtime > max_age_s:
                path.unlink()
        except OSError:
            pass
    return removed


def new_responses_path() -> Path:
    """A fresh ``.jsonl.partial`` path for one job (renamed to ``.jsonl`` on success)."""
    folder = responses_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl{PARTIAL_SUFFIX}"


def detect_options(request: Any, batch_size: int | None = None):
    """The detection options a request asks for (the CLI builds them the same way)."""
    from ..pipelines.detect import DetectOptions

    region = request.region
    return DetectOptions.build(
        classes=request.classes,
        tile_size=request.tile_size,
        overlap=request.overlap,
        max_mode=request.max_mode,
        max_new_tokens=request.max_new_tokens,
        batch_size=batch_size,
        bounds=region.as_tuple() if region is not None else None,
        bounds_crs=region.crs if region is not None else None,
    )


def default_runners(batch_size: int | None = None) -> dict[str, Runner]:
    """Runners that call the pipelines; heavy modules are imported on first use.

    ``batch_size`` None lets the pipeline use the engine's own batch size. Conversations
    for follow-up questions live as long as these runners (that is, the server).
    """
    conversations: list[Any] = []  # the pipeline's ConversationStore, made on first use

    def run_detect(request: Any, engine: Any, progress: ProgressCallback, should_cancel: ShouldCancel) -> dict:
        from ..pipelines.detect import detect

        options = detect_options(request, batch_size)
        partial = new_responses_path()
        try:
            result = detect(request.raster_path, engine, options, progress=progress,
                            should_cancel=should_cancel, responses_out=partial)
        except BaseException:
            partial.unlink(missing_ok=True)  # a job with no result keeps no half-written file
            raise
        final = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
        partial.replace(final)
        collection = result.to_geojson()
        collection["rscovlm"]["responses_path"] = str(final)
        return collection

    def run_ask(request: Any, engine: Any, progress: ProgressCallback, should_cancel: ShouldCancel) -> dict:
        from ..pipelines import ask as pipeline

        fields: dict[str, Any] = {"zoom": request.zoom, "max_new_tokens": request.max_new_tokens}
        if request.region is not None:
            fields["bounds"] = request.region.as_tuple()
            fields["bounds_crs"] = request.region.crs
        options = pipeline.AskOptions(**fields)
        path, task = request.raster_path, getattr(request, "task", "ask")
        progress(0, 1)
        conversation_id = None
        if task == "ask":
            if not conversations:
                conversations.append(pipeline.ConversationStore())
            conversation_id, history = conversations[0].get_or_create(request.conversation_id)
            result = pipeline.ask(path, request.question, engine, options, history=history, should_cancel=should_cancel)
        elif task == "caption":
            result = pipeline.caption(path, engine, options, should_cancel=should_cancel)
        elif task == "classify":
            result = pipeline.classify(path, request.classes, engine, options, should_cancel=should_cancel)
        else:
            result = pipeline.ground(path, request.question, engine, options, should_cancel=should_cancel)
        progress(1, 1)
        return {**result.to_json(), "conversation_id": conversation_id}

    return {"detect": run_detect, "ask": run_ask}
