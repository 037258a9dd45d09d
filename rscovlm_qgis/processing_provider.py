"""The Processing provider "rscovlm": makes the algorithms visible to the toolbox and scripts."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .processing_algorithms import AskAboutRegionAlgorithm, DetectObjectsAlgorithm
from .translation import tr


class RSCoVLMProvider(QgsProcessingProvider):
    def __init__(self, icon_file: str = ""):
        super().__init__()
        self._icon_file = icon_file

    def id(self) -> str:
        return "rscovlm"

    def name(self) -> str:
        return tr("RSCoVLM")

    def icon(self) -> QIcon:
        return QIcon(self._icon_file) if self._icon_file else super().icon()

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        self.addAlgorithm(DetectObjectsAlgorithm())
        self.addAlgorithm(AskAboutRegionAlgorithm())
