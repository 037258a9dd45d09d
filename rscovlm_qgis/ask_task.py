"""A question about a raster as a QgsTask: submit the ask job, follow it, fetch the answer.

``run()`` (worker thread) reads only the client and the request body captured on the
main thread; ``finished()`` (main thread) hands a plain AskOutcome to the panel, which
then touches widgets and the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient, BackendError
from .jobs import LOG_TAG, JobCancelled, JobFailed, follow_job
from .translation import tr


@dataclass
class AskOutcome:
    """How a question ended: the backend's answer JSON, an error sentence, or cancelled."""

    request: dict[str, Any]
    job_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False


class AskTask(QgsTask):
    """Submits an ask job, polls it, DELETEs it when cancelled here, fetches the answer."""

    done = pyqtSignal(object)  # AskOutcome, emitted on the main thread

    def __init__(self, client: BackendClient, request: dict[str, Any], poll_s: float = 0.3):
        super().__init__(tr("RSCoVLM: asking about the imagery"), QgsTask.CanCancel)
        self.client = client
        self.outcome = AskOutcome(request=dict(request))
        self.poll_s = poll_s

    def run(self) -> bool:
        try:
            return self._follow_job()
        except BackendError as error:
            self.outcome.error = str(error)
        except Exception as error:  # noqa: BLE001 - a task must end with a message, not kill QGIS
            QgsMessageLog.logMessage(repr(error), LOG_TAG, Qgis.Critical)
            self.outcome.error = tr("The question failed unexpectedly: {error}").format(error=error)
        return False

    def _follow_job(self) -> bool:
        self.outcome.job_id = self.client.submit_ask(self.outcome.request)
        try:
            self.outcome.result = follow_job(
                self.client, self.outcome.job_id, is_cancelled=self.isCanceled, poll_s=self.poll_s
            )
        except JobCancelled:
            self.outcome.cancelled = True
            return False
        except JobFailed as error:
            self.outcome.error = str(error)
            return False
        self.setProgress(100.0)
        return True

    def finished(self, result: bool) -> None:  # main thread
        if not result and self.isCanceled():
            self.outcome.cancelled = True
        self.done.emit(self.outcome)
