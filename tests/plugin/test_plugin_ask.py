"""The Ask tab, used as a user would: draw on the map in another CRS, ask, read the answer.

Real headless QGIS, the real ``rscovlm serve`` with the tiny random model (conftest), and
mouse and key events sent to the canvas. The random model never asks to zoom in, so the
server answers from the first pass and the region of interest is the whole region asked
about; the assertions hold whichever way the model answers.
"""

from __future__ import annotations

import pytest
import rasterio
from pyproj import Transformer
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QEvent, QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QMouseEvent
from qgis.PyQt.QtWidgets import QApplication
from rasterio.windows import from_bounds

from rscovlm_qgis.ask_panel import AREA_CANVAS, AREA_LAYER, ROI_LAYER_NAME, AskPanel
from rscovlm_qgis.settings import PluginSettings

TASK_TIMEOUT_MS = 120_000
PROJECT_CRS = "EPSG:3857"


@pytest.fixture()
def web_mercator_project(qgis_new_project, qgis_canvas):
    """A project (and canvas) in Web Mercator, unlike any raster used here."""
    crs = QgsCoordinateReferenceSystem(PROJECT_CRS)
    QgsProject.instance().setCrs(crs)
    qgis_canvas.setDestinationCrs(crs)
    return crs


def add_raster(path, canvas) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    canvas.setExtent(in_project_crs(layer.extent(), layer.crs()))
    canvas.refresh()
    return layer


def in_project_crs(rectangle: QgsRectangle, crs) -> QgsRectangle:
    transform = QgsCoordinateTransform(crs, QgsProject.instance().crs(), QgsProject.instance())
    return transform.transformBoundingBox(rectangle)


@pytest.fixture()
def scene(web_mercator_project, qgis_canvas, synth_scene) -> QgsRasterLayer:
    layer = add_raster(synth_scene[0], qgis_canvas)
    assert layer.crs().authid() not in ("", PROJECT_CRS)  # the point: the CRSs differ
    return layer


@pytest.fixture()
def small(web_mercator_project, qgis_canvas, small_scene) -> QgsRasterLayer:
    return add_raster(small_scene, qgis_canvas)


@pytest.fixture()
def make_panel(qgis_iface, qtbot):
    panels = []

    def make(url: str, token_file, **settings) -> AskPanel:
        # A random tiny model rarely stops by itself: a small answer budget keeps each turn quick.
        panel = AskPanel(qgis_iface, settings=PluginSettings(url, str(token_file), max_new_tokens=16, **settings))
        qtbot.addWidget(panel)
        panel.show()
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()


def device_point(canvas, point: QgsPointXY) -> QPoint:
    pixel = canvas.getCoordinateTransform().transform(point)
    return QPoint(round(pixel.x()), round(pixel.y()))


def mouse_move(widget, position: QPoint) -> None:
    """A drag step with the left button held (QTest's mouseMove only moves the cursor)."""
    event = QMouseEvent(QEvent.MouseMove, QPointF(position), Qt.NoButton, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(qtbot, canvas, start: QgsPointXY, end: QgsPointXY) -> None:
    viewport = canvas.viewport()
    a, b = device_point(canvas, start), device_point(canvas, end)
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, a)
    mouse_move(viewport, (a + b) / 2)
    mouse_move(viewport, b)
    qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, b)


def inner_rectangle(outer: QgsRectangle, lo: float, hi: float) -> QgsRectangle:
    x0, y0, w, h = outer.xMinimum(), outer.yMinimum(), outer.width(), outer.height()
    return QgsRectangle(x0 + lo * w, y0 + lo * h, x0 + hi * w, y0 + hi * h)


def ask(qtbot, panel: AskPanel, question: str) -> None:
    panel.question_edit.clear()
    qtbot.keyClicks(panel.question_edit, question)
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    assert panel.task is not None and panel.cancel_button.isEnabled() and not panel.ask_button.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=TASK_TIMEOUT_MS)


def roi_layers():
    return QgsProject.instance().mapLayersByName(ROI_LAYER_NAME)


