"""The "Ask" tab: a question about a region of a raster, answered with the Zoom-in Chain.

The user picks a raster layer and an area (a rectangle drawn on the map, the canvas
extent, or the whole layer), types a question and reads the answer in a conversation
view; the region the model looked at is added to the project as the "RSCoVLM ROI" layer.

Regions are drawn in the project CRS but the backend reads the raster by pixels, so the
bounds are sent in the RASTER's CRS (transformed here with QGIS's own transform context,
which honours the user's datum-transformation choices); the answer's geometries come back
in the CRS the result names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .ask_task import AskOutcome, AskTask
from .client import BackendClient
from .layers import add_to_project, crs_of_collection, outline_symbol, polygons_of
from .map_tool import RectangleMapTool, rectangle_band, show_rectangle
from .params import ParamsError, local_raster_path
from .settings import PluginSettings
from .translation import tr

TITLE = "RSCoVLM"
ROI_LAYER_NAME = "RSCoVLM ROI"
MIN_MAX_NEW_TOKENS = 16  # the backend refuses smaller answer budgets for questions

AREA_DRAWN, AREA_CANVAS, AREA_LAYER = "drawn", "canvas", "layer"

ROI_FIELDS = (("kind", QVariant.String), ("label", QVariant.String), ("window", QVariant.String))
# roi: where the model zoomed in; box: a grounded object; region: the whole picture it saw.
KIND_COLOURS = {"roi": "#ff8c00", "box": "#00bcd4", "region": "#9e9e9e"}


class AskInputError(ValueError):
    """What the user chose cannot be asked about; a sentence for the user."""


@dataclass(frozen=True)
class AskRegion:
    """The area a question is about, in the raster's CRS; ``bounds`` None: the whole raster."""

    bounds: tuple[float, float, float, float] | None
    crs: str  # raster authid, else its WKT; empty when the raster has no CRS


# -- pure helpers: geometry and request ----------------------------------------------------


def raster_crs_text(crs: QgsCoordinateReferenceSystem) -> str:
    """An authority code when there is one ("EPSG:32633"), else WKT, else empty."""
    if not crs.isValid():
        return ""
    return crs.authid() or crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


def to_layer_crs(rectangle: QgsReferencedRectangle, layer: QgsRasterLayer, project: QgsProject) -> QgsRectangle:
    """``rectangle`` (in its own CRS) as the bounding box of its outline in the layer's CRS.

    ``transformBoundingBox`` densifies the edges, so a rectangle drawn in Web Mercator
    becomes the box that really contains it in UTM rather than the box of its 4 corners.
    """
    source, target = rectangle.crs(), layer.crs()
    if not source.isValid() or not target.isValid() or source == target:
        return QgsRectangle(rectangle)
    transform = QgsCoordinateTransform(source, target, project.transformContext())
    try:
        return transform.transformBoundingBox(QgsRectangle(rectangle))
    except QgsCsException as error:
        raise AskInputError(
            tr(
                "The region cannot be expressed in the raster's CRS ({crs}): {error}. "
                "Draw it over the imagery."
            ).format(crs=target.authid() or target.description(), error=error)
        ) from error


TASK_ASK, TASK_CAPTION, TASK_CLASSIFY, TASK_GROUND = "ask", "caption", "classify", "ground"


