"""Background work as QgsTasks: follow a detection job, check whether the backend answers.

``run()`` executes on a worker thread and touches only the client and the frozen
parameters; ``finished()`` runs on the main thread and hands a plain outcome to whoever
listens (the dock), which then builds layers there. The task manager shows progress and
offers cancel for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsRasterBlockFeedback, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient, BackendError
from .jobs import LOG_TAG, BackendJobTask, JobProgress
from .params import DetectParams
from .raster_export import RasterExportError, temporary_tif, write_geotiff
from .translation import tr


@dataclass
class DetectOutcome:
    """How a detection task ended: a FeatureCollection, an error sentence, or cancelled."""

    params: DetectParams
    job_id: str | None = None
    geojson: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    exported_path: str | None = None   # the temporary GeoTIFF a non-file layer was written to


def format_progress(progress: JobProgress) -> str:
    """One line for the dock: "3 / 12 tiles, about 1 min 20 s left" or the queue place."""
    if progress.state == "exporting":
        return tr("Writing the layer to a temporary GeoTIFF…")
    if progress.state == "queued":
        if progress.queue_position:
            return tr("Waiting in the backend's queue (place {place}).").format(place=progress.queue_position)
        return tr("Waiting in the backend's queue.")
    text = tr("{done} / {total} tiles").format(done=progress.done, total=progress.total)
    if progress.eta_s is not None and progress.done < progress.total:
        text += ", " + tr("about {time} left").format(time=format_duration(progress.eta_s))
    return text


def format_outcome(count: int, layer_name: str, geojson: dict[str, Any]) -> tuple[str, bool]:
    """The message after a detection, and whether it is complete.

    Nothing is dropped silently: tiles asked again as sub-tiles (dense scenes), answers
    still cut by the token budget and tiles the backend gave up on are all said.
    """
    summary = geojson.get("rscovlm") or {}
    parts = [tr("{count} objects found in {name}.").format(count=count, name=layer_name)]
    split = int(summary.get("tiles_split") or 0)
    incomplete = len(summary.get("tiles_incomplete") or [])
    failed = len(summary.get("tiles_failed") or [])
    if split:
        parts.append(tr("{n} dense tiles were asked again as sub-tiles.").format(n=split))
    if incomplete:
        parts.append(tr("{n} answers were still cut by the token budget: objects there may be missing.")
                     .format(n=incomplete))
    if failed:
        parts.append(tr("{n} tiles failed and have no answer: run the detection again.").format(n=failed))
    return " ".join(parts), not (incomplete or failed)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return tr("{s} s").format(s=seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return tr("{m} min {s} s").format(m=minutes, s=seconds)
    hours, minutes = divmod(minutes, 60)
    return tr("{h} h {m} min").format(h=hours, m=minutes)


class DetectTask(BackendJobTask):
    """Submits a detection job, mirrors its progress, cancels it remotely when cancelled here.

    A layer that is not a local file is first written to a temporary GeoTIFF (removed when
    the job has ended, since the backend reads it while the job runs).
    """

    jobProgress = pyqtSignal(object)  # JobProgress; queued to the main thread's receivers

    def __init__(self, client: BackendClient, params: DetectParams, poll_s: float = 0.5):
        super().__init__(
            tr("RSCoVLM: detecting objects in {name}").format(name=params.layer_name),
            client, DetectOutcome(params=params), poll_s,
        )
        self._export_feedback = QgsRasterBlockFeedback()

    def cancel(self) -> None:
        self._export_feedback.cancel()  # stops a running export between blocks
        super().cancel()

    def run(self) -> bool:
        try:
            return self._export_then_follow()
        except (BackendError, RasterExportError) as error:
            self.outcome.error = str(error)
        except Exception as error:  # noqa: BLE001 - a task must end with a message, not kill QGIS
            QgsMessageLog.logMessage(repr(error), LOG_TAG, Qgis.Critical)
            self.outcome.error = tr("Detection failed unexpectedly: {error}").format(error=error)
        finally:
            if self.outcome.exported_path:
                Path(self.outcome.exported_path).unlink(missing_ok=True)
        return False

    def _export_then_follow(self) -> bool:
        params = self.outcome.params
        if params.export is not None:
            self.jobProgress.emit(JobProgress(state="exporting"))
            target = temporary_tif()
            self.outcome.exported_path = str(target)
            write_geotiff(params.export, target, self._export_feedback)
            if self.isCanceled():
                self.outcome.cancelled = True
                return False
            params = params.exported_to(str(target))
        self.outcome.geojson = self.follow(self.client.submit_detect(params), on_progress=self._report)
        return self.outcome.geojson is not None

    def _report(self, progress: JobProgress) -> None:
        if progress.percent is not None:
            self.setProgress(progress.percent)
        self.jobProgress.emit(progress)


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
