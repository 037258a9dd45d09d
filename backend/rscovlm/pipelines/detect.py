"""Tiled oriented object detection on a georeferenced raster.

The pipeline composes the pure pieces in one direction::

    raster → windows → tiles (RGB) → model input → engine → text
           → quads (model-input px) → quads (image px) → merged → map CRS → GeoDataFrame

A live run and a replay of recorded responses (``detect_from_responses``) share every
step after the engine, so post-processing can be re-run without a model and both paths
give identical results for identical text.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engines.base import chunks
from ..errors import CancelledError, UserError
from ..formats.detection import parse_detections
from ..formats.prompts import DOTA_CLASSES, FORMS, detection_prompt, messages, normalize_class_name
from ..geometry import touches_inner_edge
from ..merge import MergeConfig, merge_detections
from ..model_input import input_to_image, model_input_size
from ..responses import ResponseRecord, ResponsesWriter, read_responses
from ..tiling import Window, tile_windows

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


@dataclass
class DetectOptions:
    """Everything a detection run can be asked to do; defaults follow the paper."""

    classes: tuple[str, ...] = DOTA_CLASSES
    form: str = "quad"
    tile_size: int = 512
    overlap: int = 100
    max_mode: bool = False
    batch_size: int | None = None  # None: the engine's own batch size
    max_new_tokens: int = 1024
    bands: tuple[int, ...] | None = None
    window: Window | None = None
    bounds: tuple[float, float, float, float] | None = None
    bounds_crs: str | None = None
    merge: MergeConfig = field(default_factory=MergeConfig)

    def __post_init__(self) -> None:
        classes = tuple(dict.fromkeys(normalize_class_name(c) for c in self.classes if c.strip()))
        if not classes:
            raise UserError("No class names were given: name at least one class to detect, e.g. 'plane'.")
        self.classes = classes
        if self.form not in FORMS:
            raise UserError(f"Unknown answer form {self.form!r}: use one of {', '.join(FORMS)}.")


@dataclass
class DetectionResult:
    """Georeferenced detections plus what a user needs to trust them."""

    gdf: "geopandas.GeoDataFrame"  # noqa: F821 - imported lazily
    crs: "pyproj.CRS | None"  # noqa: F821
    quads_img: np.ndarray
    labels: list[str]
    tiles_total: int
    tiles_skipped_nodata: int
    parsed_kept: int
    parsed_dropped: dict[str, int]
    warnings: list[str]
    timings: dict[str, float]
    tile_reports: list[dict] = field(default_factory=list)  # per tile: lines kept, dropped and why

    def to_geojson(self) -> dict:
        from ..outputs import to_geojson_dict

        collection = to_geojson_dict(self.gdf)
        collection["rscovlm"] = {  # a foreign member (RFC 7946 §6.1): the run's summary
            "tiles_total": self.tiles_total,
            "tiles_skipped_nodata": self.tiles_skipped_nodata,
            "parsed_kept": self.parsed_kept,
            "parsed_dropped": self.parsed_dropped,
            "tiles_with_dropped_lines": [r for r in self.tile_reports if r["dropped"]],
            "warnings": self.warnings,
            "timings": self.timings,
        }
        return collection

    def summary(self) -> str:
        counts = Counter(self.gdf["class"]) if len(self.gdf) else Counter()
        per_class = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no objects"
        dropped = sum(self.parsed_dropped.values())
        return (
            f"{len(self.gdf)} objects ({per_class}) from {self.tiles_total} tiles "
            f"({self.tiles_skipped_nodata} skipped as nodata); model lines kept {self.parsed_kept}, "
            f"dropped {dropped}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(self.parsed_dropped.items()))})" if dropped else "")
        )


class _Collector:
    """Turns per-tile responses into image-pixel quads, tile by tile (shared by live and replay)."""

    def __init__(self, image_wh: tuple[int, int], options: DetectOptions):
        self.image_wh = image_wh
        self.options = options
        self.quads: list[np.ndarray] = []
        self.labels: list[str] = []
        self.tile_ids: list[np.ndarray] = []
        self.inner_edge: list[np.ndarray] = []
        self.tile_names: list[str] = []
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.tile_reports: list[dict] = []

    def add(self, record: ResponseRecord) -> None:
        window, input_wh = record.window, record.input_wh
        tile_index = len(self.tile_names)
        self.tile_names.append(f"c{record.col_off}_r{record.row_off}")
        parsed = parse_detections(record.response, self.options.classes, self.options.form, input_wh=input_wh)
        self.kept += parsed.kept
        self.dropped.update(parsed.dropped)
        self.tile_reports.append(
            {"tile": self.tile_names[-1], "kept": parsed.kept, "dropped": dict(parsed.dropped), "none": parsed.said_none}
        )
        if parsed.dropped:
            log.debug("tile %s: kept %d lines, dropped %s", self.tile_names[-1], parsed.kept, dict(parsed.dropped))
        if not len(parsed.labels):
            return
        quads = input_to_image(parsed.quads, input_wh, window)
        self.quads.append(quads)
        self.labels.extend(parsed.labels)
        self.tile_ids.append(np.full(len(quads), tile_index, dtype=np.int64))
        self.inner_edge.append(touches_inner_edge(quads, window, self.image_wh))

    def merged(self) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
        """Return (quads, labels, tile names, support) of the objects kept after merging."""
        if not self.quads:
            return np.zeros((0, 8)), [], [], np.zeros(0, dtype=np.int64)
        quads = np.concatenate(self.quads)
        tile_ids = np.concatenate(self.tile_ids)
        labels = np.asarray(self.labels, dtype=object)
        result = merge_detections(quads, labels, tile_ids, np.concatenate(self.inner_edge), self.options.merge)
        keep = np.asarray(result.keep, dtype=np.int64)
        names = [self.tile_names[t] for t in tile_ids[keep]]
        return quads[keep], list(labels[keep]), names, np.asarray(result.support, dtype=np.int64)


def plan_windows(source, options: DetectOptions) -> list[Window]:
    """The tile grid over the whole raster or over the requested region (tiling checks the sizes)."""
    region = options.window
    if options.bounds is not None:
        region = source.region_window(options.bounds, options.bounds_crs)
    return tile_windows(source.width, source.height, options.tile_size, options.overlap, region)


def _finish(
    collector: _Collector,
    source,
    *,
    tiles_total: int,
    tiles_skipped: int,
    warnings: list[str],
    timings: dict[str, float],
) -> DetectionResult:
    from ..geometry import quads_to_polygons
    from ..georef import pixel_to_map, polygon_areas_m2
    from ..outputs import build_detections_gdf

    started = time.perf_counter()
    quads, labels, tile_names, support = collector.merged()
    timings["merge_s"] = time.perf_counter() - started
    if not source.georeferenced:
        warnings.append(
            "The raster has no georeference: polygons are in pixel coordinates (x right, y down) "
            "and have no CRS; areas are not computed."
        )
    elif source.crs is None:
        warnings.append(
            "The raster has a geotransform but no CRS: polygons use the geotransform's coordinates "
            "and carry no CRS; areas are not computed. Assign the raster a CRS to fix this."
        )
    crs = source.crs if source.georeferenced else None
    polygons = quads_to_polygons(pixel_to_map(quads, source.transform))
    areas = polygon_areas_m2(polygons, crs)
    gdf = build_detections_gdf(polygons, labels, support, tile_names, areas, crs)
    return DetectionResult(
        gdf=gdf,
        crs=source.crs,
        quads_img=quads,
        labels=labels,
        tiles_total=tiles_total,
        tiles_skipped_nodata=tiles_skipped,
        parsed_kept=collector.kept,
        parsed_dropped=dict(collector.dropped),
        warnings=warnings,
        timings=timings,
        tile_reports=collector.tile_reports,
    )


def _tile_image(source, window: Window, options: DetectOptions):
    """Read one tile and resize it to the model input; None when the tile is all nodata."""
    from PIL import Image

    rgb, valid = source.read_rgb(window)
    if not valid.any():
        return None
    in_h, in_w = model_input_size(window.height, window.width, max_mode=options.max_mode)
    image = Image.fromarray(rgb)
    if (in_w, in_h) != image.size:
        image = image.resize((in_w, in_h), Image.Resampling.BICUBIC)
    return image


def detect(
    raster_path: str | Path,
    engine,
    options: DetectOptions | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    responses_out: str | Path | None = None,
) -> DetectionResult:
    """Detect objects over a raster (or a region of it) with a loaded engine."""
    from ..raster import RasterSource

    options = options or DetectOptions()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with RasterSource.open(raster_path, bands=options.bands) as source:
        windows = plan_windows(source, options)
        warnings: list[str] = []
        system, user = detection_prompt(options.classes, options.form)
        batch_size = options.batch_size or getattr(engine, "batch_size", 8)
        collector = _Collector((source.width, source.height), options)
        skipped = done = 0
        model_s = read_s = 0.0
        writer = ResponsesWriter(responses_out) if responses_out else None
        try:
            if progress:
                progress(0, len(windows))
            for batch in chunks(windows, batch_size):
                if should_cancel and should_cancel():
                    raise CancelledError("detection cancelled")
                t0 = time.perf_counter()
                tiles = [(w, _tile_image(source, w, options)) for w in batch]
                read_s += time.perf_counter() - t0
                live = [(w, img) for w, img in tiles if img is not None]
                skipped += len(tiles) - len(live)
                if live:
                    t0 = time.perf_counter()
                    texts = engine.generate(
                        [messages(system, user, img) for _, img in live], max_new_tokens=options.max_new_tokens
                    )
                    model_s += time.perf_counter() - t0
                    for (window, image), text in zip(live, texts):
                        record = ResponseRecord(
                            col_off=window.col_off,
                            row_off=window.row_off,
                            width=window.width,
                            height=window.height,
                            input_width=image.width,
                            input_height=image.height,
                            response=text,
                        )
                        if writer:
                            writer.write(record)
                        collector.add(record)
                done += len(batch)
                if progress:
                    progress(done, len(windows))
        finally:
            if writer:
                writer.close()
        if skipped:
            warnings.append(f"{skipped} of {len(windows)} tiles were entirely nodata and were not sent to the model.")
        timings.update(read_s=read_s, model_s=model_s)
        result = _finish(
            collector, source, tiles_total=len(windows), tiles_skipped=skipped, warnings=warnings, timings=timings
        )
    timings["total_s"] = time.perf_counter() - started
    return result


def detect_from_responses(
    raster_path: str | Path,
    responses_path: str | Path,
    options: DetectOptions | None = None,
) -> DetectionResult:
    """Re-run parsing, merging and georeferencing from recorded responses, without a model."""
    from ..raster import RasterSource

    options = options or DetectOptions()
    started = time.perf_counter()
    records: Iterable[ResponseRecord] = read_responses(responses_path)
    with RasterSource.open(raster_path, bands=options.bands) as source:
        collector = _Collector((source.width, source.height), options)
        count = 0
        for record in records:
            if record.col_off + record.width > source.width or record.row_off + record.height > source.height:
                raise UserError(
                    f"A recorded tile at column {record.col_off}, row {record.row_off} "
                    f"({record.width}x{record.height} px) lies outside this {source.width}x{source.height} px "
                    "raster: the responses file belongs to another raster."
                )
            collector.add(record)
            count += 1
        warnings: list[str] = []
        result = _finish(collector, source, tiles_total=count, tiles_skipped=0, warnings=warnings, timings={})
    result.timings["total_s"] = time.perf_counter() - started
    return result