def ask_request(
    raster_path: str,
    question: str,
    region: AskRegion,
    zoom: bool,
    conversation_id: str | None,
    max_new_tokens: int | None,
    task: str = TASK_ASK,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v1/jobs/ask``: only what differs from the backend's defaults."""
    body: dict[str, Any] = {"raster_path": raster_path, "zoom": bool(zoom)}
    if task != TASK_ASK:
        body["task"] = task
    if question:
        body["question"] = question
    if task == TASK_CLASSIFY:
        body["classes"] = list(classes or [])
    if region.bounds is not None:
        body["region"] = {"bounds": [float(v) for v in region.bounds]}
        if region.crs:
            body["region"]["crs"] = region.crs
    if conversation_id and task == TASK_ASK:
        body["conversation_id"] = conversation_id
    if max_new_tokens:
        body["max_new_tokens"] = max(MIN_MAX_NEW_TOKENS, int(max_new_tokens))
    return body


def answer_notes(result: dict[str, Any]) -> list[str]:
    """Sentences saying how the answer was reached: zoomed where, or why not; warnings."""
    notes = []
    window = result.get("roi_window")
    if result.get("task", TASK_ASK) != TASK_ASK:
        pass  # single-turn tasks look at the region as a whole: nothing to say about zooming
    elif result.get("zoomed") and window:
        col, row, width, height = window
        notes.append(
            tr("Zoomed in on {width} x {height} raster pixels at column {col}, row {row}.").format(
                width=width, height=height, col=col, row=row
            )
        )
    elif result.get("zoomed"):
        notes.append(tr("Zoomed in."))
    else:
        reason = result.get("zoom_fallback_reason") or tr("the backend gave no reason.")
        notes.append(tr("Not zoomed in: {reason}").format(reason=reason))
    notes.extend(str(w) for w in result.get("warnings") or [])
    return notes


def roi_layer(
    result: dict[str, Any],
    fallback: QgsReferencedRectangle | None,
    name: str = ROI_LAYER_NAME,
) -> QgsVectorLayer:
    """The answer's region of interest (and grounded boxes) as a styled outline layer.

    The geometries and CRS are the result's own ("features", named with its CRS): the
    region shown to the model, and the ROI it zoomed into when it did. Should a result
    carry neither, the requested region ``fallback`` (raster CRS, clipped to the raster)
    is drawn instead.
    """
    collection = result.get("features") or {}
    crs = crs_of_collection(collection)
    if not crs.isValid() and fallback is not None:
        crs = fallback.crs()
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes([QgsField(field_name, kind) for field_name, kind in ROI_FIELDS])
    layer.updateFields()
    features = []
    for item in collection.get("features") or []:
        properties = item.get("properties") or {}
        for geometry in polygons_of(item.get("geometry")):
            feature = QgsFeature(layer.fields())
            feature.setGeometry(geometry)
            feature.setAttributes([_text(properties.get(field_name)) for field_name, _ in ROI_FIELDS])
            features.append(feature)
    if not any(f["kind"] in ("roi", "region") for f in features) and fallback is not None and not fallback.isEmpty():
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromRect(fallback))
        feature.setAttributes(["region", tr("the whole region shown to the model"), None])
        features.append(feature)
    provider.addFeatures(features)
    layer.updateExtents()
    categories = [
        QgsRendererCategory(kind, outline_symbol(QColor(colour)), kind) for kind, colour in KIND_COLOURS.items()
    ]
    layer.setRenderer(QgsCategorizedSymbolRenderer("kind", categories))
    return layer


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- the panel -----------------------------------------------------------------------------


