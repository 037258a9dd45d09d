"""The Detect tab: what to look for, where, and how; runs the job and shows the result.

Widgets and wiring only: options become DetectParams (params), areas come from areas,
the work runs in DetectTask (tasks) and results become layers in layers.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import areas
from .client import BackendClient
from .jobs import JobProgress
from .layers import DRIVERS, ExportError, add_result, apply_filter, detections_layer, export_layer, has_scores
from .params import DOTA_CLASSES, ParamsError, params_for_layer, parse_classes
from .settings import (
    LARGE_RUN_TILES,
    OVERLAP,
    TILE_SIZE,
    TILE_SIZE_MAX,
    TILE_SIZE_MIN,
    DetectChoices,
    PluginSettings,
)
from .tasks import DetectOutcome, DetectTask, format_outcome, format_progress
from .translation import tr

TITLE = "RSCoVLM"


def class_label(name: str) -> str:
    """DOTA class names as the checkboxes show them (translated, first letter capital)."""
    translated = tr(name)
    return translated if translated != name else name.capitalize()


class DetectPanel(QWidget):
    """Classes, tiling, area, Detect / Cancel with progress, Export of the last result."""

    def __init__(self, iface, settings_provider, parent: QWidget | None = None):
        super().__init__(parent)
        self.iface = iface
        self._settings_provider = settings_provider  # the dock's current PluginSettings
        self.detect_task: DetectTask | None = None
        self.last_layer = None
        self.drawn_rectangle = None
        self.drawn_crs: QgsCoordinateReferenceSystem | None = None
        self.map_tool = None
        self._previous_tool = None
        self._build()
        self.restore_choices()
        self._set_running(False)
        self._on_area_changed()

    @property
    def settings(self) -> PluginSettings:
        return self._settings_provider()

    # -- layout ------------------------------------------------------------------------

    def _build(self) -> None:
        column = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow(tr("Raster layer"), self.layer_combo)
        column.addLayout(form)

        classes_box = QGroupBox(tr("Classes"), self)
        grid = QGridLayout(classes_box)
        self.class_boxes: dict[str, QCheckBox] = {}
        for index, name in enumerate(DOTA_CLASSES):
            box = QCheckBox(class_label(name), classes_box)
            box.setChecked(True)
            self.class_boxes[name] = box
            grid.addWidget(box, index // 3, index % 3)
        row = len(DOTA_CLASSES) // 3 + 1
        self.all_button = QPushButton(tr("All"), classes_box)
        self.none_button = QPushButton(tr("None"), classes_box)
        grid.addWidget(self.all_button, row, 0)
        grid.addWidget(self.none_button, row, 1)
        self.own_classes = QLineEdit(classes_box)
        self.own_classes.setPlaceholderText(tr("Your own classes, comma separated (e.g. wind turbine, solar panel)"))
        grid.addWidget(self.own_classes, row + 1, 0, 1, 3)
        column.addWidget(classes_box)

        options = QFormLayout()
        self.tile_size = QSpinBox(self)
        self.tile_size.setRange(TILE_SIZE_MIN, TILE_SIZE_MAX)
        self.tile_size.setSingleStep(64)
        self.tile_size.setValue(TILE_SIZE)
        self.tile_size.setSuffix(tr(" px"))
        options.addRow(tr("Tile size"), self.tile_size)
        self.overlap = QSpinBox(self)
        self.overlap.setRange(0, TILE_SIZE_MAX // 2)
        self.overlap.setValue(OVERLAP)
        self.overlap.setSuffix(tr(" px"))
        options.addRow(tr("Overlap"), self.overlap)
        self.max_mode = QCheckBox(tr("Max mode (largest model input: finer, slower)"), self)
        options.addRow(self.max_mode)

        self.area_combo = QComboBox(self)
        self.area_combo.addItem(tr("Whole layer"), areas.WHOLE_LAYER)
        self.area_combo.addItem(tr("Canvas extent"), areas.CANVAS_EXTENT)
        self.area_combo.addItem(tr("Selected features of a vector layer"), areas.SELECTED_FEATURES)
        self.area_combo.addItem(tr("Drawn rectangle"), areas.DRAWN_RECTANGLE)
        options.addRow(tr("Area"), self.area_combo)
        self.selection_combo = QgsMapLayerComboBox(self)
        self.selection_combo.setFilters(QgsMapLayerProxyModel.VectorLayer)
        options.addRow(tr("Features of"), self.selection_combo)
        draw_row = QHBoxLayout()
        self.draw_button = QPushButton(tr("Draw"), self)
        self.draw_button.setToolTip(tr("Drag a rectangle on the map; Esc cancels"))
        self.drawn_label = QLabel(tr("No rectangle drawn."), self)
        draw_row.addWidget(self.draw_button)
        draw_row.addWidget(self.drawn_label, 1)
        options.addRow(draw_row)
        self.replace_box = QCheckBox(tr("Replace previous results"), self)
        self.replace_box.setToolTip(tr("Remove earlier result layers of the same raster instead of keeping them"))
        options.addRow(self.replace_box)
        column.addLayout(options)

        buttons = QHBoxLayout()
        self.detect_button = QPushButton(tr("Detect"), self)
        self.cancel_button = QPushButton(tr("Cancel"), self)
        buttons.addWidget(self.detect_button)
        buttons.addWidget(self.cancel_button)
        column.addLayout(buttons)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 100)
        column.addWidget(self.progress_bar)
        self.run_label = QLabel("", self)
        self.run_label.setWordWrap(True)
        column.addWidget(self.run_label)
        shown = QFormLayout()
        score_row = QHBoxLayout()
        self.min_score = QSlider(Qt.Horizontal, self)
        self.min_score.setRange(0, 100)  # hundredths of a score
        self.min_score.setSingleStep(1)
        self.min_score.setPageStep(5)
        self.min_score.setToolTip(self._score_tooltip(True))
        self.min_score_label = QLabel(self)
        score_row.addWidget(self.min_score, 1)
        score_row.addWidget(self.min_score_label)
        shown.addRow(tr("Minimum score"), score_row)
        self.min_support = QSpinBox(self)
        self.min_support.setRange(1, 99)
        self.min_support.setToolTip(tr("Hide the objects fewer overlapping tiles agreed on"))
        shown.addRow(tr("Minimum tiles agreeing"), self.min_support)
        column.addLayout(shown)
        self._show_min_score()
        self.export_button = QPushButton(tr("Export…"), self)
        self.export_button.setToolTip(tr("Write the last result layer to a Shapefile, GeoPackage or GeoJSON file"))
        self.export_button.setEnabled(False)
        column.addWidget(self.export_button)
        column.addStretch(1)

        self.all_button.clicked.connect(lambda: self._tick_all(True))
        self.none_button.clicked.connect(lambda: self._tick_all(False))
        self.area_combo.currentIndexChanged.connect(self._on_area_changed)
        self.draw_button.clicked.connect(self.start_drawing)
        self.detect_button.clicked.connect(self.detect)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.export)
        self.min_score.valueChanged.connect(self._on_filter_changed)
        self.min_support.valueChanged.connect(self._on_filter_changed)

        if self._rectangle_tool_class() is None:  # the map tool module is optional
            self._area_item(areas.DRAWN_RECTANGLE).setEnabled(False)

    def _area_item(self, mode: str):
        return self.area_combo.model().item(self.area_combo.findData(mode))

    def _tick_all(self, checked: bool) -> None:
        for box in self.class_boxes.values():
            box.setChecked(checked)

    def _on_area_changed(self) -> None:
        mode = self.area_combo.currentData()
        self.selection_combo.setEnabled(mode == areas.SELECTED_FEATURES)
        self.draw_button.setEnabled(mode == areas.DRAWN_RECTANGLE)

    def select_current_layer(self) -> None:
        """Default to the layer selected in the Layers panel when it is a raster."""
        current = self.iface.activeLayer()
        if isinstance(current, QgsRasterLayer):
            self.layer_combo.setLayer(current)

    # -- drawing -----------------------------------------------------------------------

    @staticmethod
    def _rectangle_tool_class():
        try:
            from .map_tool import RectangleMapTool
        except ImportError:
            return None
        return RectangleMapTool

    def start_drawing(self) -> None:
        tool_class = self._rectangle_tool_class()
        if tool_class is None:
            return
        canvas = self.iface.mapCanvas()
        self._previous_tool = canvas.mapTool()
        self.map_tool = tool_class(canvas)
        self.map_tool.rectangleDrawn.connect(self._on_rectangle_drawn)
        canvas.setMapTool(self.map_tool)
        self.drawn_label.setText(tr("Drag a rectangle on the map…"))

    def _on_rectangle_drawn(self, rectangle) -> None:
        canvas = self.iface.mapCanvas()
        self.set_drawn_rectangle(rectangle, canvas.mapSettings().destinationCrs())
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(self.map_tool)

    def set_drawn_rectangle(self, rectangle, crs: QgsCoordinateReferenceSystem) -> None:
        self.drawn_rectangle, self.drawn_crs = rectangle, crs
        self.area_combo.setCurrentIndex(self.area_combo.findData(areas.DRAWN_RECTANGLE))
        self.drawn_label.setText(
            tr("Rectangle of {w:.0f} × {h:.0f} map units.").format(w=rectangle.width(), h=rectangle.height())
        )

    # -- detection ---------------------------------------------------------------------

    def chosen_classes(self) -> tuple[str, ...] | None:
        ticked = [name for name, box in self.class_boxes.items() if box.isChecked()]
        return parse_classes(ticked, self.own_classes.text())

    def chosen_region(self):
        """(bounds, crs) of the chosen area, or (None, None) for the whole layer."""
        mode = self.area_combo.currentData()
        if mode == areas.CANVAS_EXTENT:
            return areas.canvas_region(self.iface.mapCanvas())
        if mode == areas.SELECTED_FEATURES:
            return areas.selection_region(self.selection_combo.currentLayer())
        if mode == areas.DRAWN_RECTANGLE:
            return areas.drawn_region(self.drawn_rectangle, self.drawn_crs)
        return None, None

    def build_params(self):
        layer = self.layer_combo.currentLayer()
        region, region_crs = self.chosen_region()
        return params_for_layer(
            layer,
            classes=self.chosen_classes(),
            tile_size=self.tile_size.value(),
            overlap=self.overlap.value(),
            max_mode=self.max_mode.isChecked(),
            region=region,
            region_crs=region_crs,
            max_new_tokens=self.settings.max_new_tokens or None,
            allow_export=True,
            fallback_resolution=self._canvas_resolution_in(layer),
        )

    def _canvas_resolution_in(self, layer) -> float | None:
        """The canvas's pixel size in the layer's units: the resolution for tiled services."""
        if layer is None:
            return None
        canvas = self.iface.mapCanvas()
        extent = canvas.extent()
        width = canvas.mapSettings().outputSize().width()
        if extent.isEmpty() or width <= 0:
            return None
        source = canvas.mapSettings().destinationCrs()
        if source.isValid() and layer.crs().isValid() and source != layer.crs():
            try:
                extent = QgsCoordinateTransform(source, layer.crs(), QgsProject.instance()).transformBoundingBox(extent)
            except QgsCsException:  # the canvas shows more than the layer's CRS can express
                return None
        return extent.width() / width

    def restore_choices(self) -> None:
        choices = DetectChoices.load()
        for name, box in self.class_boxes.items():
            box.setChecked(name not in choices.unticked)
        self.own_classes.setText(choices.own_classes)
        self.tile_size.setValue(choices.tile_size)
        self.overlap.setValue(choices.overlap)
        self.max_mode.setChecked(choices.max_mode)

    def remember_choices(self) -> None:
        DetectChoices(
            unticked=[name for name, box in self.class_boxes.items() if not box.isChecked()],
            own_classes=self.own_classes.text().strip(),
            tile_size=self.tile_size.value(),
            overlap=self.overlap.value(),
            max_mode=self.max_mode.isChecked(),
        ).save()

    def detect(self) -> None:
        if self.detect_task is not None:
            return
        try:
            params = self.build_params()
        except ParamsError as error:
            self._report_error(str(error))
            return
        self.remember_choices()
        if params.tiles > LARGE_RUN_TILES and not self.confirm_large_run(params):
            self.run_label.setText(tr("Detection not started."))
            return
        if params.export is not None:
            self.iface.messageBar().pushMessage(
                TITLE,
                tr(
                    "“{name}” is not a local file: the chosen area is written to a temporary GeoTIFF "
                    "of {width} × {height} pixels for the backend."
                ).format(name=params.layer_name, width=params.export.width, height=params.export.height),
                Qgis.Info,
                8,
            )
        self.detect_task = DetectTask(BackendClient.from_settings(self.settings), params)
        self.detect_task.progressChanged.connect(self._on_progress)
        self.detect_task.jobProgress.connect(self._on_job_progress)
        self.detect_task.done.connect(self._on_detected)
        self._set_running(True)
        self.run_label.setText(tr("Detecting objects in {name}…").format(name=params.layer_name))
        QgsApplication.taskManager().addTask(self.detect_task)

    def confirm_large_run(self, params) -> bool:
        """Ask before a run over many tiles (hours on a GPU, days on a CPU)."""
        answer = QMessageBox.question(
            self,
            TITLE,
            tr(
                "Detection over “{name}” asks the model about {tiles} tiles of {size} px. On a GPU that "
                "takes roughly a second per tile with the 7B model, much longer on a CPU. Start it? "
                "(A smaller area: canvas extent or a drawn rectangle.)"
            ).format(name=params.layer_name, tiles=f"{params.tiles:,}", size=params.tile_size),
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def cancel(self) -> None:
        if self.detect_task is not None:
            self.run_label.setText(tr("Cancelling…"))
            self.detect_task.cancel()

    def _on_progress(self, percent: float) -> None:
        self.progress_bar.setValue(int(percent))

    def _on_job_progress(self, progress: JobProgress) -> None:
        if self.detect_task is not None and not self.detect_task.isCanceled():
            self.run_label.setText(format_progress(progress))

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
        layer = detections_layer(outcome.geojson, name, fallback)
        add_result(layer, params.layer_id, replace=self.replace_box.isChecked())
        self.last_layer = layer
        self.export_button.setEnabled(True)
        self.progress_bar.setValue(100)
        message, complete = format_outcome(layer.featureCount(), params.layer_name, outcome.geojson)
        self.filter_last_layer()  # after counting: the message counts every object found
        self.run_label.setText(message)
        if complete:
            self.iface.messageBar().pushMessage(TITLE, message, Qgis.Success, 5)
        else:
            self.iface.messageBar().pushMessage(TITLE, message, Qgis.Warning, 0)

    def _set_running(self, running: bool) -> None:
        self.detect_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress_bar.setValue(0)

    # -- filter ------------------------------------------------------------------------

    @staticmethod
    def _score_tooltip(scored: bool) -> str:
        if scored:
            return tr("Hide the objects the model was less sure of (its score: the probability it gave the tokens "
                      "that wrote the object)")
        return tr("This result has no scores: the model's engine gave no token probabilities")

    def _show_min_score(self) -> None:
        self.min_score_label.setText(f"≥ {self.min_score.value() / 100:.2f}")

    def _on_filter_changed(self) -> None:
        self._show_min_score()
        self.filter_last_layer()

    def filter_last_layer(self) -> None:
        """Show only the last result's objects at or above the minimum score and tiles agreeing."""
        if self.last_layer is None:
            return
        scored = has_scores(self.last_layer)
        self.min_score.setEnabled(scored)
        self.min_score.setToolTip(self._score_tooltip(scored))
        apply_filter(self.last_layer, self.min_score.value() / 100 if scored else 0.0, self.min_support.value())
        self.last_layer.triggerRepaint()

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
            self.detect_task.jobProgress.disconnect(self._on_job_progress)
            self.detect_task.cancel()
            self.detect_task = None
        if self.map_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self.map_tool)
            self.map_tool = None
