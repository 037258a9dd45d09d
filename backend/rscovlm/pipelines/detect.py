"""Tiled oriented object detection on a georeferenced raster.

The pipeline composes the pure pieces in one direction::

    raster → windows → tiles (RGB) → model input → engine → text
           → quads (model-input px) → quads (image px) → merged → map CRS → GeoDataFrame

Tiles stream through the engine (:mod:`.streaming`): read ahead by background threads,
as many requests in flight as the engine suits, answers taken as they complete. A tile
whose answer hit the token budget is never taken as complete: it is split into four
overlapping sub-tiles that are asked again (down to ``split_min_tile``), and the split is
counted. A tile the engine keeps failing on is recorded and reported; the run goes on.

Each object gets a confidence score from the log-probabilities of the tokens that wrote
it (:mod:`rscovlm.scores`, ``DetectOptions.score``) when the engine gave them; NaN when it
did not. Scores come from the recorded tokens, so a replay gives the live run's scores.

Every answer is written to the responses file as it arrives, so post-processing can be
re-run without a model (``detect_from_responses``) and an interrupted run can be resumed
(``resume=True``): recorded tiles are not asked again. Answers are merged in a canonical
tile order, so a live run, a resumed run and a replay give identical results for
identical text, whatever order the answers came in.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import defaults
from ..errors import EngineUnavailableError, UserError
from ..formats.detection import parse_detections
from ..formats.prompts import DOTA_CLASSES, FORMS, detection_prompt, messages, normalize_class_name
from ..geometry import touches_inner_edge
from ..merge import MergeConfig, merge_detections
from ..model_input import MAX_PIXELS, MIN_PIXELS, input_to_image, model_input_size
from ..responses import ResponseRecord, ResponsesWriter, read_responses, read_responses_header
from ..scores import DEFINITIONS, object_scores
from ..tiling import Window, tile_windows
from .streaming import AnswerStream

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


@dataclass
class DetectOptions:
    """Everything a detection run can be asked to do; defaults follow the paper and the reference."""

    classes: tuple[str, ...] = DOTA_CLASSES
    form: str = "quad"
    tile_size: int = defaults.TILE_SIZE
    overlap: int = defaults.OVERLAP
    max_mode: bool = False
    batch_size: int | None = None  # None: the engine's own batch size
    max_in_flight: int | None = None  # None: what the engine suits (its batch x its concurrency)
    readers: int = 2  # threads reading and resizing tiles ahead of the engine
    max_new_tokens: int = defaults.DETECT_MAX_NEW_TOKENS
    split_min_tile: int = defaults.SPLIT_MIN_TILE  # 0: never split a tile whose answer hit the budget
    bands: tuple[int, ...] | None = None
    window: Window | None = None
    bounds: tuple[float, float, float, float] | None = None
    bounds_crs: str | None = None
    merge: MergeConfig = field(default_factory=MergeConfig)
    score: str = defaults.SCORE_DEFINITION  # how an object's score is made from its tokens (rscovlm.scores)

    def __post_init__(self) -> None:
        if self.score not in DEFINITIONS:
            raise UserError(f"Unknown score definition {self.score!r}: use one of {', '.join(DEFINITIONS)}.")
        classes = tuple(dict.fromkeys(normalize_class_name(c) for c in self.classes if c.strip()))
        if not classes:
            raise UserError("No class names were given: name at least one class to detect, e.g. 'plane'.")
        self.classes = classes
        if self.form not in FORMS:
            raise UserError(f"Unknown answer form {self.form!r}: use one of {', '.join(FORMS)}.")
        if not 1 <= self.max_new_tokens <= defaults.MAX_NEW_TOKENS_LIMIT:
            raise UserError(
                f"The answer budget must be between 1 and {defaults.MAX_NEW_TOKENS_LIMIT} "
                f"tokens per tile; got {self.max_new_tokens}."
            )
        if self.readers < 1 or (self.max_in_flight is not None and self.max_in_flight < 1):
            raise UserError("--readers and --max-in-flight must be at least 1.")

    @classmethod
    def build(cls, *, iou: float | None = None, ios: float | None = None, merge_by_score: bool | None = None,
              **given) -> DetectOptions:
        """Options from a request or the command line: a value left as None takes its default.

        The CLI and the server both come through here, so a default lives in one place.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(given) - known
        if unknown:
            raise TypeError(f"unknown detection option(s): {', '.join(sorted(unknown))}")
        values = {name: value for name, value in given.items() if value is not None}
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        merge = {k: v for k, v in (("iou_threshold", iou), ("ios_threshold", ios), ("order_by_score", merge_by_score))
                 if v is not None}
        if merge:
            values["merge"] = MergeConfig(**merge)
        return cls(**values)

    def fingerprint(self) -> dict:
        """What decides the model's answers: a resumed run must use the same."""
        return {
            "classes": list(self.classes), "form": self.form, "tile_size": self.tile_size,
            "overlap": self.overlap, "max_mode": self.max_mode, "max_new_tokens": self.max_new_tokens,
            "split_min_tile": self.split_min_tile, "bands": list(self.bands) if self.bands else None,
        }


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
    tiles_split: int = 0  # tiles (and sub-tiles) whose answer hit the budget and were asked again as quarters
    tiles_incomplete: list[str] = field(default_factory=list)  # answers still cut at the smallest sub-tile
    tiles_failed: list[dict] = field(default_factory=list)  # {"tile", "error"}: the engine gave up on them
    requests: int = 0  # conversations sent to the engine in this run
    resumed: int = 0  # answers taken from the responses file instead of the engine
    scores: np.ndarray | None = None  # (K,) kept objects' scores, NaN where none; the gdf's "score"

    @property
    def scored(self) -> bool:
        """Every object has a score (False also when there are no objects)."""
        return self.scores is not None and len(self.scores) > 0 and not np.isnan(self.scores).any()

    def to_geojson(self) -> dict:
        from ..outputs import to_geojson_dict

        collection = to_geojson_dict(self.gdf)
        collection["rscovlm"] = {  # a foreign member (RFC 7946 §6.1): the run's summary
            "tiles_total": self.tiles_total,
            "tiles_skipped_nodata": self.tiles_skipped_nodata,
            "tiles_split": self.tiles_split,
            "tiles_incomplete": self.tiles_incomplete,
            "tiles_failed": self.tiles_failed,
            "requests": self.requests,
            "resumed": self.resumed,
            "parsed_kept": self.parsed_kept,
            "parsed_dropped": self.parsed_dropped,
            "tiles_with_dropped_lines": [r for r in self.tile_reports if r["dropped"]],
            "warnings": self.warnings,
            "timings": self.timings,
        }
        return collection

    @property
    def complete(self) -> bool:
        """Every tile answered in full (none failed, none still cut at the budget)."""
        return not self.tiles_failed and not self.tiles_incomplete

    def summary(self) -> str:
        counts = Counter(self.gdf["class"]) if len(self.gdf) else Counter()
        per_class = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no objects"
        dropped = sum(self.parsed_dropped.values())
        text = (
            f"{len(self.gdf)} objects ({per_class}) from {self.tiles_total} tiles "
            f"({self.tiles_skipped_nodata} skipped as nodata); model lines kept {self.parsed_kept}, "
            f"dropped {dropped}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(self.parsed_dropped.items()))})" if dropped else "")
        )
        if self.tiles_split:
            text += f"; {self.tiles_split} dense tiles hit the answer budget and were asked again as sub-tiles"
        if self.tiles_incomplete:
            text += f"; {len(self.tiles_incomplete)} answers were still cut by the budget (objects may be missing)"
        if self.tiles_failed:
            text += f"; {len(self.tiles_failed)} tiles FAILED (no answer; run again with --resume to retry them)"
        if self.resumed:
            text += f"; {self.resumed} answers reused from the responses file"
        return text


