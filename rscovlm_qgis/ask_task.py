"""A question about a raster as a QgsTask: submit the ask job, follow it, fetch the answer.

``run()`` (worker thread) reads only the client and the request body captured on the
main thread; ``finished()`` (main thread) hands a plain AskOutcome to the panel, which
then touches widgets and the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import Qgis, QgsMessageLog

from .client import BackendClient, BackendError
from .jobs import LOG_TAG, BackendJobTask
from .translation import tr


@dataclass
class AskOutcome:
    """How a question ended: the backend's answer JSON, an error sentence, or cancelled."""

    request: dict[str, Any]
    job_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False


class AskTask(BackendJobTask):
    """Submits an ask job, polls it, DELETEs it when cancelled here, fetches the answer."""

    def __init__(self, client: BackendClient, request: dict[str, Any], poll_s: float = 0.3):
        super().__init__(tr("RSCoVLM: asking about the imagery"), client, AskOutcome(request=dict(request)), poll_s)

    def run(self) -> bool:
        try:
            self.outcome.result = self.follow(self.client.submit_ask(self.outcome.request))
            return self.outcome.result is not None
        except BackendError as error:
            self.outcome.error = str(error)
        except Exception as error:  # noqa: BLE001 - a task must end with a message, not kill QGIS
            QgsMessageLog.logMessage(repr(error), LOG_TAG, Qgis.Critical)
            self.outcome.error = tr("The question failed unexpectedly: {error}").format(error=error)
        return False
