"""What one detection run needs, captured from the dock once and handed to the task.

The task runs on a worker thread and must never read widgets or the project, so the
dock builds a frozen DetectParams on the main thread and the task only reads that.
Layers the backend cannot read by path (WMS, XYZ, virtual rasters) get an ExportPlan
instead: the task writes them to a temporary GeoTIFF first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsRectangle,
)

from .settings import OVERLAP, TILE_SIZE
from .translation import tr

Bounds = tuple[float, float, float, float]  # minx, miny, maxx, maxy

# The 15 DOTA-v1.0 classes RSCoVLM was trained on, in the dataset's order.
DOTA_CLASSES: tuple[str, ...] = (
    "plane", "ship", "storage tank", "baseball diamond", "tennis court", "basketball court",
    "ground track field", "harbor", "bridge", "large vehicle", "small vehicle", "helicopter",
    "roundabout", "soccer ball field", "swimming pool",
)

# Above this many pixels an exported layer would take minutes to fetch and gigabytes on disk.
MAX_EXPORT_PIXELS = 12_000 * 12_000


class ParamsError(ValueError):
    """The chosen layer or options cannot be sent to the backend; a sentence for the user."""


@dataclass(frozen=True)
class ExportPlan:
    """How to turn a layer the backend cannot read into a GeoTIFF: source, window, size."""

    source_uri: str
    provider: str
    extent: Bounds            # in the layer's CRS
    width: int
    height: int
    crs_wkt: str


@dataclass(frozen=True)
class DetectParams:
    raster_path: str
    layer_name: str
    crs_authid: str          # e.g. "EPSG:32633"; empty for CRSs without an authority code
    crs_wkt: str
    classes: tuple[str, ...] | None = None   # None: the backend's full DOTA list
    tile_size: int = TILE_SIZE
    overlap: int = OVERLAP
    max_mode: bool = False
    region: Bounds | None = None             # None: the whole raster
    region_crs: str = ""                     # CRS of ``region``; empty: the layer's
    max_new_tokens: int | None = None        # answer budget per tile; None: the backend's default
    export: ExportPlan | None = None         # set when the layer must be written to a file first
    layer_id: str = ""                       # the source layer in the project (to find earlier results)
    tiles: int = 0                           # how many tiles the backend will ask about (before splits)

    def to_request(self) -> dict:
        """The body of ``POST /v1/jobs/detect``: only what differs from the backend's defaults."""
        body: dict = {
            "raster_path": self.raster_path,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "max_mode": self.max_mode,
        }
        if self.classes:
            body["classes"] = list(self.classes)
        if self.max_new_tokens is not None:
            body["max_new_tokens"] = self.max_new_tokens
        if self.region is not None:
            region: dict = {"bounds": list(self.region)}
            crs = self.region_crs or self.crs_authid or self.crs_wkt
            if crs:  # without one the backend reads the raster's CRS
                region["crs"] = crs
            body["region"] = region
        return body

    def exported_to(self, path: str) -> DetectParams:
        """The same run on the exported file, which already is exactly the region."""
        return replace(self, raster_path=path, region=None, region_crs="", export=None)


def crs_for_request(crs: QgsCoordinateReferenceSystem) -> str:
    """The authority id when there is a real one, else WKT (user CRSs exist only in this QGIS)."""
    if not crs.isValid():
        return ""
    authid = crs.authid()
    if authid and not authid.upper().startswith("USER:"):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


def parse_classes(checked: list[str] | tuple[str, ...], own: str) -> tuple[str, ...] | None:
    """Ticked DOTA classes plus the user's own (comma separated), without repeats.

    None when the choice is exactly the whole DOTA list, so the backend uses its default.
    """
    names: list[str] = []
    for name in [*checked, *own.split(",")]:
        cleaned = " ".join(name.split()).lower()
        if cleaned and cleaned not in names:
            names.append(cleaned)
    if not names:
        raise ParamsError(tr("Tick at least one class, or type your own, to say what to look for."))
    too_long = [n for n in names if len(n) > 64]
    if too_long:
        raise ParamsError(tr("The class name “{name}” is too long: use at most 64 characters.").format(name=too_long[0]))
    if sorted(names) == sorted(DOTA_CLASSES):
        return None
    return tuple(names)


