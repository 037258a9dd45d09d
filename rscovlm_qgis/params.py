"""What one detection run needs, captured from the dock once and handed to the task.

The task runs on a worker thread and must never read widgets or the project, so the
dock builds a frozen DetectParams on the main thread and the task only reads that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qgis.core import QgsCoordinateReferenceSystem, QgsProviderRegistry, QgsRasterLayer

from .translation import tr

Bounds = tuple[float, float, float, float]  # minx, miny, maxx, maxy


class ParamsError(ValueError):
    """The chosen layer or options cannot be sent to the backend; a sentence for the user."""


@dataclass(frozen=True)
class DetectParams:
    raster_path: str
    layer_name: str
    crs_authid: str          # e.g. "EPSG:32633"; empty for CRSs without an authority code
    crs_wkt: str
    classes: tuple[str, ...] | None = None   # None: the backend's full DOTA list
    tile_size: int = 512
    overlap: int = 100
    max_mode: bool = False
    region: Bounds | None = None             # in the layer's CRS; None: the whole raster
    max_new_tokens: int | None = None        # answer budget per tile; None: the backend's default

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
            if self.crs_authid or self.crs_wkt:  # without one the backend reads the raster's CRS
                region["crs"] = self.crs_authid or self.crs_wkt
            body["region"] = region
        return body


def local_raster_path(layer: QgsRasterLayer) -> str:
    """The file behind ``layer``; the backend reads rasters by path, so it must be one."""
    if layer.providerType() != "gdal":
        raise ParamsError(
            tr(
                "The layer “{name}” is not a raster file (its source is {provider}): "
                "choose a layer loaded from a GeoTIFF or another local raster file."
            ).format(name=layer.name(), provider=layer.providerType())
        )
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if not os.path.isfile(path):
        raise ParamsError(
            tr(
                "The file of layer “{name}” ({path}) cannot be found: it may have moved; "
                "reload the layer and try again."
            ).format(name=layer.name(), path=path)
        )
    return os.path.abspath(path)


def params_for_layer(
    layer: QgsRasterLayer | None,
    classes: tuple[str, ...] | None = None,
    tile_size: int = 512,
    overlap: int = 100,
    max_mode: bool = False,
    region: Bounds | None = None,
    max_new_tokens: int | None = None,
) -> DetectParams:
    """Validated parameters for ``layer`` (raises ParamsError with a sentence)."""
    if layer is None or not layer.isValid():
        raise ParamsError(tr("Choose a raster layer to detect objects in."))
    if overlap < 0 or tile_size <= 0 or overlap >= tile_size:
        raise ParamsError(
            tr("The overlap ({overlap} px) must be at least 0 and smaller than the tile size ({size} px).").format(
                overlap=overlap, size=tile_size
            )
        )
    crs = layer.crs()
    return DetectParams(
        raster_path=local_raster_path(layer),
        layer_name=layer.name(),
        crs_authid=crs.authid() if crs.isValid() else "",
        crs_wkt=crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else "",
        classes=tuple(classes) if classes else None,
        tile_size=tile_size,
        overlap=overlap,
        max_mode=max_mode,
        region=region,
        max_new_tokens=max_new_tokens,
    )
