"""Processing algorithms: "Detect objects" and "Ask about a region", through the backend.

They make the plugin scriptable: ``processing.run("rscovlm:detectobjects", {...})``,
batch mode and the model builder all go through here. Both follow the backend job the
way the dock does: progress from the job status, cancel forwarded to the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterBlockFeedback,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .areas import bounds_of
from .client import BackendClient, BackendError
from .jobs import JobCancelled, JobFailed, JobProgress, follow_job
from .layers import crs_of_collection, detections_layer, polygons_of
from .params import ParamsError, params_for_layer, parse_classes
from .raster_export import RasterExportError, temporary_tif, write_geotiff
from .settings import OVERLAP, TILE_SIZE, TILE_SIZE_MAX, TILE_SIZE_MIN, PluginSettings
from .translation import tr

POLL_S = 0.5


def run_job(client: BackendClient, job_id: str, feedback) -> dict[str, Any]:
    """Follow the job with Processing's feedback: its progress bar, its cancel button."""

    def report(progress: JobProgress) -> None:
        if feedback is not None and progress.percent is not None:
            feedback.setProgress(progress.percent)

    try:
        return follow_job(
            client, job_id, is_cancelled=lambda: feedback is not None and feedback.isCanceled(),
            on_progress=report, poll_s=POLL_S,
        )
    except JobCancelled:
        raise QgsProcessingException(tr("Cancelled.")) from None
    except JobFailed as error:
        raise QgsProcessingException(str(error)) from None


class _BackendAlgorithm(QgsProcessingAlgorithm):
    """What both algorithms share: the group, the client from the plugin's settings."""

    def group(self) -> str:
        return tr("RSCoVLM")

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return "rscovlm"

    def client(self) -> BackendClient:
        return BackendClient.from_settings(PluginSettings.load())

    def local_path(self, params, feedback) -> tuple[str, Path | None]:
        """The raster's file, exporting a non-file layer first (returns the temp file to delete)."""
        if params.export is None:
            return params.raster_path, None
        feedback.pushInfo(tr("The layer is not a local file: writing the area to a temporary GeoTIFF."))
        target = temporary_tif()
        raster_feedback = QgsRasterBlockFeedback()
        feedback.canceled.connect(raster_feedback.cancel)
        try:
            write_geotiff(params.export, target, raster_feedback)
        except RasterExportError as error:
            raise QgsProcessingException(str(error)) from error
        return str(target), target


class DetectObjectsAlgorithm(_BackendAlgorithm):
    INPUT, CLASSES, TILE_SIZE, OVERLAP, MAX_MODE, EXTENT, OUTPUT = (
        "INPUT", "CLASSES", "TILE_SIZE", "OVERLAP", "MAX_MODE", "EXTENT", "OUTPUT")

    def name(self) -> str:
        return "detectobjects"

    def displayName(self) -> str:  # noqa: N802
        return tr("Detect objects")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Finds objects of the given classes in a raster with the RSCoVLM backend and writes them as "
            "oriented polygons in the raster's CRS. Classes: comma separated; empty means the 15 DOTA classes. "
            "The backend must be running (see the RSCoVLM panel)."
        )

    def createInstance(self):  # noqa: N802
        return DetectObjectsAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster layer")))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, tr("Classes (comma separated; empty: all DOTA classes)"), defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, tr("Tile size (px)"), QgsProcessingParameterNumber.Integer, TILE_SIZE,
            minValue=TILE_SIZE_MIN, maxValue=TILE_SIZE_MAX))
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, tr("Overlap (px)"), QgsProcessingParameterNumber.Integer, OVERLAP, minValue=0,
            maxValue=TILE_SIZE_MAX // 2))
        self.addParameter(QgsProcessingParameterBoolean(self.MAX_MODE, tr("Max mode (largest model input)"), False))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Area (empty: whole layer)"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, tr("Detections"), QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        own = self.parameterAsString(parameters, self.CLASSES, context) or ""
        region = region_crs = None
        if parameters.get(self.EXTENT):
            region_crs = layer.crs() if layer is not None else None
            region = bounds_of(self.parameterAsExtent(parameters, self.EXTENT, context, region_crs))
        try:
            classes = parse_classes([], own) if own.strip() else None
            params = params_for_layer(
                layer, classes=classes,
                tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
                overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
                max_mode=self.parameterAsBool(parameters, self.MAX_MODE, context),
                region=region, region_crs=region_crs,
                max_new_tokens=PluginSettings.load().max_new_tokens or None,
                allow_export=True,
            )
        except ParamsError as error:
            raise QgsProcessingException(str(error)) from error
        path, temporary = self.local_path(params, feedback)
        if temporary is not None:
            params = params.exported_to(path)
        client = self.client()
        try:
            job_id = client.submit_detect(params)
            feedback.pushInfo(tr("Job {job} queued on the backend.").format(job=job_id))
            collection = run_job(client, job_id, feedback)
        except BackendError as error:
            raise QgsProcessingException(str(error)) from error
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        fallback = QgsCoordinateReferenceSystem.fromWkt(params.crs_wkt) if params.crs_wkt else None
        result = detections_layer(collection, "detections", fallback)
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, result.fields(), QgsWkbTypes.Polygon, result.crs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for feature in result.getFeatures():
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        feedback.pushInfo(tr("{count} objects found.").format(count=result.featureCount()))
        return {self.OUTPUT: dest_id}


