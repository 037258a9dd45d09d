"""Detections as QGIS layers: GeoJSON → styled memory layer, and export to files.

A memory layer with explicit fields and an explicit CRS (rather than letting OGR guess
from a temporary GeoJSON file) guarantees the layer lands in the raster's CRS with
typed attributes, whatever RFC 7946 says about GeoJSON being WGS 84.
"""

from __future__ import annotations

import colorsys
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsPalLayerSettings,
    QgsPointXY,
    QgsProject,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from .translation import tr

CLASS_FIELD = "class"
SUPPORT_FIELD = "support"
SCORE_FIELD = "score"
GROUP_NAME = "RSCoVLM"
RESULT_OF = "rscovlm/result_of"  # custom property: id of the raster layer a result came from
# The backend's columns; "tile" is the tile's name ("c412_r824": its pixel offset), "score"
# the model's confidence in [0, 1] (null when the engine gave no token probabilities).
FIELDS = (
    (CLASS_FIELD, QVariant.String), (SUPPORT_FIELD, QVariant.Int), ("tile", QVariant.String),
    ("area_m2", QVariant.Double), (SCORE_FIELD, QVariant.Double),
)

# One fixed colour per DOTA class so the same class looks the same across runs and layers.
CLASS_COLOURS = {
    "plane": "#e41a1c", "ship": "#377eb8", "storage tank": "#4daf4a", "baseball diamond": "#984ea3",
    "tennis court": "#ff7f00", "basketball court": "#a6761d", "ground track field": "#f781bf",
    "harbor": "#1b9e77", "bridge": "#d95f02", "large vehicle": "#7570b3", "small vehicle": "#e7298a",
    "helicopter": "#66a61e", "roundabout": "#e6ab02", "soccer ball field": "#17becf",
    "swimming pool": "#00bfff",
}

DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")


class ExportError(Exception):
    """Writing a layer failed; a sentence for the user."""


# -- GeoJSON → layer ---------------------------------------------------------------------


def crs_of_collection(collection: dict[str, Any]) -> QgsCoordinateReferenceSystem:
    """The CRS a FeatureCollection declares: an authority name if it has one, else its WKT.

    An authority code ("EPSG:32633", OGC URNs) gives a clean authid; the WKT covers CRSs
    without one. Invalid (empty) when the collection declares neither.
    """
    crs_member = collection.get("crs") or {}
    name = (crs_member.get("properties") or {}).get("name") if isinstance(crs_member, dict) else None
    if name:
        crs = QgsCoordinateReferenceSystem()
        if crs.createFromUserInput(str(name)) and crs.isValid() and crs.authid():
            return crs
    wkt = collection.get("crs_wkt")
    if wkt:
        crs = QgsCoordinateReferenceSystem.fromWkt(str(wkt))
        if crs.isValid():
            return crs
    return QgsCoordinateReferenceSystem()


def _ring(coordinates: Iterable) -> list[QgsPointXY]:
    return [QgsPointXY(float(x), float(y)) for x, y, *_ in coordinates]


def polygons_of(geometry: dict[str, Any] | None) -> list[QgsGeometry]:
    """Single polygons from a GeoJSON Polygon or MultiPolygon; nothing for other types."""
    if not geometry:
        return []
    kind, coordinates = geometry.get("type"), geometry.get("coordinates") or []
    if kind == "Polygon":
        return [QgsGeometry.fromPolygonXY([_ring(r) for r in coordinates])]
    if kind == "MultiPolygon":
        return [QgsGeometry.fromPolygonXY([_ring(r) for r in polygon]) for polygon in coordinates]
    return []


def detections_layer(
    collection: dict[str, Any], name: str, fallback_crs: QgsCoordinateReferenceSystem | None = None
) -> QgsVectorLayer:
    """A styled memory layer of the collection's polygons in the collection's CRS.

    ``fallback_crs`` (the raster layer's) is used only when the collection names none.
    """
    crs = crs_of_collection(collection)
    if not crs.isValid() and fallback_crs is not None:
        crs = fallback_crs
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes([QgsField(field_name, kind) for field_name, kind in FIELDS])
    layer.updateFields()
    fields = layer.fields()
    features = []
    for item in collection.get("features") or []:
        properties = item.get("properties") or {}
        for geometry in polygons_of(item.get("geometry")):
            feature = QgsFeature(fields)
            feature.setGeometry(geometry)
            feature.setAttributes([_attribute(properties.get(n), kind) for n, kind in FIELDS])
            features.append(feature)
    provider.addFeatures(features)
    layer.updateExtents()
    style_by_class(layer)
    return layer


def _attribute(value: Any, kind: QVariant.Type) -> Any:
    if value is None:
        return None
    try:
        if kind == QVariant.Int:
            return int(value)
        if kind == QVariant.Double:
            return float(value)
    except (TypeError, ValueError):
        return None
    return str(value)


# -- style -------------------------------------------------------------------------------


def colour_for(class_name: str, index: int) -> QColor:
    """The class's fixed colour, or a well-spread hue for classes outside the DOTA list."""
    if class_name in CLASS_COLOURS:
        return QColor(CLASS_COLOURS[class_name])
    hue = (index * 0.618033988749895) % 1.0  # golden-ratio steps keep neighbours apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.9)
    return QColor.fromRgbF(r, g, b)


def outline_symbol(colour: QColor) -> QgsFillSymbol:
    """Outline only, so the imagery underneath stays visible."""
    return QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": colour.name(), "outline_width": "0.6", "outline_width_unit": "MM"}
    )