def tile_name(window: Window, tile_size: int, image_wh: tuple[int, int]) -> str:
    """A tile's name in reports and the ``tile`` field: its offset, and its size for a sub-tile."""
    name = f"c{window.col_off}_r{window.row_off}"
    if window.width < min(tile_size, image_wh[0]) and window.height < min(tile_size, image_wh[1]):
        name += f"_{window.width}x{window.height}"
    return name


@dataclass
class Merged:
    """The objects kept after merging, in image pixels, and what the tiles said."""

    quads: np.ndarray
    labels: list[str]
    tile_names: list[str]
    support: np.ndarray
    scores: np.ndarray  # NaN where an object has no score
    kept: int = 0  # lines kept by the parser over all tiles
    dropped: dict[str, int] = field(default_factory=dict)


def _window_order(window: Window) -> tuple[int, int, int, int]:
    """The canonical order answers are merged in: row-major, larger tiles first."""
    return (window.row_off, window.col_off, -window.height, -window.width)


def _record_order(record: ResponseRecord) -> tuple[int, int, int, int]:
    return _window_order(record.window)


class _Collector:
    """Turns per-tile responses into image-pixel quads (shared by live runs, resume and replay)."""

    def __init__(self, image_wh: tuple[int, int], options: DetectOptions):
        self.image_wh = image_wh
        self.options = options
        self.quads: list[np.ndarray] = []
        self.labels: list[str] = []
        self.tile_ids: list[np.ndarray] = []
        self.inner_edge: list[np.ndarray] = []
        self.tile_names: list[str] = []
        self.scores: list[np.ndarray] = []
        self.unscored_tiles = 0  # tiles with log-probabilities that do not spell their answer
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.tile_reports: list[dict] = []

    def add_all(self, records: list[ResponseRecord]) -> None:
        """Every record whose answer is used, in canonical order (arrival order does not matter)."""
        for record in sorted((r for r in records if not r.split), key=_record_order):
            self.add(record)

    def add(self, record: ResponseRecord) -> None:
        window, input_wh = record.window, record.input_wh
        tile_index = len(self.tile_names)
        self.tile_names.append(tile_name(window, self.options.tile_size, self.image_wh))
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
        scores = object_scores(record.response, record.logprobs, parsed, self.options.score)
        if record.logprobs is not None and np.isnan(scores).all():
            self.unscored_tiles += 1
        quads = input_to_image(parsed.quads, input_wh, window)
        self.scores.append(scores)
        self.quads.append(quads)
        self.labels.extend(parsed.labels)
        self.tile_ids.append(np.full(len(quads), tile_index, dtype=np.int64))
        self.inner_edge.append(touches_inner_edge(quads, window, self.image_wh))

    def merged(self) -> Merged:
        """The objects kept after merging."""
        if not self.quads:
            return Merged(np.zeros((0, 8)), [], [], np.zeros(0, dtype=np.int64), np.zeros(0), self.kept,
                          dict(self.dropped))
        quads = np.concatenate(self.quads)
        tile_ids = np.concatenate(self.tile_ids)
        labels = np.asarray(self.labels, dtype=object)
        result = merge_detections(quads, labels, tile_ids, np.concatenate(self.inner_edge), self.options.merge,
                                  scores=np.concatenate(self.scores))
        keep = np.asarray(result.keep, dtype=np.int64)
        names = [self.tile_names[t] for t in tile_ids[keep]]
        scores = result.scores if result.scores is not None else np.full(len(keep), np.nan)
        return Merged(quads[keep], list(labels[keep]), names, np.asarray(result.support, dtype=np.int64),
                      scores, self.kept, dict(self.dropped))

    def warnings(self) -> list[str]:
        if not self.unscored_tiles:
            return []
        return [f"The token log-probabilities of {self.unscored_tiles} tiles do not spell their answers "
                "(the engine's tokens decode differently one by one), so their objects have no score."]


