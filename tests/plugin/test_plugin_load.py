"""The plugin loads and unloads in QGIS and brings in nothing beyond QGIS and the stdlib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qgis.PyQt.QtWidgets import QAction

import rscovlm_qgis
from rscovlm_qgis.dock import RSCoVLMDock
from rscovlm_qgis.translation import catalogue_for

REPO = Path(__file__).resolve().parents[2]

IMPORT_PROBE = """
import json, sys
import qgis.core, qgis.gui, qgis.PyQt.QtWidgets, qgis.PyQt.QtNetwork
before = set(sys.modules)
import rscovlm_qgis, rscovlm_qgis.plugin
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_plugin_imports_nothing_beyond_qgis_and_the_standard_library():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert probe.returncode == 0, probe.stderr
    new_modules = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "rscovlm_qgis.plugin" in new_modules
    allowed = set(sys.stdlib_module_names) | {"rscovlm_qgis", "qgis", "PyQt5", "sip"}
    foreign = sorted({m.split(".")[0] for m in new_modules} - allowed)
    assert foreign == [], f"the plugin imported modules outside QGIS and the stdlib: {foreign}"


def test_plugin_loads_toggles_its_dock_and_unloads(qgis_iface, qtbot, closed_url):
    plugin = rscovlm_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        action = plugin.action
        assert isinstance(action, QAction) and action.isCheckable()
        assert not action.icon().isNull()
        dock = plugin.dock
        assert isinstance(dock, RSCoVLMDock)
        assert dock.isHidden()
        dock.settings.backend_url = closed_url  # showing the dock checks the backend
        qgis_iface.mainWindow().show()
        action.trigger()
        qtbot.waitUntil(dock.isVisible)
        assert action.isChecked()
        qtbot.waitUntil(lambda: "does not answer" in dock.backend_panel.backend_label.text(), timeout=10000)
        action.trigger()
        qtbot.waitUntil(lambda: not dock.isVisible())
        assert not action.isChecked()
    finally:
        plugin.unload()
        qgis_iface.mainWindow().hide()
    assert plugin.action is None and plugin.dock is None


def test_a_catalogue_is_found_for_a_locale_or_its_language(tmp_path):
    (tmp_path / "rscovlm_zh.qm").write_bytes(b"")
    assert catalogue_for("zh_CN", tmp_path) == tmp_path / "rscovlm_zh.qm"
    (tmp_path / "rscovlm_zh_CN.qm").write_bytes(b"")
    assert catalogue_for("zh_CN", tmp_path) == tmp_path / "rscovlm_zh_CN.qm"
    assert catalogue_for("de_DE", tmp_path) is None


def test_metadata_names_what_qgis_requires():
    import configparser

    meta = configparser.ConfigParser()
    meta.read(REPO / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository"):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert (REPO / "resources" / general["icon"]).is_file()
