"""Where to detect: the map areas a user can pick, as bounds plus the CRS they are in.

Each function answers (bounds, crs) or raises ParamsError with a sentence; the backend
reprojects the bounds to the raster itself, so nothing is transformed here.
"""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsVectorLayer

from .params import Bounds, ParamsError
from .translation import tr

WHOLE_LAYER, CANVAS_EXTENT, SELECTED_FEATURES, DRAWN_RECTANGLE = "layer", "canvas", "selection", "rectangle"

Region = tuple[Bounds, QgsCoordinateReferenceSystem]


def bounds_of(rectangle: QgsRectangle) -> Bounds:
    return (rectangle.xMinimum(), rectangle.yMinimum(), rectangle.xMaximum(), rectangle.yMaximum())


def canvas_region(canvas) -> Region:
    """What the map canvas shows, in the project's CRS."""
    extent = canvas.extent()
    if extent.isEmpty():
        raise ParamsError(tr("The map canvas shows nothing yet: zoom to your raster first."))
    return bounds_of(extent), canvas.mapSettings().destinationCrs()


def selection_region(layer: QgsVectorLayer | None) -> Region:
    """The combined extent of the features selected in ``layer``, in the layer's CRS."""
    if layer is None or not layer.isValid():
        raise ParamsError(tr("Choose the vector layer whose selected features outline the area."))
    if layer.selectedFeatureCount() == 0:
        raise ParamsError(
            tr("No features are selected in “{name}”: select the polygons that outline the area first.").format(
                name=layer.name()
            )
        )
    extent = layer.boundingBoxOfSelected()
    if extent.isNull() or extent.width() <= 0 or extent.height() <= 0:
        raise ParamsError(
            tr("The selected features of “{name}” have no area: select polygons rather than points.").format(
                name=layer.name()
            )
        )
    return bounds_of(extent), layer.crs()


def drawn_region(rectangle: QgsRectangle | None, crs: QgsCoordinateReferenceSystem | None) -> Region:
    if rectangle is None or crs is None or rectangle.isEmpty():
        raise ParamsError(tr("Draw a rectangle on the map first (click “Draw”, then drag on the map)."))
    return bounds_of(rectangle), crs