def test_a_region_drawn_in_another_crs_is_asked_about_in_the_rasters_crs(
    qgis_iface, qgis_canvas, qtbot, backend, scene, synth_scene, make_panel
):
    panel = make_panel(backend.url, backend.token_file)
    assert panel.layer_combo.currentLayer() == scene
    # Inside the raster's footprint: a quarter of its Web Mercator box, about 300 x 300 px.
    wanted = inner_rectangle(in_project_crs(scene.extent(), scene.crs()), 0.35, 0.6)

    qtbot.mouseClick(panel.draw_button, Qt.LeftButton)
    assert qgis_canvas.mapTool() is panel.map_tool
    drag(qtbot, qgis_canvas, QgsPointXY(wanted.xMinimum(), wanted.yMaximum()), QgsPointXY(wanted.xMaximum(), wanted.yMinimum()))

    assert qgis_canvas.mapTool() is not panel.map_tool  # one rectangle, then the previous tool
    assert panel.drawn is not None and panel.drawn.crs().authid() == PROJECT_CRS
    pixel = qgis_canvas.mapUnitsPerPixel()
    for got, want in zip(rect_tuple(panel.drawn), rect_tuple(wanted)):
        assert got == pytest.approx(want, abs=pixel)
    assert panel.region_band.numberOfVertices() >= 4 and panel.region_band.isVisible()

    ask(qtbot, panel, "What is in this region?")

    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []
    result = panel.last_result
    conversation = panel.conversation_view.toPlainText()
    assert "What is in this region?" in conversation
    assert (result["answer"] or "(the model gave an empty answer)") in conversation
    assert ("Zoomed in on" in conversation) if result["zoomed"] else ("Not zoomed in:" in conversation)

    # What was sent: the drawn rectangle, in the raster's CRS (independently transformed here).
    region = panel.last_request["region"]
    assert region["crs"] == scene.crs().authid()
    to_raster = Transformer.from_crs(PROJECT_CRS, region["crs"], always_xy=True)
    expected = to_raster.transform_bounds(*rect_tuple(panel.drawn), densify_pts=21)
    assert region["bounds"] == pytest.approx(list(expected), abs=0.5)
    # ... and the backend read the raster window under those bounds.
    with rasterio.open(synth_scene[0]) as raster:
        gsd = raster.res[0]
        window = from_bounds(*expected, transform=raster.transform)
    col, row, width, height = result["region_window"]
    assert (col, row, width, height) == pytest.approx((window.col_off, window.row_off, window.width, window.height), abs=2)

    [roi] = roi_layers()
    assert roi.crs() == scene.crs()
    kinds = sorted(f["kind"] for f in roi.getFeatures())
    assert kinds == (["region", "roi"] if result["zoomed"] else ["region"])
    [feature] = [f for f in roi.getFeatures() if f["kind"] == ("roi" if result["zoomed"] else "region")]
    drawn_in_raster_crs = QgsGeometry.fromRect(QgsRectangle(*expected))
    # The region is the pixel window holding the drawn extent: up to one pixel larger per side.
    assert drawn_in_raster_crs.buffer(2 * gsd, 2).contains(feature.geometry())
    if not result["zoomed"]:  # the model saw the whole region: that is its region of interest
        assert feature.geometry().area() == pytest.approx(drawn_in_raster_crs.area(), rel=0.01)

    # Asking again replaces the ROI layer instead of piling them up.
    ask(qtbot, panel, "And now?")
    assert len(roi_layers()) == 1


def test_escape_cancels_drawing(qgis_canvas, qtbot, scene, make_panel, backend):
    panel = make_panel(backend.url, backend.token_file)
    wanted = inner_rectangle(qgis_canvas.extent(), 0.3, 0.6)
    qtbot.mouseClick(panel.draw_button, Qt.LeftButton)
    viewport = qgis_canvas.viewport()
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, device_point(qgis_canvas, QgsPointXY(wanted.xMinimum(), wanted.yMaximum())))
    mouse_move(viewport, device_point(qgis_canvas, QgsPointXY(wanted.xMaximum(), wanted.yMinimum())))
    assert panel.map_tool.drawing and panel.map_tool.band.numberOfVertices() >= 4

    qtbot.keyClick(qgis_canvas, Qt.Key_Escape)

    assert not panel.map_tool.drawing
    assert panel.map_tool.band.numberOfVertices() == 0
    assert qgis_canvas.mapTool() is not panel.map_tool
    assert panel.drawn is None
    assert panel.status_label.text() == "Drawing cancelled."