class AskPanel(QWidget):
    """Layer, area, question, Ask / Cancel / New conversation, and the conversation so far.

    ``settings`` (backend URL, token, answer budget) may be replaced by the dock when the
    user changes them; ``shutdown()`` must be called before the plugin unloads.
    """

    def __init__(self, iface, parent: QWidget | None = None, settings: PluginSettings | None = None):
        super().__init__(parent)
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.settings = settings or PluginSettings.load()
        self.task: AskTask | None = None
        self.drawn: QgsReferencedRectangle | None = None   # in the CRS it was drawn in
        self.conversation_id: str | None = None
        self.conversation_topic: tuple | None = None        # (raster path, region) of that conversation
        self.last_request: dict[str, Any] | None = None
        self.last_result: dict[str, Any] | None = None
        self.roi_layer_id: str | None = None
        self._fallback: QgsReferencedRectangle | None = None  # region of the running question
        self._previous_tool = None
        self.map_tool = RectangleMapTool(self.canvas)
        self.map_tool.rectangleDrawn.connect(self._on_drawn)
        self.map_tool.cancelled.connect(self._on_draw_cancelled)
        self.region_band = rectangle_band(self.canvas, QColor(255, 140, 0, 200))
        self._build()
        self._set_running(False)

    # -- layout --------------------------------------------------------------------------

    def _build(self) -> None:
        column = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow(tr("Raster layer"), self.layer_combo)

        area_row = QHBoxLayout()
        self.area_combo = QComboBox(self)
        self.area_combo.addItem(tr("Whole layer"), AREA_LAYER)
        self.area_combo.addItem(tr("Drawn rectangle"), AREA_DRAWN)
        self.area_combo.addItem(tr("Canvas extent"), AREA_CANVAS)
        self.draw_button = QPushButton(tr("Draw rectangle"), self)
        self.draw_button.setToolTip(tr("Drag a rectangle on the map; Esc cancels"))
        area_row.addWidget(self.area_combo, 1)
        area_row.addWidget(self.draw_button)
        form.addRow(tr("Area"), area_row)

        self.task_combo = QComboBox(self)
        self.task_combo.addItem(tr("Ask a question"), TASK_ASK)
        self.task_combo.addItem(tr("Describe the region"), TASK_CAPTION)
        self.task_combo.addItem(tr("Classify the scene"), TASK_CLASSIFY)
        self.task_combo.addItem(tr("Find an object"), TASK_GROUND)
        form.addRow(tr("Task"), self.task_combo)
        self.question_edit = QLineEdit(self)
        self.question_label = QLabel(tr("Question"), self)
        form.addRow(self.question_label, self.question_edit)
        self.classes_edit = QLineEdit(self)
        self.classes_edit.setPlaceholderText(tr("e.g. airport, farmland, harbor, residential"))
        self.classes_label = QLabel(tr("Scene classes"), self)
        form.addRow(self.classes_label, self.classes_edit)
        self.zoom_check = QCheckBox(tr("Zoom in"), self)
        self.zoom_check.setChecked(True)
        self.zoom_check.setToolTip(tr("Let the model pick a part of the region and look at it at full resolution"))
        form.addRow(self.zoom_check)
        column.addLayout(form)

        buttons = QHBoxLayout()
        self.ask_button = QPushButton(tr("Ask"), self)
        self.cancel_button = QPushButton(tr("Cancel"), self)
        self.new_button = QPushButton(tr("New conversation"), self)
        self.new_button.setToolTip(tr("Forget the earlier questions and answers; the next question starts afresh"))
        for button in (self.ask_button, self.cancel_button, self.new_button):
            buttons.addWidget(button)
        column.addLayout(buttons)

        self.conversation_view = QTextBrowser(self)
        self.conversation_view.setOpenExternalLinks(False)
        column.addWidget(self.conversation_view, 1)
        self.status_label = QLabel("", self)
        self.status_label.setWordWrap(True)
        column.addWidget(self.status_label)

        self.draw_button.clicked.connect(self.start_drawing)
        self.task_combo.currentIndexChanged.connect(self._on_task_changed)
        self._on_task_changed()
        self.area_combo.currentIndexChanged.connect(self._on_area_changed)
        self.ask_button.clicked.connect(self.ask)
        self.question_edit.returnPressed.connect(self.ask)
        self.cancel_button.clicked.connect(self.cancel)
        self.new_button.clicked.connect(self.new_conversation)

    def client(self) -> BackendClient:
        return BackendClient.from_settings(self.settings)

    def current_task(self) -> str:
        return self.task_combo.currentData()

    def set_task(self, task: str) -> None:
        self.task_combo.setCurrentIndex(self.task_combo.findData(task))

    def _on_task_changed(self) -> None:
        """Show only the inputs the chosen task takes."""
        task = self.current_task()
        needs_text = task in (TASK_ASK, TASK_GROUND)
        self.question_label.setText(tr("Question") if task == TASK_ASK else tr("Object"))
        self.question_edit.setPlaceholderText(
            tr("e.g. How many ships are docked here?") if task == TASK_ASK else tr("e.g. the white ship near the pier")
        )
        for widget in (self.question_label, self.question_edit):
            widget.setVisible(needs_text)
        for widget in (self.classes_label, self.classes_edit):
            widget.setVisible(task == TASK_CLASSIFY)
        self.zoom_check.setVisible(task == TASK_ASK)
        self.new_button.setVisible(task == TASK_ASK)

    def area(self) -> str:
        return self.area_combo.currentData()

    def set_area(self, area: str) -> None:
        self.area_combo.setCurrentIndex(self.area_combo.findData(area))

    # -- drawing -------------------------------------------------------------------------

    def start_drawing(self) -> None:
        if self.canvas.mapTool() is not self.map_tool:
            self._previous_tool = self.canvas.mapTool()
            self.canvas.setMapTool(self.map_tool)
        self.status_label.setText(tr("Drag a rectangle on the map; press Esc to cancel."))

    def _finish_drawing(self) -> None:
        if self.canvas.mapTool() is self.map_tool:
            if self._previous_tool is not None:
                self.canvas.setMapTool(self._previous_tool)
            else:
                self.canvas.unsetMapTool(self.map_tool)
        self._previous_tool = None

    def _on_drawn(self, rectangle: QgsRectangle) -> None:
        if rectangle.width() <= 0 or rectangle.height() <= 0:
            self.status_label.setText(tr("A click has no area: drag to draw a rectangle, or press Esc."))
            return
        self.drawn = QgsReferencedRectangle(rectangle, self.canvas.mapSettings().destinationCrs())
        show_rectangle(self.region_band, rectangle)
        self._finish_drawing()
        self.set_area(AREA_DRAWN)
        self.status_label.setText(tr("Region drawn: type a question and click Ask."))

    def _on_draw_cancelled(self) -> None:
        self._finish_drawing()
        self.status_label.setText(tr("Drawing cancelled."))

    def _on_area_changed(self) -> None:
        self.region_band.setVisible(self.area() == AREA_DRAWN and self.drawn is not None)

    # -- asking --------------------------------------------------------------------------

    def region_for(self, layer: QgsRasterLayer) -> tuple[AskRegion, QgsReferencedRectangle]:
        """The chosen area in the layer's CRS, and its outline clipped to the layer (for display)."""
        project = QgsProject.instance()
        area, crs = self.area(), layer.crs()
        if area == AREA_LAYER:
            return AskRegion(None, raster_crs_text(crs)), QgsReferencedRectangle(layer.extent(), crs)
        if area == AREA_DRAWN:
            if self.drawn is None:
                raise AskInputError(
                    tr("Draw a rectangle on the map first (Draw rectangle), or choose the canvas extent or the whole layer.")
                )
            chosen = self.drawn
        else:
            chosen = QgsReferencedRectangle(self.canvas.extent(), self.canvas.mapSettings().destinationCrs())
        bounds = to_layer_crs(chosen, layer, project)
        if bounds.isEmpty() or not bounds.isFinite():
            raise AskInputError(tr("The region has no area in the raster's CRS: draw a larger one over the imagery."))
        region = AskRegion(
            (bounds.xMinimum(), bounds.yMinimum(), bounds.xMaximum(), bounds.yMaximum()), raster_crs_text(crs)
        )
        return region, QgsReferencedRectangle(bounds.intersect(layer.extent()), crs)

    def ask(self) -> None:
        """Validate on the main thread, then send the question as a background task."""
        if self.task is not None:
            return
        try:
            layer = self.layer_combo.currentLayer()
            if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
                raise AskInputError(tr("Choose a raster layer to ask about."))
            raster_path = local_raster_path(layer)
            task = self.current_task()
            question = " ".join(self.question_edit.text().split()) if task in (TASK_ASK, TASK_GROUND) else ""
            classes = [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]
            if task == TASK_ASK and not question:
                raise AskInputError(tr("The question is empty: type what you want to know about the imagery."))
            if task == TASK_GROUND and not question:
                raise AskInputError(tr("Describe the object to find, e.g. “the white ship near the pier”."))
            if task == TASK_CLASSIFY and not classes:
                raise AskInputError(tr("List the scene classes to choose from, separated by commas."))
            region, outline = self.region_for(layer)
        except (AskInputError, ParamsError) as error:
            self._report_error(str(error))
            return
        topic = (raster_path, region)
        if self.conversation_id is not None and topic != self.conversation_topic:
            self._start_over(tr("The raster or the region changed: a new conversation starts."))
        budget = self.settings.max_new_tokens or None
        request = ask_request(raster_path, question, region, self.zoom_check.isChecked(), self.conversation_id, budget,
                              task=task, classes=classes)
        self.last_request = request
        if task == TASK_ASK:
            self.conversation_topic = topic
        self._fallback = outline
        self._append(tr("You"), question or self.task_combo.currentText() + (f": {', '.join(classes)}" if classes else ""))
        self.status_label.setText(tr("Asking about {name}…").format(name=layer.name()))
        self.task = AskTask(self.client(), request)
        self.task.done.connect(self._on_answered)
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        if self.task is not None:
            self.status_label.setText(tr("Cancelling…"))
            self.task.cancel()

    def new_conversation(self) -> None:
        """Drop the conversation id: the next question is asked as a first one."""
        self._start_over(tr("New conversation."))
        self.conversation_view.clear()
        self.status_label.setText(tr("New conversation: the next question starts afresh."))

    def _start_over(self, note: str) -> None:
        if self.conversation_id is not None:
            self._append_note(note)
        self.conversation_id = None
        self.conversation_topic = None

    def _on_answered(self, outcome: AskOutcome) -> None:
        self.task = None
        self._set_running(False)
        if outcome.cancelled:
            self._append_note(tr("Question cancelled."))
            self.status_label.setText(tr("Question cancelled."))
            return
        if outcome.error or outcome.result is None:
            message = outcome.error or tr("The backend returned no answer.")
            self._append_note(message)
            self._report_error(message)
            sent_id = outcome.request.get("conversation_id")
            if sent_id and sent_id in message:  # the backend forgot it (expired): don't send it again
                self._start_over(tr("The next question starts a new conversation."))
            return
        result = outcome.result
        self.last_result = result
        if result.get("task", TASK_ASK) == TASK_ASK:
            self.conversation_id = result.get("conversation_id") or None
        answer = result.get("answer") or ""
        self._append(tr("RSCoVLM"), answer or tr("(the model gave an empty answer)"))
        if result.get("label"):
            self._append_note(tr("Closest class: {label}").format(label=result["label"]))
        if result.get("task") == TASK_GROUND:
            found = any(f.get("properties", {}).get("kind") == "box" for f in (result.get("features") or {}).get("features", []))
            self._append_note(tr("The object's box is drawn on the map.") if found else tr("The model did not give a box."))
        for note in answer_notes(result):
            self._append_note(note)
        self._show_roi(result)
        message = tr("Answered; the region of interest is in the layer “{name}”.").format(name=tr(ROI_LAYER_NAME))
        self.status_label.setText(message)
        self.iface.messageBar().pushMessage(TITLE, message, Qgis.Success, 5)

    def _show_roi(self, result: dict[str, Any]) -> None:
        project = QgsProject.instance()
        if self.roi_layer_id and project.mapLayer(self.roi_layer_id) is not None:
            project.removeMapLayer(self.roi_layer_id)
        layer = add_to_project(roi_layer(result, self._fallback, tr(ROI_LAYER_NAME)), project)
        self.roi_layer_id = layer.id()

    # -- showing -------------------------------------------------------------------------

    def _append(self, who: str, text: str) -> None:
        self.conversation_view.append(f"<p><b>{html.escape(who)}:</b> {html.escape(text)}</p>")

    def _append_note(self, text: str) -> None:
        self.conversation_view.append(f"<p><i>{html.escape(text)}</i></p>")

    def _set_running(self, running: bool) -> None:
        self.ask_button.setEnabled(not running)
        self.new_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _report_error(self, message: str) -> None:
        self.status_label.setText(message)
        self.iface.messageBar().pushMessage(TITLE, message, Qgis.Critical, 0)

    # -- teardown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel a running question (the task DELETEs its job) and take the bands off the map."""
        if self.task is not None:
            self.task.done.disconnect(self._on_answered)
            self.task.cancel()
            self.task = None
        self._finish_drawing()
        for band in (self.region_band, self.map_tool.band):
            band.reset()
            self.canvas.scene().removeItem(band)
