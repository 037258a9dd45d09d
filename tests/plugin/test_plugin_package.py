"""`make package` builds a zip that installs into a fresh QGIS profile and loads there."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LOAD_PROBE = """
import sys
from qgis.core import QgsApplication
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtWidgets import QMainWindow
from pytest_qgis.mock_qgis_classes import MockMessageBar
from pytest_qgis.qgis_interface import QgisInterface
import qgis.utils

app = QgsApplication([], True)
app.initQgis()
window = QMainWindow()
canvas = QgsMapCanvas(window)
qgis.utils.iface = QgisInterface(canvas, MockMessageBar(), window)
plugins_dir = sys.argv[1]
sys.path.insert(0, plugins_dir)
qgis.utils.plugin_paths = [plugins_dir]
qgis.utils.updateAvailablePlugins()
assert "rscovlm_qgis" in qgis.utils.available_plugins, qgis.utils.available_plugins
assert qgis.utils.loadPlugin("rscovlm_qgis")
assert qgis.utils.startPlugin("rscovlm_qgis")
import rscovlm_qgis
print("LOADED_FROM", rscovlm_qgis.__file__)
print("PROVIDER", QgsApplication.processingRegistry().providerById("rscovlm") is not None)
assert qgis.utils.unloadPlugin("rscovlm_qgis")
app.exitQgis()
"""


@pytest.fixture(scope="module")
def plugin_zip() -> Path:
    if shutil.which("zip") is None:
        pytest.skip("the zip program is not installed")
    built = subprocess.run(["make", "-s", "package"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    meta = configparser.ConfigParser()
    meta.read(REPO / "metadata.txt", encoding="utf-8")
    path = REPO / "dist" / f"rscovlm_qgis-{meta['general']['version']}.zip"
    assert path.is_file()
    return path


def test_the_zip_holds_the_plugin_and_nothing_else(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert all(n.startswith("rscovlm_qgis/") for n in names)
    for needed in ("__init__.py", "metadata.txt", "icon.png", "i18n/rscovlm_zh_CN.qm", "processing_provider.py"):
        assert f"rscovlm_qgis/{needed}" in names, needed
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]


def test_the_zip_installs_into_a_fresh_profile_and_loads(plugin_zip, tmp_path):
    plugins = tmp_path / "profile" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    probe = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, str(plugins)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert f"LOADED_FROM {plugins / 'rscovlm_qgis' / '__init__.py'}" in probe.stdout
    assert "PROVIDER True" in probe.stdout
