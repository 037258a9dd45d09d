"""A bounded job queue in front of one model worker thread.

The model occupies one GPU and is not thread-safe, so exactly one thread ever calls it.
HTTP handlers only enqueue, read snapshots and set flags; they never wait for the model.
Cancelling is cooperative: the pipeline and the engine ask ``should_cancel()`` (the
local model after every token, a server client at every streamed event) and raise
:class:`rscovlm.errors.CancelledError`, so a job stops within moments.

A runner is a plain function ``(request, engine, progress, should_cancel) -> dict``;
the real ones (:mod:`.runners`) call the pipelines, tests register their own with a
controlled workload.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CancelledError, NotFoundError, UserError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]
Runner = Callable[[Any, Any, ProgressCallback, ShouldCancel], dict]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})


class QueueFullError(UserError):
    http_status = 429


class JobNotFinishedError(UserError):
    http_status = 409


@dataclass
class _Job:
    """Mutable job record; only touched while holding the manager's lock."""

    job_id: str
    kind: str
    request: Any
    created_at: float
    state: str = QUEUED
    done: int = 0
    total: int = 0
    message: str = "waiting in the queue"
    error: str | None = None
    result: dict | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    # ETA is measured from the first progress report, so opening the raster and the
    # first model warm-up do not distort the rate.
    rate_origin: tuple[float, int] | None = None
    finished_mono: float | None = field(default=None, repr=False)


