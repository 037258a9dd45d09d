"""The dock panel: widgets and wiring only.

What to send lives in params, how to talk to the backend in client, the background work
in tasks, and what to do with results in layers; this file only connects buttons to them
and shows what happened.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsMapLayerProxyModel, QgsRasterLayer
from qgis.gui import QgsDockWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .client import BackendClient
from .layers import DRIVERS, ExportError, add_to_project, detections_layer, export_layer
from .params import ParamsError, params_for_layer
from .settings import PluginSettings
from .tasks import BackendCheck, BackendCheckTask, DetectOutcome, DetectTask
from .translation import tr

TITLE = "RSCoVLM"


class RSCoVLMDock(QgsDockWidget):
    """Backend status, a raster layer, Detect / Cancel with progress, Export of the last result."""

    def __init__(self, iface, parent: QWidget | None = None):
        super().__init__(tr("RSCoVLM"), parent)
        self.setObjectName("RSCoVLMDock")
        self.iface = iface
        self.settings = PluginSettings.load()
        self.detect_task: DetectTask | None = None
        self.check_task: BackendCheckTask | None = None
        self.last_layer = None
        self._build()
        self._set_running(False)

    # -- layout ------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget(self)
        column = QVBoxLayout(body)

        backend_box = QGroupBox(tr("Backend"), body)
        backend_row = QHBoxLayout(backend_box)
        self.backend_label = QLabel(tr("Not checked yet."), backend_box)
        self.backend_label.setWordWrap(True)
        self.check_button = QPushButton(tr("Check"), backend_box)
        self.check_button.setToolTip(tr("Ask the backend whether it answers and what it runs on"))
        backend_row.addWidget(self.backend_label, 1)
        backend_row.addWidget(self.check_button)
        column.addWidget(backend_box)

        detect_box = QGroupBox(tr("Detect objects"), body)
        form = QFormLayout(detect_box)
        self.layer_combo = QgsMapLayerComboBox(detect_box)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow(tr("Raster layer"), self.layer_combo)
        buttons = QHBoxLayout()
        self.detect_button = QPushButton(tr("Detect"), detect_box)
        self.cancel_button = QPushButton(tr("Cancel"), detect_box)
        buttons.addWidget(self.detect_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar(detect_box)
        self.progress_bar.setRange(0, 100)
        form.addRow(self.progress_bar)
        self.run_label = QLabel("", detect_box)
        self.run_label.setWordWrap(True)
        form.addRow(self.run_label)
        self.export_button = QPushButton(tr("Export…"), detect_box)
        self.export_button.setToolTip(tr("Write the last result layer to a Shapefile, GeoPackage or GeoJSON file"))
        self.export_button.setEnabled(False)
        form.addRow(self.export_button)
        column.addWidget(detect_box)
        column.addStretch(1)
        self.setWidget(body)

        self.check_button.clicked.connect(self.check_backend)
        self.detect_button.clicked.connect(self.detect)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.export)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.select_current_layer()
        self.check_backend()

    def select_current_layer(self) -> None:
        """Default to the layer selected in the Layers panel when it is a raster."""
        current = self.iface.activeLayer()
        if isinstance(current, QgsRasterLayer):
            self.layer_combo.setLayer(current)

    def client(self) -> BackendClient:
        return BackendClient.from_settings(self.settings)

    # -- backend status ----------------------------------------------------------------

    def check_backend(self) -> None:
        if self.check_task is not None:
            return
        self.backend_label.setText(tr("Checking the backend at {url}…").format(url=self.settings.backend_url))
        self.check_task = BackendCheckTask(self.client())
        self.check_task.done.connect(self._on_checked)
        QgsApplication.taskManager().addTask(self.check_task)

    def _on_checked(self, check: BackendCheck) -> None:
        self.check_task = None
        if not check.answers:
            self.backend_label.setText(tr("The backend does not answer. {reason}").format(reason=check.error or ""))
            return
        text = tr("The backend answers at {url}.").format(url=check.url)
        device = check.status.get("device")
        if device:
            text += " " + tr("Device: {device}.").format(device=device)
        if check.error:  # alive, but status refused (e.g. token): say why
            text += " " + check.error
        self.backend_label.setText(text)

    # -- detection ---------------------------------------------------------------------

    def detect(self) -> None:
        if self.detect_task is not None:
            return
        try:
            params = params_for_layer(
                self.layer_combo.currentLayer(), max_new_tokens=self.settings.max_new_tokens or None
            )
        except ParamsError as error:
            self._report_error(str(error))
            return
        self.detect_task = DetectTask(self.client(), params)
        self.detect_task.progressChanged.connect(self._on_progress)
        self.detect_task.done.connect(self._on_detected)
        self._set_running(True)
        self.run_label.setText(tr("Detecting objects in {name}…").format(name=params.layer_name))
        QgsApplication.taskManager().addTask(self.detect_task)

    def cancel(self) -> None:
        if self.detect_task is not None:
            self.run_label.setText(tr("Cancelling…"))
            self.detect_task.cancel()

    def _on_progress(self, percent: float) -> None:
        self.progress_bar.setValue(int(percent))

    def _on_detected(self, outcome: DetectOutcome) -> None:
        self.detect_task = None
        self._set_running(False)
        if outcome.cancelled:
            self.progress_bar.setValue(0)
            self.run_label.setText(tr("Detection cancelled."))
            return
        if outcome.error or outcome.geojson is None:
            self._report_error(outcome.error or tr("The backend returned no result."))
            return
        params = outcome.params
        fallback = QgsCoordinateReferenceSystem.fromWkt(params.crs_wkt) if params.crs_wkt else None
        name = tr("{layer} detections").format(layer=params.layer_name)
        layer = add_to_project(detections_layer(outcome.geojson, name, fallback))
        self.last_layer = layer
        self.export_button.setEnabled(True)
        message = tr("{count} objects found in {name}.").format(count=layer.featureCount(), name=params.layer_name)
        self.run_label.setText(message)
        self.iface.messageBar().pushMessage(TITLE, message, Qgis.Success, 5)

    def _set_running(self, running: bool) -> None:
        self.detect_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress_bar.setValue(0)

    # -- export ------------------------------------------------------------------------

    def export(self) -> None:
        if self.last_layer is None:
            return
        filters = {
            tr("GeoPackage (*.gpkg)"): ".gpkg",
            tr("ESRI Shapefile (*.shp)"): ".shp",
            tr("GeoJSON (*.geojson)"): ".geojson",
        }
        path, chosen = QFileDialog.getSaveFileName(
            self,
            tr("Export detections"),
            str(Path.home() / f"{self.last_layer.name()}.gpkg"),
            ";;".join(filters),
        )
        if not path:
            return
        if Path(path).suffix.lower() not in DRIVERS:  # a typed name without extension: use the filter's
            path += filters.get(chosen, ".gpkg")
        self.export_to(path)

    def export_to(self, path: str) -> Path | None:
        try:
            written = export_layer(self.last_layer, path)
        except ExportError as error:
            self._report_error(str(error))
            return None
        message = tr("Exported to {path}.").format(path=written)
        self.run_label.setText(message)
        self.iface.messageBar().pushMessage(TITLE, message, Qgis.Success, 5)
        return written

    def _report_error(self, message: str) -> None:
        self.run_label.setText(message)
        self.iface.messageBar().pushMessage(TITLE, message, Qgis.Critical, 0)

    # -- teardown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel running work (the task DELETEs its backend job) before the plugin unloads."""
        if self.detect_task is not None:
            self.detect_task.done.disconnect(self._on_detected)
            self.detect_task.progressChanged.disconnect(self._on_progress)
            self.detect_task.cancel()
            self.detect_task = None
        if self.check_task is not None:
            self.check_task.done.disconnect(self._on_checked)
            self.check_task = None
