"""The plugin object QGIS loads: a toolbar/menu action for the dock, and the Processing provider."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .dock import RSCoVLMDock
from .processing_provider import RSCoVLMProvider
from .translation import install_translator, tr

PLUGIN_DIR = Path(__file__).resolve().parent


def icon_path() -> Path:
    """icon.png beside the plugin when packaged; resources/icon.png in the source tree."""
    packaged = PLUGIN_DIR / "icon.png"
    return packaged if packaged.is_file() else PLUGIN_DIR.parent / "resources" / "icon.png"


class RSCoVLMPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.translator = None
        self.action: QAction | None = None
        self.dock: RSCoVLMDock | None = None
        self.provider: RSCoVLMProvider | None = None
        self.menu = ""

    def initProcessing(self) -> None:  # noqa: N802 - QGIS calls this before initGui when it can
        if self.provider is None:
            self.provider = RSCoVLMProvider(str(icon_path()))
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.translator = install_translator()  # before any tr() below
        self.initProcessing()
        self.menu = tr("&RSCoVLM")
        self.dock = RSCoVLMDock(self.iface, self.iface.mainWindow())
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        self.action = QAction(QIcon(str(icon_path())), tr("RSCoVLM object detection"), self.iface.mainWindow())
        self.action.setObjectName("RSCoVLMToggleDock")
        self.action.setCheckable(True)
        self.action.setToolTip(tr("Show or hide the RSCoVLM panel"))
        self.dock.setToggleVisibilityAction(self.action)  # keeps action and dock in step, tabbed docks included
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(self.menu, self.action)

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.action is not None:
            self.iface.removePluginMenu(self.menu, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None