def roi_fields() -> QgsFields:
    fields = QgsFields()
    for name in ("kind", "label", "window"):
        fields.append(QgsField(name, QVariant.String))
    return fields


class AskAboutRegionAlgorithm(_BackendAlgorithm):
    INPUT, QUESTION, EXTENT, ZOOM, OUTPUT_ROI, ANSWER = "INPUT", "QUESTION", "EXTENT", "ZOOM", "OUTPUT_ROI", "ANSWER"

    def name(self) -> str:
        return "askaboutregion"

    def displayName(self) -> str:  # noqa: N802
        return tr("Ask about a region")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Asks the RSCoVLM backend a question about a raster, or an area of it, and returns the answer. "
            "With zoom on, the model first picks the part of the image that matters and looks at it closely; "
            "that region of interest can be written as a polygon layer."
        )

    def createInstance(self):  # noqa: N802
        return AskAboutRegionAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster layer")))
        self.addParameter(QgsProcessingParameterString(self.QUESTION, tr("Question"), multiLine=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Area (empty: whole layer)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.ZOOM, tr("Let the model zoom in first"), True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_ROI, tr("Region of interest"), QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputString(self.ANSWER, tr("Answer")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        question = (self.parameterAsString(parameters, self.QUESTION, context) or "").strip()
        if not question:
            raise QgsProcessingException(tr("Type a question to ask about the raster."))
        region = region_crs = None
        if parameters.get(self.EXTENT):
            region_crs = layer.crs() if layer is not None else None
            region = bounds_of(self.parameterAsExtent(parameters, self.EXTENT, context, region_crs))
        try:
            params = params_for_layer(layer, region=region, region_crs=region_crs, allow_export=True)
        except ParamsError as error:
            raise QgsProcessingException(str(error)) from error
        path, temporary = self.local_path(params, feedback)
        if temporary is not None:
            params = params.exported_to(path)
        body: dict[str, Any] = {
            "raster_path": params.raster_path,
            "question": question,
            "zoom": self.parameterAsBool(parameters, self.ZOOM, context),
        }
        detect_body = params.to_request()
        if "region" in detect_body:
            body["region"] = detect_body["region"]
        budget = PluginSettings.load().max_new_tokens
        if budget:
            body["max_new_tokens"] = max(16, int(budget))
        client = self.client()
        try:
            job_id = client.submit_ask(body)
            answer = run_job(client, job_id, feedback)
        except BackendError as error:
            raise QgsProcessingException(str(error)) from error
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        text = str(answer.get("answer") or "")
        feedback.pushInfo(tr("Answer: {answer}").format(answer=text))
        results: dict[str, Any] = {self.ANSWER: text}
        if parameters.get(self.OUTPUT_ROI):
            collection = answer.get("features") or {"type": "FeatureCollection", "features": []}
            crs = crs_of_collection(collection)
            if not crs.isValid():
                crs = layer.crs()
            sink, dest_id = self.parameterAsSink(
                parameters, self.OUTPUT_ROI, context, roi_fields(), QgsWkbTypes.Polygon, crs)
            if sink is not None:
                for item in collection.get("features") or []:
                    properties = item.get("properties") or {}
                    for geometry in polygons_of(item.get("geometry")):
                        feature = QgsFeature(roi_fields())
                        feature.setGeometry(geometry)
                        feature.setAttributes([None if properties.get(n) is None else str(properties.get(n))
                                               for n in ("kind", "label", "window")])
                        sink.addFeature(feature, QgsFeatureSink.FastInsert)
                results[self.OUTPUT_ROI] = dest_id
        return results

