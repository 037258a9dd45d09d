"""The dock, clicked as a user would, against the real backend in a real headless QGIS."""

from __future__ import annotations

import pytest
from qgis.core import (
    Qgis,
    QgsCategorizedSymbolRenderer,
    QgsProject,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QFileDialog, QLabel

from rscovlm_qgis import areas
from rscovlm_qgis.dock import RSCoVLMDock
from rscovlm_qgis.layers import GROUP_NAME
from rscovlm_qgis.params import DOTA_CLASSES
from rscovlm_qgis.settings import PluginSettings

TASK_TIMEOUT_MS = 120_000


@pytest.fixture()
def scene_layer(qgis_new_project, qgis_iface, small_scene):
    layer = QgsRasterLayer(str(small_scene), "scene")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    return layer


def make_dock(qtbot, iface, url: str, token_file) -> RSCoVLMDock:
    dock = RSCoVLMDock(iface)
    # A random tiny model rarely stops by itself: a small answer budget keeps each tile quick.
    dock.settings = PluginSettings(backend_url=url, token_file=str(token_file), max_new_tokens=32)
    qtbot.addWidget(dock)
    dock.show()  # like the user opening the panel: picks the current layer, checks the backend
    qtbot.waitUntil(lambda: dock.backend_panel.check_task is None, timeout=30_000)
    return dock


def result_layers() -> list[QgsVectorLayer]:
    return [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsVectorLayer)]


def run_detection(qtbot, panel) -> None:
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.detect_task is None, timeout=TASK_TIMEOUT_MS)


def test_the_dock_has_detect_ask_and_backend_tabs(qgis_iface, qtbot, backend):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())] == ["Detect", "Ask", "Backend"]
    assert dock.tabs.widget(0) is dock.detect_panel and dock.tabs.widget(2) is dock.backend_panel
    assert len(dock.detect_panel.class_boxes) == len(DOTA_CLASSES) == 15


def test_backend_tab_shows_the_device_and_reports_a_silent_url(qgis_iface, qtbot, backend, closed_url):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.backend_panel
    assert "backend answers" in panel.backend_label.text()
    assert "CPU: will be slow" in panel.device_label.text() and "<b>" in panel.device_label.text()
    assert "Queue" in panel.details_label.text() and "Model" in panel.details_label.text()

    panel.url_edit.setText(closed_url)  # the user types another URL and clicks Connect
    qtbot.mouseClick(panel.check_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.check_task is None, timeout=30_000)
    assert dock.settings.backend_url == closed_url
    assert "does not answer" in panel.backend_label.text() and "rscovlm serve" in panel.backend_label.text()


def test_detect_adds_a_styled_layer_in_a_group_and_exports_a_shapefile(
    qgis_iface, qtbot, backend, scene_layer, tmp_path, monkeypatch
):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    assert panel.layer_combo.currentLayer() == scene_layer
    assert not panel.export_button.isEnabled()

    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    assert panel.cancel_button.isEnabled() and not panel.detect_button.isEnabled()
    qtbot.waitUntil(lambda: panel.detect_task is None, timeout=TASK_TIMEOUT_MS)

    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []
    [result] = result_layers()
    assert result.crs() == scene_layer.crs()
    assert isinstance(result.renderer(), QgsCategorizedSymbolRenderer)
    assert result.renderer().classAttribute() == "class" and result.labelsEnabled()
    group = QgsProject.instance().layerTreeRoot().findGroup(GROUP_NAME)
    assert group is not None and [n.layer() for n in group.findLayers()] == [result]
    assert panel.progress_bar.value() == 100
    assert panel.export_button.isEnabled() and panel.detect_button.isEnabled()

    target = tmp_path / "detections"  # typed without extension: the chosen filter decides
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "ESRI Shapefile (*.shp)"))
    qtbot.mouseClick(panel.export_button, Qt.LeftButton)
    shp = target.with_suffix(".shp")
    assert shp.is_file() and shp.with_suffix(".prj").is_file()
    back = QgsVectorLayer(str(shp), "back", "ogr")
    assert back.isValid() and back.crs() == scene_layer.crs()
    assert back.featureCount() == result.featureCount()


def test_options_and_a_drawn_rectangle_reach_the_job_and_reruns_are_numbered_or_replaced(
    qgis_iface, qtbot, backend, scene_layer
):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    qtbot.mouseClick(panel.none_button, Qt.LeftButton)
    panel.class_boxes["ship"].setChecked(True)
    panel.own_classes.setText(" Wind  Turbine, ship ")
    panel.tile_size.setValue(384)
    panel.overlap.setValue(64)
    panel.max_mode.setChecked(True)
    extent = scene_layer.extent()
    drawn = QgsRectangle(extent.xMinimum(), extent.yMinimum(), extent.center().x(), extent.center().y())
    panel.set_drawn_rectangle(drawn, scene_layer.crs())
    assert panel.area_combo.currentData() == areas.DRAWN_RECTANGLE

    params = panel.build_params()
    assert params.classes == ("ship", "wind turbine")
    assert (params.tile_size, params.overlap, params.max_mode) == (384, 64, True)
    body = params.to_request()
    assert body["region"]["bounds"] == pytest.approx(list(areas.bounds_of(drawn)))
    assert body["region"]["crs"] == scene_layer.crs().authid()

    panel.max_mode.setChecked(False)  # keep the test quick on CPU
    run_detection(qtbot, panel)
    run_detection(qtbot, panel)
    names = sorted(layer.name() for layer in result_layers())
    assert names == ["scene detections", "scene detections (2)"]

    panel.replace_box.setChecked(True)
    run_detection(qtbot, panel)
    assert [layer.name() for layer in result_layers()] == ["scene detections"]
    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []


def test_selected_features_and_canvas_extent_give_regions(qgis_iface, qtbot, backend, scene_layer):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    polygons = QgsVectorLayer(f"Polygon?crs={scene_layer.crs().authid()}", "outline", "memory")
    from qgis.core import QgsFeature, QgsGeometry

    e = scene_layer.extent()
    features = []
    for dx in (0, 60):
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(e.xMinimum() + dx, e.yMinimum(), e.xMinimum() + dx + 40, e.yMinimum() + 30)))
        features.append(feature)
    polygons.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(polygons)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData(areas.SELECTED_FEATURES))
    assert panel.selection_combo.isEnabled() and not panel.draw_button.isEnabled()
    panel.selection_combo.setLayer(polygons)
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)  # nothing selected: a sentence, no job
    assert panel.detect_task is None and "No features are selected" in panel.run_label.text()
    polygons.selectAll()
    bounds, crs = panel.chosen_region()
    assert bounds == pytest.approx((e.xMinimum(), e.yMinimum(), e.xMinimum() + 100, e.yMinimum() + 30))
    assert crs == scene_layer.crs()

    qgis_iface.mapCanvas().setDestinationCrs(scene_layer.crs())
    qgis_iface.mapCanvas().setExtent(e)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData(areas.CANVAS_EXTENT))
    bounds, _ = panel.chosen_region()
    assert QgsRectangle(*bounds).contains(e.center())


def test_a_layer_that_is_not_a_file_is_exported_for_the_job(qgis_iface, qtbot, backend, scene_layer):
    parameters = QgsRasterDataProvider.VirtualRasterParameters()
    parameters.crs, parameters.extent = scene_layer.crs(), scene_layer.extent()
    parameters.width, parameters.height = scene_layer.width(), scene_layer.height()
    parameters.formula = '"scene@1"'
    source = QgsRasterDataProvider.VirtualRasterInputLayers()
    source.name, source.uri, source.provider = "scene", scene_layer.source(), "gdal"
    parameters.rInputLayers = [source]
    virtual = QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(parameters), "virtual", "virtualraster")
    assert virtual.isValid()
    QgsProject.instance().addMapLayer(virtual)

    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    panel.layer_combo.setLayer(virtual)
    run_detection(qtbot, panel)
    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []
    assert any("temporary GeoTIFF" in m for m in qgis_iface.messageBar().get_messages(Qgis.Info))
    [result] = result_layers()
    assert result.name() == "virtual detections" and result.crs() == scene_layer.crs()


def test_cancel_stops_the_run_without_adding_a_layer(qgis_iface, qtbot, backend, scene_layer):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.detect_task is None, timeout=TASK_TIMEOUT_MS)
    assert "cancelled" in panel.run_label.text()
    assert result_layers() == []
    assert panel.detect_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_a_silent_backend_is_reported_in_the_message_bar(qgis_iface, qtbot, backend, scene_layer, closed_url):
    dock = make_dock(qtbot, qgis_iface, closed_url, backend.token_file)
    panel = dock.detect_panel
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.detect_task is None, timeout=30_000)
    [message] = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert "does not answer" in message
    assert "does not answer" in panel.run_label.text()
    assert result_layers() == []


def test_no_classes_at_all_is_refused_with_a_sentence(qgis_iface, qtbot, backend, scene_layer):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    qtbot.mouseClick(panel.none_button, Qt.LeftButton)
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    assert panel.detect_task is None and "Tick at least one class" in panel.run_label.text()
    qtbot.mouseClick(panel.all_button, Qt.LeftButton)
    assert panel.chosen_classes() is None  # the whole DOTA list: the backend's default


def test_the_ask_tab_is_the_ask_panel_or_a_placeholder(qgis_iface, qtbot, backend):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    try:
        from rscovlm_qgis.ask_panel import AskPanel
    except ImportError:
        assert isinstance(dock.ask_panel, QLabel)
    else:
        assert isinstance(dock.ask_panel, AskPanel)


def test_detect_options_are_remembered_for_the_next_session(qgis_iface, qtbot):
    from rscovlm_qgis.detect_panel import DetectPanel
    from rscovlm_qgis.settings import PluginSettings

    first = DetectPanel(qgis_iface, PluginSettings)
    qtbot.addWidget(first)
    assert first.tile_size.value() == 512 and first.class_boxes["plane"].isChecked()
    first.class_boxes["plane"].setChecked(False)
    first.own_classes.setText("wind turbine")
    first.tile_size.setValue(768)
    first.overlap.setValue(150)
    first.max_mode.setChecked(True)
    first.remember_choices()

    again = DetectPanel(qgis_iface, PluginSettings)  # as after a QGIS restart
    qtbot.addWidget(again)
    assert not again.class_boxes["plane"].isChecked() and again.class_boxes["ship"].isChecked()
    assert again.own_classes.text() == "wind turbine"
    assert (again.tile_size.value(), again.overlap.value(), again.max_mode.isChecked()) == (768, 150, True)


def test_a_very_large_run_is_asked_about_first(qgis_iface, qtbot, backend, scene_layer, monkeypatch):
    from rscovlm_qgis import detect_panel

    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    panel = dock.detect_panel
    asked = []
    monkeypatch.setattr(detect_panel, "LARGE_RUN_TILES", 1)  # this scene has more than one tile
    monkeypatch.setattr(panel, "confirm_large_run", lambda params: asked.append(params.tiles) or False)
    panel.tile_size.setValue(128)
    panel.overlap.setValue(0)
    qtbot.mouseClick(panel.detect_button, Qt.LeftButton)
    width, height = scene_layer.width(), scene_layer.height()
    assert asked == [-(-width // 128) * -(-height // 128)] and panel.detect_task is None
    assert panel.run_label.text() == "Detection not started."