class JobManager:
    """Jobs by id, a FIFO of queued ones, and the single worker that runs them."""

    def __init__(
        self,
        engine: Any,
        runners: Mapping[str, Runner],
        *,
        max_queue: int = 8,
        ttl_s: float = 3600.0,
        max_finished: int = 32,
        user_errors: tuple[type[BaseException], ...] = (UserError,),
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.engine = engine
        self.runners = dict(runners)
        self.max_queue = max_queue
        self.ttl_s = ttl_s
        self.max_finished = max_finished
        self.user_errors = user_errors  # exceptions whose message is a sentence for the user
        self._jobs: dict[str, _Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._worker: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="rscovlm-model-worker", daemon=True)
            self._worker.start()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel everything and stop the worker; True when it stopped within ``timeout``."""
        with self._lock:
            self._stopping = True
            now = time.time()
            while self._queue:
                job = self._jobs[self._queue.popleft()]
                self._finish_locked(job, CANCELLED, now, "cancelled: the server is shutting down")
            if self._running is not None:
                self._jobs[self._running].cancel_requested = True
            self._wake.notify_all()
            worker = self._worker
        if worker is None:
            return True
        worker.join(timeout)
        with self._lock:
            self._worker = None if not worker.is_alive() else worker
        return not worker.is_alive()

    # --- what handlers call -------------------------------------------------------------

    def submit(self, kind: str, request: Any) -> dict:
        if kind not in self.runners:
            raise NotFoundError(f"There is no job kind {kind!r}; use one of: {', '.join(sorted(self.runners))}.")
        with self._lock:
            if self._stopping:
                raise QueueFullError("The server is shutting down and accepts no new jobs.")
            self._expire_locked()
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(
                    f"The job queue is full ({self.max_queue} jobs waiting): wait for a job to "
                    "finish or cancel one, then submit again."
                )
            job = _Job(job_id=uuid.uuid4().hex, kind=kind, request=request, created_at=time.time())
            self._jobs[job.job_id] = job
            self._queue.append(job.job_id)
            self._wake.notify_all()
            return self._snapshot_locked(job)

    def status(self, job_id: str) -> dict:
        with self._lock:
            self._expire_locked()
            return self._snapshot_locked(self._find_locked(job_id))

    def result(self, job_id: str) -> dict:
        with self._lock:
            job = self._find_locked(job_id)
            if job.state == SUCCEEDED and job.result is not None:
                return job.result
            if job.state == FAILED:
                raise JobNotFinishedError(f"The job failed, so it has no result: {job.error}")
            if job.state == CANCELLED:
                raise JobNotFinishedError("The job was cancelled, so it has no result.")
            raise JobNotFinishedError(
                f"The job is still {job.state}; poll GET /v1/jobs/{job_id} until its state is "
                "'succeeded', then fetch the result."
            )

    def cancel(self, job_id: str) -> dict:
        """Queued jobs are cancelled at once; a running one stops its requests in flight."""
        with self._lock:
            job = self._find_locked(job_id)
            if job.state == QUEUED:
                self._queue.remove(job_id)
                self._finish_locked(job, CANCELLED, time.time(), "cancelled before it started")
            elif job.state == RUNNING and not job.cancel_requested:
                job.cancel_requested = True
                job.message = "cancelling: stopping the requests in flight"
            return self._snapshot_locked(job)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._queue), "running": int(self._running is not None)}

    # --- the worker ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait(timeout=60.0)
                    self._expire_locked()
                if self._stopping:
                    return
                job = self._jobs[self._queue.popleft()]
                job.state, job.started_at, job.message = RUNNING, time.time(), "running"
                self._running = job.job_id
                runner = self.runners[job.kind]
            state, result, error = self._run(job, runner)
            with self._lock:
                self._running = None
                job.result, job.error = result, error
                message = {SUCCEEDED: "finished", FAILED: "failed", CANCELLED: "cancelled"}[state]
                self._finish_locked(job, state, time.time(), message)

    def _run(self, job: _Job, runner: Runner) -> tuple[str, dict | None, str | None]:
        """Run one job; whatever it raises becomes a state and a sentence, never a crash."""
        try:
            result = runner(job.request, self.engine, self._progress_for(job), self._cancel_flag_for(job))
        except CancelledError:
            return CANCELLED, None, None
        except self.user_errors as exc:
            return FAILED, None, str(exc) or type(exc).__name__
        except BaseException as exc:  # noqa: BLE001 - one bad job must not kill the worker
            log.exception("job %s (%s) crashed", job.job_id, job.kind)
            what = f"{type(exc).__name__}: {str(exc)[:200]}"
            return FAILED, None, f"internal error while running the job: {what}; see the server log"
        return SUCCEEDED, result if isinstance(result, dict) else {"result": result}, None

    def _progress_for(self, job: _Job) -> ProgressCallback:
        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            with self._lock:
                job.done, job.total = max(0, int(done)), max(0, int(total))
                if job.rate_origin is None:
                    job.rate_origin = (now, job.done)
                if not job.cancel_requested:
                    job.message = f"running: {job.done} of {job.total} done"

        return progress

    def _cancel_flag_for(self, job: _Job) -> ShouldCancel:
        def should_cancel() -> bool:
            return job.cancel_requested  # a bool read is atomic; no lock needed

        return should_cancel

    # --- bookkeeping (lock held) --------------------------------------------------------

    def _find_locked(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"There is no job {job_id[:64]!r}: it never existed or its result expired; submit it again."
            )
        return job

    def _finish_locked(self, job: _Job, state: str, now: float, message: str) -> None:
        job.state, job.finished_at, job.finished_mono, job.message = state, now, time.monotonic(), message
        if state != SUCCEEDED:
            job.result = None

    def _expire_locked(self) -> None:
        """Drop finished jobs older than the TTL, and the oldest beyond ``max_finished``."""
        now = time.monotonic()
        finished = sorted(
            (j for j in self._jobs.values() if j.state in FINISHED_STATES),
            key=lambda j: j.finished_mono or 0.0,
        )
        excess = max(0, len(finished) - self.max_finished)
        for index, job in enumerate(finished):
            if index < excess or now - (job.finished_mono or now) > self.ttl_s:
                del self._jobs[job.job_id]

    def _snapshot_locked(self, job: _Job) -> dict:
        position = self._queue.index(job.job_id) + 1 if job.state == QUEUED else None
        message = job.message
        if position is not None:
            message = f"waiting in the queue (position {position})"
        return {
            "job_id": job.job_id,
            "kind": job.kind,
            "state": job.state,
            "progress": {"done": job.done, "total": job.total},
            "eta_s": _eta(job),
            "message": message,
            "error": job.error,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "queue_position": position,
        }


def _eta(job: _Job) -> float | None:
    """Seconds left at the rate measured since the first progress report, if any."""
    if job.state in FINISHED_STATES:
        return 0.0 if job.state == SUCCEEDED else None
    if job.state != RUNNING or job.rate_origin is None or job.total <= 0:
        return None
    origin_time, origin_done = job.rate_origin
    done_since = job.done - origin_done
    if done_since <= 0:
        return None
    elapsed = time.monotonic() - origin_time
    return round(elapsed / done_since * max(0, job.total - job.done), 1)