def field_aliases() -> dict[str, str]:
    """Readable column names for the attribute table and forms (the field names stay short)."""
    return {
        CLASS_FIELD: tr("Class"),
        SUPPORT_FIELD: tr("Tiles agreeing"),
        SCORE_FIELD: tr("Score"),
        "tile": tr("Tile"),
        "area_m2": tr("Area (m²)"),
    }


def style_by_class(layer: QgsVectorLayer) -> None:
    """Categorized by class with one outline colour each, labelled with the class name."""
    index = layer.fields().indexOf(CLASS_FIELD)
    present = sorted(str(v) for v in layer.uniqueValues(index) if v not in (None, ""))
    categories = [QgsRendererCategory(name, outline_symbol(colour_for(name, i)), name) for i, name in enumerate(present)]
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    labels = QgsPalLayerSettings()
    labels.fieldName = CLASS_FIELD
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)
    for field_name, alias in field_aliases().items():
        index = layer.fields().indexOf(field_name)
        if index >= 0:
            layer.setFieldAlias(index, alias)
    layer.triggerRepaint()


# -- filter ------------------------------------------------------------------------------


def filter_expression(min_score: float = 0.0, min_support: int = 1) -> str:
    """The subset string that hides objects below a minimum score and tiles agreeing ("" shows all).

    Objects without a score are hidden once a minimum score is set: nothing vouches for them.
    """
    parts = []
    if min_score > 0:
        parts.append(f'"{SCORE_FIELD}" >= {round(float(min_score), 4):g}')
    if min_support > 1:
        parts.append(f'"{SUPPORT_FIELD}" >= {int(min_support)}')
    return " AND ".join(parts)


def apply_filter(layer: QgsVectorLayer, min_score: float = 0.0, min_support: int = 1) -> bool:
    """Show only the layer's objects at or above both minimums; False when QGIS refused the filter."""
    return layer.setSubsetString(filter_expression(min_score, min_support))


def has_scores(layer: QgsVectorLayer) -> bool:
    """Whether any object of the layer has a score (an engine without token probabilities gives none)."""
    index = layer.fields().indexOf(SCORE_FIELD)
    return index >= 0 and any(v is not None and v == v for v in layer.uniqueValues(index)
                              if not (hasattr(v, "isNull") and v.isNull()))


def add_to_project(layer: QgsVectorLayer, project: QgsProject | None = None) -> QgsVectorLayer:
    """Add on the main thread (layers added from workers misbehave)."""
    (project or QgsProject.instance()).addMapLayer(layer)
    return layer


def numbered_name(base: str, taken: Iterable[str]) -> str:
    """``base``, or ``base (2)``, ``base (3)``… whichever is free, so runs never share a name."""
    taken = set(taken)
    if base not in taken:
        return base
    number = 2
    while f"{base} ({number})" in taken:
        number += 1
    return f"{base} ({number})"


def results_group(project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """The "RSCoVLM" group at the top of the layer tree, created on first use."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    group = root.findGroup(GROUP_NAME)
    return group if group is not None else root.insertGroup(0, GROUP_NAME)


def add_result(
    layer: QgsVectorLayer, source_layer_id: str, replace: bool = False, project: QgsProject | None = None
) -> QgsVectorLayer:
    """Add a result layer to the RSCoVLM group, keeping earlier results unless ``replace``.

    With ``replace`` the earlier results of the same source layer are removed first; else
    the new layer gets a numbered name beside them.
    """
    project = project or QgsProject.instance()
    group = results_group(project)
    earlier = [node.layer() for node in group.findLayers() if node.layer() is not None]
    stale = [old.id() for old in earlier if replace and old.customProperty(RESULT_OF) == source_layer_id]
    kept_names = [old.name() for old in earlier if old.id() not in stale]
    project.removeMapLayers(stale)  # deletes those layers: read nothing from them afterwards
    layer.setName(numbered_name(layer.name(), kept_names))
    layer.setCustomProperty(RESULT_OF, source_layer_id)
    project.addMapLayer(layer, False)
    group.insertLayer(0, layer)
    return layer


# -- export ------------------------------------------------------------------------------


def driver_for(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in DRIVERS:
        raise ExportError(
            tr("Cannot write “{name}”: choose a name ending in .shp, .gpkg or .geojson.").format(name=path.name)
        )
    return DRIVERS[suffix]


def export_layer(layer: QgsVectorLayer, path: str | os.PathLike) -> Path:
    """Write ``layer`` with its CRS to SHP, GPKG or GeoJSON (by extension), atomically.

    The file is written under a temporary name in the target folder and then renamed, so
    a failed export never leaves a half-written file where the user expects a good one.
    An existing file of that name (and, for shapefiles, its sidecars) is replaced.
    """
    target = Path(path)
    driver = driver_for(target)
    if not target.parent.is_dir():
        raise ExportError(tr("The folder {folder} does not exist: choose another place.").format(folder=target.parent))
    temp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.fileEncoding = "UTF-8"
    options.layerName = target.stem
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(temp), QgsProject.instance().transformContext(), options
    )
    written = _sidecars(temp) if driver == "ESRI Shapefile" else [temp]
    if error != QgsVectorFileWriter.NoError:
        for leftover in written:
            leftover.unlink(missing_ok=True)
        raise ExportError(tr("Could not write {path}: {message}").format(path=target, message=message or error))
    if driver == "ESRI Shapefile":
        for stale in _sidecars(target):  # an old .qix or .sbn would not match the new file
            stale.unlink()
        for part in written:
            os.replace(part, target.with_suffix(part.suffix))
    else:
        os.replace(temp, target)
    return target


def _sidecars(shp: Path) -> list[Path]:
    return [p for p in (shp.with_suffix(s) for s in SHAPEFILE_SIDECARS) if p.exists()]
