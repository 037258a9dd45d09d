"""Starting and stopping a local backend from the Backend tab, with the real `rscovlm serve`."""

from __future__ import annotations

import sys

import pytest
from qgis.PyQt.QtCore import Qt

from rscovlm_qgis.backend_process import serve_command
from rscovlm_qgis.dock import RSCoVLMDock
from rscovlm_qgis.params import ParamsError
from rscovlm_qgis.settings import PluginSettings


def test_serve_command_uses_python_m_or_the_script_and_the_urls_port():
    settings = PluginSettings(backend_url="http://127.0.0.1:9001", model_path="/models/rscovlm")
    assert serve_command(settings) == ("rscovlm", ["serve", "--model", "/models/rscovlm", "--port", "9001"])
    settings.backend_program = "/opt/env/bin/python3"
    assert serve_command(settings) == (
        "/opt/env/bin/python3", ["-m", "rscovlm", "serve", "--model", "/models/rscovlm", "--port", "9001"]
    )
    with pytest.raises(ParamsError, match="Set the model"):
        serve_command(PluginSettings())
    with pytest.raises(ParamsError, match="not on this computer"):
        serve_command(PluginSettings(backend_url="http://10.0.0.2:8765", model_path="m"))


def test_start_connect_and_stop_a_local_backend(qgis_iface, qtbot, tiny_model_dir, tmp_path, closed_url):
    dock = RSCoVLMDock(qgis_iface)
    qtbot.addWidget(dock)
    dock.settings = PluginSettings(
        backend_url=closed_url,  # a free port
        token_file=str(tmp_path / "token"),
        backend_program=sys.executable,
        model_path=str(tiny_model_dir),
    )
    panel = dock.backend_panel
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    assert "-m rscovlm serve" in panel.log_box.toPlainText()

    def answers() -> bool:
        if panel.check_task is None:
            if panel.last_check is not None and panel.last_check.answers and panel.last_check.status:
                return True
            panel.check_backend()
        return False

    qtbot.waitUntil(answers, timeout=120_000)
    assert "CPU: will be slow" in panel.device_label.text()
    assert (tmp_path / "token").is_file()  # the backend wrote its token where the plugin looks

    dock.shutdown()  # what plugin unload does: the backend started here stops
    assert not panel.process.is_running()
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=10_000)
    assert "The backend stopped" in panel.log_box.toPlainText()
