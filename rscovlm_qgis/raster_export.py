"""Write a layer the backend cannot read by path (WMS, XYZ, virtual) to a GeoTIFF.

Runs on a worker thread: it opens its own copy of the layer from the plan's URI, so no
object of the main thread's project is touched while tiles are fetched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsRasterBlockFeedback,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)

from .params import ExportPlan
from .translation import tr


class RasterExportError(Exception):
    """The layer could not be written to a file; a sentence for the user."""


def temporary_tif(prefix: str = "rscovlm-") -> Path:
    """A new file name in the system's temporary folder (the file is created empty)."""
    handle = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".tif", delete=False)
    handle.close()
    return Path(handle.name)


def write_geotiff(plan: ExportPlan, target: Path, feedback: QgsRasterBlockFeedback | None = None) -> Path:
    """Render the plan's window of the source into ``target`` as a tiled GeoTIFF.

    The rendered image (what the user sees: RGB with alpha for WMS/XYZ) is written rather
    than raw values, since the model reads colour images anyway.
    """
    layer = QgsRasterLayer(plan.source_uri, "export", plan.provider)
    if not layer.isValid():
        raise RasterExportError(
            tr("The layer's source could not be opened for export ({error}): check that it still loads in QGIS.").format(
                error=layer.error().summary() or plan.provider
            )
        )
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()) or not pipe.set(layer.renderer().clone()):
        raise RasterExportError(tr("The layer's data could not be prepared for export."))
    writer = QgsRasterFileWriter(str(target))
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    crs = QgsCoordinateReferenceSystem.fromWkt(plan.crs_wkt)
    error = writer.writeRaster(
        pipe, plan.width, plan.height, QgsRectangle(*plan.extent), crs, QgsCoordinateTransformContext(), feedback
    )
    if feedback is not None and feedback.isCanceled():
        target.unlink(missing_ok=True)
        raise RasterExportError(tr("The export was cancelled."))
    if error != QgsRasterFileWriter.NoError:
        target.unlink(missing_ok=True)
        raise RasterExportError(
            tr("Writing the layer to {path} failed (error {code}): check the free space in the temporary folder.").format(
                path=target, code=int(error)
            )
        )
    return target
