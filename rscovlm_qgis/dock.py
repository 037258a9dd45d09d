"""The dock: three tabs (Detect | Ask | Backend) sharing one settings object.

Each tab is its own widget in its own module; this file only assembles them. The Ask tab
is optional at import time so the dock still opens when that module is absent.
"""

from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QLabel, QTabWidget, QWidget

from .backend_panel import BackendPanel
from .detect_panel import DetectPanel
from .settings import PluginSettings
from .translation import tr


def make_ask_panel(iface, parent: QWidget) -> QWidget:
    """The Ask tab, or a label saying it is not available in this build."""
    try:
        from .ask_panel import AskPanel
    except ImportError:
        placeholder = QLabel(tr("Asking questions about the map is not available in this version."), parent)
        placeholder.setAlignment(Qt.AlignCenter)
        placeholder.setWordWrap(True)
        return placeholder
    return AskPanel(iface)


class RSCoVLMDock(QgsDockWidget):
    """Detect, Ask and Backend tabs; opening the dock checks the backend."""

    def __init__(self, iface, parent: QWidget | None = None):
        super().__init__(tr("RSCoVLM"), parent)
        self.setObjectName("RSCoVLMDock")
        self.iface = iface
        self._settings = PluginSettings.load()
        self.tabs = QTabWidget(self)
        self.detect_panel = DetectPanel(iface, lambda: self._settings, self.tabs)
        self.ask_panel = make_ask_panel(iface, self.tabs)
        self.backend_panel = BackendPanel(iface, lambda: self._settings, self.tabs)
        self.tabs.addTab(self.detect_panel, tr("Detect"))
        self.tabs.addTab(self.ask_panel, tr("Ask"))
        self.tabs.addTab(self.backend_panel, tr("Backend"))
        self.setWidget(self.tabs)

    @property
    def settings(self) -> PluginSettings:
        return self._settings

    @settings.setter
    def settings(self, value: PluginSettings) -> None:
        self._settings = value
        self.backend_panel.refresh_fields()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.detect_panel.select_current_layer()
        self.backend_panel.check_backend()

    def shutdown(self) -> None:
        """Cancel running work and stop a backend started from the dock before unloading."""
        self.detect_panel.shutdown()
        self.backend_panel.shutdown()
        shutdown = getattr(self.ask_panel, "shutdown", None)
        if callable(shutdown):
            shutdown()
