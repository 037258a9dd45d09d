"""A map tool to drag a rectangle on the canvas: the region a question or a detection is about.

The rectangle is emitted in the canvas's CRS (the project CRS) exactly as drawn; turning
it into the raster's CRS is the caller's business, because only the caller knows which
raster the region is for.
"""

from __future__ import annotations

from qgis.core import QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

BAND_COLOUR = QColor(255, 140, 0)


def rectangle_band(canvas: QgsMapCanvas, colour: QColor = BAND_COLOUR) -> QgsRubberBand:
    """An outline-only polygon band, so the imagery under the region stays visible."""
    band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
    band.setStrokeColor(colour)
    band.setFillColor(QColor(0, 0, 0, 0))
    band.setWidth(2)
    return band


class RectangleMapTool(QgsMapTool):
    """Press, drag, release: emits ``rectangleDrawn`` (canvas CRS); Esc emits ``cancelled``.

    The tool stays active after a rectangle so that the user may draw again; callers that
    want one rectangle only unset it when they receive ``rectangleDrawn``.
    """

    rectangleDrawn = pyqtSignal(QgsRectangle)  # noqa: N815 - Qt signal naming
    cancelled = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas):
        super().__init__(canvas)
        self.band = rectangle_band(canvas)
        self.start: QgsPointXY | None = None
        self.setCursor(Qt.CrossCursor)

    @property
    def drawing(self) -> bool:
        return self.start is not None

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() != Qt.LeftButton:
            return
        self.start = self.toMapCoordinates(event.pos())
        self._show(QgsRectangle(self.start, self.start))

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self.start is not None:
            self._show(QgsRectangle(self.start, self.toMapCoordinates(event.pos())))

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self.start is None or event.button() != Qt.LeftButton:
            return
        rectangle = QgsRectangle(self.start, self.toMapCoordinates(event.pos()))  # normalised min/max
        self.start = None
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        self.rectangleDrawn.emit(rectangle)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key_Escape:
            event.accept()
            self._cancel()
            return
        event.ignore()  # other keys (pan with arrows, …) keep working

    def _key_while_dragging(self, event: QKeyEvent) -> None:
        # While a mouse button is held the canvas does not pass keys to its map tool; it
        # only emits keyPressed. Esc in the middle of a drag must still cancel it.
        if self.drawing and event.key() == Qt.Key_Escape:
            self._cancel()

    def _cancel(self) -> None:
        self.start = None
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        self.cancelled.emit()

    def activate(self) -> None:
        super().activate()
        self.canvas().keyPressed.connect(self._key_while_dragging)

    def deactivate(self) -> None:
        self.start = None
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        try:
            self.canvas().keyPressed.disconnect(self._key_while_dragging)
        except TypeError:  # never activated
            pass
        super().deactivate()

    def _show(self, rectangle: QgsRectangle) -> None:
        show_rectangle(self.band, rectangle)


def show_rectangle(band: QgsRubberBand, rectangle: QgsRectangle) -> None:
    """Replace the band's geometry by ``rectangle`` (map coordinates of the band's canvas)."""
    band.reset(QgsWkbTypes.PolygonGeometry)
    corners = (
        QgsPointXY(rectangle.xMinimum(), rectangle.yMinimum()),
        QgsPointXY(rectangle.xMaximum(), rectangle.yMinimum()),
        QgsPointXY(rectangle.xMaximum(), rectangle.yMaximum()),
        QgsPointXY(rectangle.xMinimum(), rectangle.yMaximum()),
    )
    for i, corner in enumerate(corners):
        band.addPoint(corner, i == len(corners) - 1)  # repaint once, on the last point
    band.show()
