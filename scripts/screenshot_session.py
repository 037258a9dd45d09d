"""Run inside real QGIS by `make screenshot`: open the RSCoVLM dock, detect, capture the screen.

The tiny test model gives meaningless (usually no) detections; when it finds nothing the
ground-truth layer is shown instead, styled the same way and named so nobody mistakes it.
"""

import os
import subprocess
from pathlib import Path

import qgis.utils
from qgis.core import QgsRectangle, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer

SHOT = os.environ["RSCOVLM_SCREENSHOT"]
URL = os.environ["RSCOVLM_SCREENSHOT_URL"]
TOKEN = os.environ["RSCOVLM_TOKEN_FILE"]
iface = qgis.utils.iface

if "rscovlm_qgis" not in qgis.utils.active_plugins:
    qgis.utils.loadPlugin("rscovlm_qgis")
    qgis.utils.startPlugin("rscovlm_qgis")
plugin = qgis.utils.plugins["rscovlm_qgis"]

from rscovlm_qgis.layers import add_result, style_by_class  # noqa: E402  (the packaged plugin)
from rscovlm_qgis.settings import PluginSettings  # noqa: E402

scene_path = Path(os.environ["RSCOVLM_SCREENSHOT_SCENE"])
scene = iface.addRasterLayer(str(scene_path), "scene")


def fill_screen():
    """Xvfb has no window manager to maximise the window: size it to the screen ourselves."""
    window = iface.mainWindow()
    window.setGeometry(window.screen().geometry() if hasattr(window, "screen") else window.geometry())
    window.move(0, 0)


fill_screen()
QTimer.singleShot(500, fill_screen)
dock = plugin.dock
dock.settings = PluginSettings(backend_url=URL, token_file=TOKEN, max_new_tokens=32)
plugin.action.trigger()  # opens the dock like a user would
panel = dock.detect_panel
extent = scene.extent()
corner = QgsRectangle(extent.xMinimum(), extent.yMaximum() - 256, extent.xMinimum() + 256, extent.yMaximum())
panel.set_drawn_rectangle(corner, scene.crs())
iface.mapCanvas().setExtent(extent)
panel.detect()


def finish():
    if panel.detect_task is not None:
        QTimer.singleShot(1000, finish)
        return
    result = panel.last_layer
    if result is None or result.featureCount() == 0:
        truth = QgsVectorLayer(str(scene_path.with_name("truth.gpkg")), "ground truth (tiny test model found nothing)", "ogr")
        if truth.isValid():
            if "class" in truth.fields().names():
                style_by_class(truth)
            add_result(truth, scene.id())
    iface.mapCanvas().refreshAllLayers()
    QTimer.singleShot(4000, capture)


def capture():
    subprocess.run(["import", "-window", "root", SHOT], check=False)
    iface.actionExit().trigger()


QTimer.singleShot(2000, finish)