def test_bad_input_gives_a_sentence_and_the_panel_stays_usable(
    qgis_iface, qtbot, qgis_new_project, qgis_canvas, small, make_panel, backend, closed_url
):
    panel = make_panel(closed_url, backend.token_file)  # nobody listens: nothing may be sent
    panel.set_area(AREA_LAYER)

    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)  # empty question
    assert panel.task is None
    assert panel.status_label.text().startswith("The question is empty")
    [message] = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert message.endswith(panel.status_label.text())

    panel.set_area("drawn")  # nothing drawn yet
    panel.question_edit.setText("How many ships?")
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    assert panel.task is None and "Draw a rectangle" in panel.status_label.text()

    panel.set_area(AREA_LAYER)  # the backend is down
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=30_000)
    assert "does not answer" in panel.status_label.text() and "rscovlm serve" in panel.status_label.text()
    assert panel.ask_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert roi_layers() == []

    # A region outside the raster: the server's own sentence.
    panel.settings = PluginSettings(backend.url, str(backend.token_file), max_new_tokens=16)
    far = qgis_canvas.extent()
    far.setXMinimum(far.xMinimum() + 1e6)
    far.setXMaximum(far.xMaximum() + 1e6)
    qgis_canvas.setExtent(far)
    panel.set_area(AREA_CANVAS)
    ask(qtbot, panel, "How many ships?")
    assert "outside the raster" in panel.status_label.text()
    assert "outside the raster" in qgis_iface.messageBar().get_messages(Qgis.Critical)[-1]
    assert panel.ask_button.isEnabled() and roi_layers() == []

    QgsProject.instance().removeMapLayer(small.id())  # no raster left to ask about
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    assert panel.task is None and panel.status_label.text() == "Choose a raster layer to ask about."


def test_follow_ups_keep_the_conversation_until_new_conversation(qtbot, small, make_panel, backend):
    panel = make_panel(backend.url, backend.token_file)
    panel.set_area(AREA_LAYER)

    ask(qtbot, panel, "What is the land use?")
    first = panel.last_result
    assert "conversation_id" not in panel.last_request
    assert first["conversation_id"] and panel.conversation_id == first["conversation_id"]

    ask(qtbot, panel, "Are there any ships?")
    assert panel.last_request["conversation_id"] == first["conversation_id"]
    assert panel.last_result["follow_up"] is True
    assert panel.conversation_view.toPlainText().count("You:") == 2

    qtbot.mouseClick(panel.new_button, Qt.LeftButton)
    assert panel.conversation_id is None
    assert "You:" not in panel.conversation_view.toPlainText()

    ask(qtbot, panel, "What is the land use?")
    assert "conversation_id" not in panel.last_request
    assert panel.last_result["follow_up"] is False

    panel.conversation_id = "forgotten-by-the-backend"  # as after the backend's expiry or restart
    ask(qtbot, panel, "And the roads?")
    assert "unknown or expired" in panel.status_label.text()
    assert panel.conversation_id is None and panel.ask_button.isEnabled()  # the next question starts afresh


def test_cancel_while_asking(qtbot, small, make_panel, backend):
    panel = make_panel(backend.url, backend.token_file)
    panel.set_area(AREA_LAYER)
    panel.question_edit.setText("Describe the scene.")
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=TASK_TIMEOUT_MS)
    assert panel.status_label.text() == "Question cancelled."
    assert panel.ask_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert roi_layers() == []


def rect_tuple(rectangle: QgsRectangle) -> tuple[float, float, float, float]:
    return (rectangle.xMinimum(), rectangle.yMinimum(), rectangle.xMaximum(), rectangle.yMaximum())


def test_single_turn_tasks_from_the_panel(qtbot, small, make_panel, backend):
    from rscovlm_qgis.ask_panel import TASK_CAPTION, TASK_CLASSIFY, TASK_GROUND

    panel = make_panel(backend.url, backend.token_file)
    panel.set_area(AREA_LAYER)

    panel.set_task(TASK_CLASSIFY)
    assert panel.classes_edit.isVisibleTo(panel) and not panel.question_edit.isVisibleTo(panel)
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)  # no classes yet: a sentence, no job
    assert panel.task is None and "scene classes" in panel.status_label.text()
    panel.classes_edit.setText("farmland, harbor, airport")
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=TASK_TIMEOUT_MS)
    assert panel.last_request["task"] == "classify"
    assert panel.last_request["classes"] == ["farmland", "harbor", "airport"]
    assert panel.last_result["label"] in ("farmland", "harbor", "airport")
    assert "Closest class" in panel.conversation_view.toPlainText()

    panel.set_task(TASK_GROUND)
    ask(qtbot, panel, "the white plane")
    assert panel.last_request["task"] == "ground" and panel.last_request["question"] == "the white plane"
    assert panel.last_result["task"] == "ground"
    assert len(roi_layers()) == 1 and roi_layers()[0].crs() == small.crs()

    panel.set_task(TASK_CAPTION)
    assert not panel.question_edit.isVisibleTo(panel) and not panel.zoom_check.isVisibleTo(panel)
    qtbot.mouseClick(panel.ask_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.task is None, timeout=TASK_TIMEOUT_MS)
    assert panel.last_request["task"] == "caption" and "question" not in panel.last_request
    assert panel.conversation_id is None  # single-turn tasks never start a conversation
