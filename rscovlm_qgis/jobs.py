"""Following one backend job to its end: the loop the tasks and Processing share,
and the QgsTask base that turns its end into an outcome for the main thread.

Runs on a worker thread (a QgsTask's ``run`` or a Processing algorithm): it touches only
the client, and reports progress through a callback the caller owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient, BackendError
from .translation import tr

LOG_TAG = "RSCoVLM"


class JobFailed(Exception):
    """The backend ran the job and it failed; the message is the backend's sentence."""


class JobCancelled(Exception):
    """The job was cancelled, here (and then on the backend too) or on the backend."""


@dataclass(frozen=True)
class JobProgress:
    """What a job reports while it runs: tiles done of total, time left, queue place."""

    state: str
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    queue_position: int | None = None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.done / self.total if self.total else None


def follow_job(
    client: BackendClient,
    job_id: str,
    *,
    is_cancelled: Callable[[], bool],
    on_progress: Callable[[JobProgress], None] | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Poll until the job ends and return its result.

    Raises JobCancelled (after asking the backend to cancel, when cancelled here) or
    JobFailed with the backend's own sentence.
    """
    while True:
        if is_cancelled():
            try:
                client.cancel(job_id)
            except BackendError as error:  # it may have ended meanwhile: note it, nothing else to do
                QgsMessageLog.logMessage(str(error), LOG_TAG, Qgis.Info)
            raise JobCancelled()
        job = client.job(job_id)
        progress = job.get("progress") or {}
        total = int(progress.get("total") or 0)
        done = min(int(progress.get("done") or 0), total)
        state = str(job.get("state"))
        if on_progress is not None:
            on_progress(JobProgress(state=state, done=done, total=total, eta_s=job.get("eta_s"),
                                    queue_position=job.get("queue_position")))
        if state == "succeeded":
            return client.result(job_id)
        if state == "failed":
            raise JobFailed(job.get("error") or job.get("message") or tr("The backend reported that the job failed."))
        if state == "cancelled":
            raise JobCancelled()
        _sleep_unless_cancelled(poll_s, is_cancelled)


def _sleep_unless_cancelled(seconds: float, is_cancelled: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not is_cancelled():
        time.sleep(0.05)


class BackendJobTask(QgsTask):
    """A QgsTask following one backend job; subclasses submit the job and keep its result.

    ``outcome`` is a dataclass with ``job_id``, ``error`` and ``cancelled``; ``done``
    carries it to the main thread once the task ends, whatever the ending.
    """

    done = pyqtSignal(object)  # the outcome, emitted on the main thread

    def __init__(self, description: str, client: BackendClient, outcome: Any, poll_s: float):
        super().__init__(description, QgsTask.CanCancel)
        self.client = client
        self.outcome = outcome
        self.poll_s = poll_s

    def follow(self, job_id: str, on_progress: Callable[[JobProgress], None] | None = None) -> dict[str, Any] | None:
        """The job's result, or None with ``outcome.cancelled`` or ``outcome.error`` set."""
        self.outcome.job_id = job_id
        try:
            result = follow_job(self.client, job_id, is_cancelled=self.isCanceled, on_progress=on_progress,
                                poll_s=self.poll_s)
        except JobCancelled:
            self.outcome.cancelled = True
            return None
        except JobFailed as error:
            self.outcome.error = str(error)
            return None
        self.setProgress(100.0)
        return result

    def finished(self, result: bool) -> None:  # main thread
        if not result and self.isCanceled():
            self.outcome.cancelled = True
        self.done.emit(self.outcome)