def merge_records(records: list[ResponseRecord], image_wh: tuple[int, int], options: DetectOptions) -> Merged:
    """Recorded answers to merged image-pixel quads (with their scores), without a raster."""
    collector = _Collector(image_wh, options)
    collector.add_all(records)
    return collector.merged()


def plan_windows(source, options: DetectOptions) -> list[Window]:
    """The tile grid over the whole raster or over the requested region (tiling checks the sizes)."""
    region = options.window
    if options.bounds is not None:
        region = source.region_window(options.bounds, options.bounds_crs)
    return tile_windows(source.width, source.height, options.tile_size, options.overlap, region)


def split_window(window: Window, image_wh: tuple[int, int], options: DetectOptions) -> list[Window]:
    """Four overlapping quarters of a tile whose answer hit the budget, or [] at the floor.

    Each quarter is a little over half the tile, so neighbours overlap by the run's
    overlap (at most a quarter of the tile): an object cut by one quarter's edge lies
    whole in another, and the usual merge joins them.
    """
    if options.split_min_tile <= 0:
        return []
    side = min(window.width, window.height)
    overlap = min(options.overlap, side // 4)
    sub = -(-(side + overlap) // 2)  # ceil
    if sub < options.split_min_tile or sub >= side:
        return []
    return tile_windows(image_wh[0], image_wh[1], sub, overlap, region=window)


def worth_splitting(text: str, options: DetectOptions) -> bool:
    """Whether a cut answer looks like a dense tile (many distinct objects) worth asking in quarters.

    A model caught in a loop repeats the same lines until the budget; asking its quarters
    would only multiply the loop. An answer with fewer than two whole object lines says
    nothing about density either (a tiny budget, or no detection at all).
    """
    lines = [line.strip() for line in text.splitlines()[:-1] if line.strip()]  # the last line may be cut
    parsed = parse_detections("\n".join(lines), options.classes, options.form)
    return parsed.kept >= 2 and len(set(lines)) >= 0.5 * len(lines)


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
    merged = collector.merged()
    quads, labels = merged.quads, merged.labels
    timings["merge_s"] = time.perf_counter() - started
    warnings.extend(collector.warnings())
    if not source.georeferenced:
        warnings.append(
            "The raster has no georeference: polygons are in pixel coordinates (x right, y down) "
            "and have no CRS; areas are not computed."
        )
    elif source.crs is None:
        warnings.append(
            "The raster is georeferenced but has no CRS: polygons use its map coordinates "
            "and carry no CRS; areas are not computed. Assign the raster a CRS to fix this."
        )
    crs = source.crs if source.georeferenced else None
    polygons = quads_to_polygons(pixel_to_map(quads, source.transform))
    areas = polygon_areas_m2(polygons, crs)
    gdf = build_detections_gdf(polygons, labels, merged.support, merged.tile_names, areas, crs, scores=merged.scores)
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
        scores=merged.scores,
    )


def tile_input(source, window: Window, options: DetectOptions, pixel_bounds: tuple[int, int]):
    """Read one tile and resize it to the model input; None when the tile is all nodata."""
    from PIL import Image

    rgb, valid = source.read_rgb(window)
    if not valid.any():
        return None
    low, high = pixel_bounds
    in_h, in_w = model_input_size(window.height, window.width, max_mode=options.max_mode,
                                  min_pixels=low, max_pixels=high)
    image = Image.fromarray(rgb)
    if (in_w, in_h) != image.size:
        image = image.resize((in_w, in_h), Image.Resampling.BICUBIC)
    # Which part of the raster the picture shows, for engines that answer from ground
    # truth (the scripted oracle) and for debugging; never sent to a model.
    image.info["window"] = window.as_tuple()
    return image


def _check_resumable(responses_path: Path, raster_path, options: DetectOptions) -> list[ResponseRecord]:
    """The records of an interrupted run, refused when they were asked with other settings."""
    if not responses_path.exists():
        return []
    header = read_responses_header(responses_path)
    if header is None:
        raise UserError(
            f"{responses_path} has no settings header (it was written by an older version or by hand), so "
            "it cannot be resumed safely; replay it with --from-responses or start afresh without --resume."
        )
    wanted = options.fingerprint()
    differ = [k for k, v in wanted.items() if header.get(k) != v]
    if differ:
        raise UserError(
            f"{responses_path} was written with other settings ({', '.join(differ)} differ), so its answers "
            "do not fit this run; resume with the same settings, or write to a new responses file."
        )
    if header.get("raster") and Path(header["raster"]).name != Path(raster_path).name:
        raise UserError(
            f"{responses_path} holds answers for {header['raster']}, not {raster_path}; give that raster's "
            "responses file, or write to a new one."
        )
    return read_responses(responses_path, tolerate_cut_end=True)


def detect(
    raster_path: str | Path,
    engine,
    options: DetectOptions | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    responses_out: str | Path | None = None,
    resume: bool = False,
) -> DetectionResult:
    """Detect objects over a raster (or a region of it) with a loaded engine.

    ``resume`` continues the run recorded in ``responses_out``: tiles answered there are
    not sent again, and the result equals an uninterrupted run's.
    """
    from ..raster import RasterSource

    options = options or DetectOptions()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if resume and not responses_out:
        raise UserError("--resume continues a run from its responses file: give that file with --responses-out.")
    with RasterSource.open(raster_path, bands=options.bands) as source:
        windows = plan_windows(source, options)
        image_wh = (source.width, source.height)
        recorded = _check_resumable(Path(responses_out), raster_path, options) if resume else []
        known = {r.window: r for r in recorded}
        system, user = detection_prompt(options.classes, options.form)
        pixel_bounds = tuple(getattr(engine, "pixel_bounds", (MIN_PIXELS, MAX_PIXELS)))

        def prepare(window: Window):
            image = tile_input(source, window, options, pixel_bounds)
            return None if image is None else (messages(system, user, image), image.size)

        stream = AnswerStream(engine, prepare, max_new_tokens=options.max_new_tokens, should_cancel=should_cancel,
                              readers=options.readers, max_in_flight=options.max_in_flight,
                              batch_size=options.batch_size)
        run = _Run(windows, image_wh, options, known, stream)
        header = {"raster": str(raster_path), **options.fingerprint()}
        writer = ResponsesWriter(responses_out, append=resume, header=header) if responses_out else None
        try:
            run.go(writer, progress)
        finally:
            if writer:
                writer.close()
        timings.update(read_model_s=time.perf_counter() - started)
        warnings = run.warnings()
        collector = _Collector(image_wh, options)
        collector.add_all(run.records)
        result = _finish(collector, source, tiles_total=len(windows), tiles_skipped=run.skipped_roots,
                         warnings=warnings, timings=timings)
    result.tiles_split, result.tiles_incomplete = run.split, run.incomplete_names()
    result.tiles_failed = sorted(run.failed, key=lambda failure: _window_order(Window(*failure["window"])))
    result.requests, result.resumed = run.requests, run.resumed
    timings["total_s"] = time.perf_counter() - started
    return result


class _Run:
    """The bookkeeping of one live run: what was asked, answered, split, failed; progress."""

    def __init__(self, windows: list[Window], image_wh, options: DetectOptions,
                 known: dict[Window, ResponseRecord], stream: AnswerStream) -> None:
        self.windows, self.image_wh, self.options, self.known, self.stream = windows, image_wh, options, known, stream
        self.roots = set(windows)
        self.records: list[ResponseRecord] = []
        self.failed: list[dict] = []
        self.incomplete: list[Window] = []  # still cut at the smallest sub-tile
        self.split = self.requests = self.resumed = self.skipped = self.skipped_roots = 0
        self.total = len(windows)
        self.done = 0
        self._failures_in_a_row = 0

    def go(self, writer: ResponsesWriter | None, progress: Progress | None) -> None:
        if progress:
            progress(0, self.total)
        for window in self.windows:
            self._submit(window, writer)
        if progress and self.done:
            progress(self.done, self.total)  # answers taken from the responses file
        for outcome in self.stream:
            window = outcome.key
            if outcome.skipped:
                self.skipped += 1
                self.skipped_roots += window in self.roots
            elif outcome.error is not None:
                self._failed(window, outcome.error)
            else:
                self._failures_in_a_row = 0
                self.requests += 1
                answer = outcome.answer
                in_w, in_h = outcome.input
                record = ResponseRecord(
                    col_off=window.col_off, row_off=window.row_off, width=window.width, height=window.height,
                    input_width=in_w, input_height=in_h, response=answer.text, finished=answer.finished,
                    split=not answer.finished and worth_splitting(answer.text, self.options)
                    and bool(split_window(window, self.image_wh, self.options)),
                    tokens=answer.tokens, logprobs=answer.logprobs,
                )
                if writer:
                    writer.write(record)
                self._take(record, writer)
            self.done += 1
            if progress:
                progress(self.done, self.total)

    def _submit(self, window: Window, writer: ResponsesWriter | None) -> None:
        """Ask for a window, or take its recorded answer when resuming."""
        record = self.known.get(window)
        if record is None:
            self.stream.put(window)
            return
        self.resumed += 1
        self.done += 1
        self._take(record, writer)

    def _take(self, record: ResponseRecord, writer: ResponsesWriter | None) -> None:
        self.records.append(record)
        if record.finished:
            return
        name = self._name(record.window)
        subs = split_window(record.window, self.image_wh, self.options) if record.split else []
        if not subs:
            self.incomplete.append(record.window)
            return
        self.split += 1
        self.total += len(subs)
        log.info("tile %s (%dx%d) hit the answer budget: asking its %d quarters", name,
                 record.width, record.height, len(subs))
        for sub in subs:
            self._submit(sub, writer)

    def incomplete_names(self) -> list[str]:
        """In canonical order, as the merge: a run reports the same whatever order answers came in."""
        return [self._name(window) for window in sorted(self.incomplete, key=_window_order)]

    def _failed(self, window: Window, error: str) -> None:
        self.failed.append({"tile": self._name(window), "window": list(window.as_tuple()), "error": error})
        self._failures_in_a_row += 1
        # Nothing getting through means the engine is down, not that some tiles are bad.
        if self._failures_in_a_row >= max(8, 2 * self.stream.in_flight_limit):
            raise EngineUnavailableError(
                f"The model failed on {self._failures_in_a_row} tiles in a row, so the run stopped: {error} "
                "Answers so far are kept in the responses file; fix the engine and run again with --resume."
            )

    def _name(self, window: Window) -> str:
        return tile_name(window, self.options.tile_size, self.image_wh)

    def warnings(self) -> list[str]:
        out = []
        if self.skipped:
            out.append(f"{self.skipped_roots} of {len(self.windows)} tiles were entirely nodata and were not sent "
                       "to the model." if self.skipped_roots == self.skipped else
                       f"{self.skipped} tiles or sub-tiles were entirely nodata and were not sent to the model.")
        if self.split:
            out.append(f"{self.split} tiles hit the {self.options.max_new_tokens}-token answer budget (dense scenes) "
                       "and were asked again as four overlapping sub-tiles.")
        if self.incomplete:
            out.append(f"{len(self.incomplete)} answers were still cut by the {self.options.max_new_tokens}-token "
                       f"budget at the smallest sub-tile ({', '.join(self.incomplete_names()[:5])}"
                       f"{', ...' if len(self.incomplete) > 5 else ''}): objects there may be missing; raise "
                       "--max-new-tokens.")
        if self.failed:
            out.append(f"{len(self.failed)} tiles failed and have no answer ({self.failed[0]['error']}); "
                       "run again with --resume to ask only those.")
        return out


def detect_from_responses(
    raster_path: str | Path,
    responses_path: str | Path,
    options: DetectOptions | None = None,
) -> DetectionResult:
    """Re-run parsing, merging and georeferencing from recorded responses, without a model."""
    from ..raster import RasterSource

    options = options or DetectOptions()
    started = time.perf_counter()
    records = read_responses(responses_path)
    with RasterSource.open(raster_path, bands=options.bands) as source:
        for record in records:
            if record.col_off + record.width > source.width or record.row_off + record.height > source.height:
                raise UserError(
                    f"A recorded tile at column {record.col_off}, row {record.row_off} "
                    f"({record.width}x{record.height} px) lies outside this {source.width}x{source.height} px "
                    "raster: the responses file belongs to another raster."
                )
        collector = _Collector((source.width, source.height), options)
        collector.add_all(records)
        split = sum(r.split for r in records)
        image_wh = (source.width, source.height)
        incomplete = [tile_name(r.window, options.tile_size, image_wh) for r in records if not r.finished and not r.split]
        result = _finish(collector, source, tiles_total=len(records) - split, tiles_skipped=0, warnings=[],
                         timings={})
    result.tiles_split, result.tiles_incomplete = split, incomplete
    result.timings["total_s"] = time.perf_counter() - started
    return result
