"""Background work as QgsTasks: follow a detection job, check whether the backend answers.

``run()`` executes on a worker thread and touches only the client and the frozen
parameters; ``finished()`` runs on the main thread and hands a plain outcome to whoever
listens (the dock), which then builds layers there. The task manager shows progress and
offers cancel for free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient, BackendError
from .params import DetectParams
from .translation import tr

LOG_TAG = "RSCoVLM"


@dataclass
class DetectOutcome:
    """How a detection task ended: a FeatureCollection, an error sentence, or cancelled."""

    params: DetectParams
    job_id: str | None = None
    geojson: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False


class DetectTask(QgsTask):
    """Submits a detection job, mirrors its progress, cancels it remotely when cancelled here."""

    done = pyqtSignal(object)  # DetectOutcome, emitted on the main thread

    def __init__(self, client: BackendClient, params: DetectParams, poll_s: float = 0.5):
        super().__init__(tr("RSCoVLM: detecting objects in {name}").format(name=params.layer_name), QgsTask.CanCancel)
        self.client = client
        self.outcome = DetectOutcome(params=params)
        self.poll_s = poll_s

    def run(self) -> bool:
        try:
            return self._follow_job()
        except BackendError as error:
            self.outcome.error = str(error)
        except Exception as error:  # noqa: BLE001 - a task must end with a message, not kill QGIS
            QgsMessageLog.logMessage(repr(error), LOG_TAG, Qgis.Critical)
            self.outcome.error = tr("Detection failed unexpectedly: {error}").format(error=error)
        return False

    def _follow_job(self) -> bool:
        job_id = self.client.submit_detect(self.outcome.params)
        self.outcome.job_id = job_id
        while True:
            if self.isCanceled():
                return self._cancel_remote(job_id)
            job = self.client.job(job_id)
            progress = job.get("progress") or {}
            total = progress.get("total") or 0
            if total:
                self.setProgress(100.0 * min(progress.get("done", 0), total) / total)
            state = job.get("state")
            if state == "succeeded":
                break
            if state == "failed":
                self.outcome.error = job.get("error") or job.get("message") or tr("The backend reported that the job failed.")
                return False
            if state == "cancelled":
                self.outcome.cancelled = True
                return False
            self._sleep_unless_cancelled(self.poll_s)
        self.outcome.geojson = self.client.result(job_id)
        self.setProgress(100.0)
        return True

    def _cancel_remote(self, job_id: str) -> bool:
        self.outcome.cancelled = True
        try:
            self.client.cancel(job_id)
        except BackendError as error:  # the job may have finished meanwhile: note it, nothing else to do
            QgsMessageLog.logMessage(str(error), LOG_TAG, Qgis.Info)
        return False

    def _sleep_unless_cancelled(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.isCanceled():
            time.sleep(0.05)

    def finished(self, result: bool) -> None:  # main thread
        if not result and self.isCanceled():
            self.outcome.cancelled = True
        self.done.emit(self.outcome)


@dataclass
class BackendCheck:
    """Whether the backend answers, and what it runs on when it says so."""

    url: str
    answers: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    error: str | None = None        # why it does not answer, or why status failed


class BackendCheckTask(QgsTask):
    """Liveness plus status, off the main thread so a hung backend never freezes QGIS."""

    done = pyqtSignal(object)  # BackendCheck

    def __init__(self, client: BackendClient):
        super().__init__(tr("RSCoVLM: checking the backend"), QgsTask.Flags())
        self.client = client
        self.check = BackendCheck(url=client.base_url)

    def run(self) -> bool:
        try:
            self.check.answers = self.client.health()
            self.check.status = self.client.status()
        except BackendError as error:
            self.check.error = str(error)
        except Exception as error:  # noqa: BLE001
            self.check.error = str(error)
        return True

    def finished(self, result: bool) -> None:  # main thread
        self.done.emit(self.check)
