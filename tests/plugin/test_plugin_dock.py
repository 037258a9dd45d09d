"""The dock, clicked as a user would, against the real backend in a real headless QGIS."""

from __future__ import annotations

import pytest
from qgis.core import Qgis, QgsCategorizedSymbolRenderer, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QFileDialog

from rscovlm_qgis.dock import RSCoVLMDock
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
    qtbot.waitUntil(lambda: dock.check_task is None, timeout=30_000)
    return dock


def result_layers() -> list[QgsVectorLayer]:
    return [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsVectorLayer)]


def test_status_line_says_whether_the_backend_answers(qgis_iface, qtbot, backend, closed_url):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    assert "backend answers" in dock.backend_label.text()

    dock.settings.backend_url = closed_url
    qtbot.mouseClick(dock.check_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dock.check_task is None, timeout=30_000)
    assert "does not answer" in dock.backend_label.text()
    assert "rscovlm serve" in dock.backend_label.text()


def test_detect_adds_a_styled_layer_in_the_rasters_crs_and_exports_a_shapefile(
    qgis_iface, qtbot, backend, scene_layer, tmp_path, monkeypatch
):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    assert dock.layer_combo.currentLayer() == scene_layer
    assert not dock.export_button.isEnabled()

    qtbot.mouseClick(dock.detect_button, Qt.LeftButton)
    assert dock.cancel_button.isEnabled() and not dock.detect_button.isEnabled()
    qtbot.waitUntil(lambda: dock.detect_task is None, timeout=TASK_TIMEOUT_MS)

    assert qgis_iface.messageBar().get_messages(Qgis.Critical) == []
    [result] = result_layers()
    assert result.crs() == scene_layer.crs()
    assert isinstance(result.renderer(), QgsCategorizedSymbolRenderer)
    assert result.renderer().classAttribute() == "class"
    assert dock.progress_bar.value() == 100
    assert dock.export_button.isEnabled() and dock.detect_button.isEnabled()

    target = tmp_path / "detections"  # typed without extension: the chosen filter decides
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "ESRI Shapefile (*.shp)"))
    qtbot.mouseClick(dock.export_button, Qt.LeftButton)
    shp = target.with_suffix(".shp")
    assert shp.is_file() and shp.with_suffix(".prj").is_file()
    back = QgsVectorLayer(str(shp), "back", "ogr")
    assert back.isValid() and back.crs() == scene_layer.crs()
    assert back.featureCount() == result.featureCount()


def test_cancel_stops_the_run_without_adding_a_layer(qgis_iface, qtbot, backend, scene_layer):
    dock = make_dock(qtbot, qgis_iface, backend.url, backend.token_file)
    qtbot.mouseClick(dock.detect_button, Qt.LeftButton)
    qtbot.mouseClick(dock.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dock.detect_task is None, timeout=TASK_TIMEOUT_MS)
    assert "cancelled" in dock.run_label.text()
    assert result_layers() == []
    assert dock.detect_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_a_silent_backend_is_reported_in_the_message_bar(qgis_iface, qtbot, backend, scene_layer, closed_url):
    dock = make_dock(qtbot, qgis_iface, closed_url, backend.token_file)
    qtbot.mouseClick(dock.detect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dock.detect_task is None, timeout=30_000)
    [message] = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert "does not answer" in message
    assert "does not answer" in dock.run_label.text()
    assert result_layers() == []