def gdal_file_path(layer: QgsRasterLayer) -> str | None:
    """The local file behind a GDAL layer, or None when the layer is not one (WMS, /vsicurl/…)."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if path.startswith("/vsi") or "://" in path:
        return None
    return path


def local_raster_path(layer: QgsRasterLayer) -> str:
    """The file behind ``layer``; the backend reads rasters by path, so it must be one."""
    path = gdal_file_path(layer)
    if path is None:
        raise ParamsError(
            tr(
                "The layer “{name}” is not a raster file (its source is {provider}): "
                "choose a layer loaded from a GeoTIFF or another local raster file."
            ).format(name=layer.name(), provider=layer.providerType())
        )
    if not os.path.isfile(path):
        raise ParamsError(
            tr(
                "The file of layer “{name}” ({path}) cannot be found: it may have moved; "
                "reload the layer and try again."
            ).format(name=layer.name(), path=path)
        )
    return os.path.abspath(path)


def tile_count(width: int, height: int, tile_size: int, overlap: int) -> int:
    """How many tiles the backend's grid puts on a width x height area (rscovlm.tiling's rule)."""

    def along(length: int) -> int:
        if length <= tile_size:
            return 1
        return math.ceil((length - tile_size) / (tile_size - overlap)) + 1

    return along(int(width)) * along(int(height))


def area_in_pixels(
    layer: QgsRasterLayer,
    region: Bounds | None,
    region_crs: QgsCoordinateReferenceSystem | None,
    fallback_resolution: float | None = None,
) -> tuple[QgsRectangle, int, int]:
    """The chosen area of ``layer`` in its CRS, and its size in the layer's own pixels."""
    extent = layer.extent()
    if region is not None:
        wanted = QgsRectangle(*region)
        if region_crs is not None and region_crs.isValid() and region_crs != layer.crs():
            transform = QgsCoordinateTransform(region_crs, layer.crs(), QgsProject.instance().transformContext())
            try:
                wanted = transform.transformBoundingBox(wanted)
            except QgsCsException as error:
                raise ParamsError(
                    tr("The chosen area cannot be expressed in the CRS of “{name}”: choose an area over the layer.").format(
                        name=layer.name()
                    )
                ) from error
        extent = extent.intersect(wanted)
    if extent.isEmpty() or extent.width() <= 0 or extent.height() <= 0:
        raise ParamsError(
            tr("The chosen area does not overlap the layer “{name}”: choose an area over the layer.").format(
                name=layer.name()
            )
        )
    resolution = _layer_resolution(layer, fallback_resolution)
    return extent, max(1, round(extent.width() / resolution)), max(1, round(extent.height() / resolution))


def export_plan(
    layer: QgsRasterLayer,
    region: Bounds | None,
    region_crs: QgsCoordinateReferenceSystem | None,
    fallback_resolution: float | None = None,
) -> ExportPlan:
    """Window and pixel size for writing ``layer`` to a GeoTIFF at its own resolution.

    Tiled services have no single size: their finest native resolution is used, then the
    canvas's (``fallback_resolution``, in layer units) when the service declares none.
    """
    extent, width, height = area_in_pixels(layer, region, region_crs, fallback_resolution)
    if width * height > MAX_EXPORT_PIXELS:
        raise ParamsError(
            tr(
                "The area of “{name}” is {width} × {height} pixels at the layer's resolution, too large "
                "to download: zoom in and use the canvas extent, or draw a smaller rectangle."
            ).format(name=layer.name(), width=width, height=height)
        )
    return ExportPlan(
        source_uri=layer.source(),
        provider=layer.providerType(),
        extent=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
        width=width,
        height=height,
        crs_wkt=layer.crs().toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED),
    )


def _layer_resolution(layer: QgsRasterLayer, fallback: float | None) -> float:
    provider = layer.dataProvider()
    if provider is not None and provider.capabilities() & provider.Size and layer.width() > 0:
        return layer.extent().width() / layer.width()
    native = [r for r in (provider.nativeResolutions() if provider is not None else []) if r > 0]
    if native:
        return min(native)
    if fallback and fallback > 0:
        return fallback
    raise ParamsError(
        tr("The layer “{name}” has no pixel size of its own: zoom to the area and use the canvas extent.").format(
            name=layer.name()
        )
    )


def params_for_layer(
    layer: QgsRasterLayer | None,
    classes: tuple[str, ...] | None = None,
    tile_size: int = TILE_SIZE,
    overlap: int = OVERLAP,
    max_mode: bool = False,
    region: Bounds | None = None,
    max_new_tokens: int | None = None,
    region_crs: QgsCoordinateReferenceSystem | None = None,
    allow_export: bool = False,
    fallback_resolution: float | None = None,
) -> DetectParams:
    """Validated parameters for ``layer`` (raises ParamsError with a sentence).

    ``region`` is in ``region_crs`` (the layer's when None). With ``allow_export`` a layer
    that is not a local file gets an ExportPlan rather than being refused.
    """
    if layer is None or not layer.isValid():
        raise ParamsError(tr("Choose a raster layer to detect objects in."))
    if overlap < 0 or tile_size <= 0 or overlap >= tile_size:
        raise ParamsError(
            tr("The overlap ({overlap} px) must be at least 0 and smaller than the tile size ({size} px).").format(
                overlap=overlap, size=tile_size
            )
        )
    crs = layer.crs()
    export = None
    if allow_export and gdal_file_path(layer) is None:
        export = export_plan(layer, region, region_crs, fallback_resolution)
        raster_path, width, height = "", export.width, export.height
    else:
        raster_path = local_raster_path(layer)
        _, width, height = area_in_pixels(layer, region, region_crs, fallback_resolution)
    return DetectParams(
        raster_path=raster_path,
        layer_name=layer.name(),
        crs_authid=crs.authid() if crs.isValid() else "",
        crs_wkt=crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else "",
        classes=tuple(classes) if classes else None,
        tile_size=tile_size,
        overlap=overlap,
        max_mode=max_mode,
        region=region,
        region_crs=crs_for_request(region_crs) if region is not None and region_crs is not None else "",
        max_new_tokens=max_new_tokens,
        export=export,
        layer_id=layer.id(),
        tiles=tile_count(width, height, tile_size, overlap),
    )
