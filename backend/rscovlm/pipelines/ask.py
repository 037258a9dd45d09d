"""Questions about a raster or a region of it: the Zoom-in Chain, captions, classes, grounding.

The Zoom-in Chain (see docs/rscovlm-interface.md) runs in two turns, as the model was
trained:

1. the region (or the whole raster) is read DOWNSAMPLED to the model's pixel budget, from
   the file's overviews when it has them, so a 30000 px raster is never read whole;
   the model gets the zoom tool in its system prompt and the question with the zoom
   instruction, and answers with an ``image_zoom_in`` call;
2. the box (model-input pixels) is mapped to raster pixels, snapped to whole 28 px
   patches, and that window is read at NATIVE resolution (downsampled only if it is still
   above the budget); it goes back as a second user turn in the same conversation, and the
   model answers.

The authors' own inference code crops the downsampled picture; the model was trained on
crops of the full-resolution original, which is what this module sends.

The same region path serves single-turn tasks (caption, scene classification, grounding)
and follow-up questions, which continue the conversation with text only: the model already
holds both pictures.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import ASK_MAX_NEW_TOKENS
from ..errors import CancelledError, NotFoundError, UserError
from ..formats.prompts import messages as build_messages
from ..formats.zoom import (
    CAPTION_PROMPT,
    ZOOM_FOLLOWUP_TEXT,
    ZOOM_SYSTEM_PROMPT,
    Box,
    classification_prompt,
    grounding_prompt,
    looks_like_tool_call,
    match_class,
    parse_grounding,
    parse_zoom_call,
    zoom_call_text,
    zoom_user_text,
)
from ..model_input import IMAGE_FACTOR, MAX_PIXELS, MIN_PIXELS, smart_resize
from ..tiling import Window

__all__ = [
    "AskOptions",
    "AskResult",
    "Conversation",
    "ConversationStore",
    "ask",
    "caption",
    "classify",
    "ground",
    "MIN_REGION_SIDE",
    "MAX_QUESTION_CHARS",
    "MAX_FOLLOW_UPS",
    "TASKS",
    "clean_question",
    "resolve_region",
    "read_for_model",
    "zoom_window",
    "input_box_to_raster",
    "window_polygon",
]

ShouldCancel = Callable[[], bool]

MIN_REGION_SIDE = IMAGE_FACTOR  # one vision patch: anything smaller shows the model nothing
MAX_QUESTION_CHARS = 2000
MAX_FOLLOW_UPS = 16  # each turn re-reads the whole history; past this, start over
TASKS = ("ask", "caption", "classify", "ground")  # what the server and CLI may ask for


@dataclass
class AskOptions:
    """What to look at and how: the region (pixel window or map bounds) and the budget."""

    zoom: bool = True
    window: Window | None = None  # raster pixels
    bounds: tuple[float, float, float, float] | None = None  # minx, miny, maxx, maxy
    bounds_crs: str | None = None  # CRS of ``bounds``; None: the raster's
    bands: tuple[int, ...] | None = None
    max_new_tokens: int = ASK_MAX_NEW_TOKENS
    max_pixels: int = MAX_PIXELS
    min_pixels: int = MIN_PIXELS

    def __post_init__(self) -> None:
        if self.window is not None and self.bounds is not None:
            raise UserError("Give the region either as a pixel window or as map bounds, not both.")
        if self.bounds is not None:
            values = tuple(float(v) for v in self.bounds)
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise UserError("The region bounds must be four finite numbers: MINX,MINY,MAXX,MAXY.")
            if values[2] <= values[0] or values[3] <= values[1]:
                raise UserError(
                    f"The region bounds {values} are empty: MAXX must exceed MINX and MAXY must exceed MINY."
                )
            self.bounds = values  # type: ignore[assignment]
        if self.max_new_tokens < 1:
            raise UserError("max_new_tokens must be at least 1.")
        if self.min_pixels > self.max_pixels:
            raise UserError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels}).")
        if self.max_pixels < IMAGE_FACTOR * IMAGE_FACTOR:
            raise UserError(f"max_pixels must be at least {IMAGE_FACTOR * IMAGE_FACTOR} (one 28 x 28 patch).")


@dataclass
class AskResult:
    """The answer and everything needed to trust it and to draw it on a map."""

    task: str
    question: str
    answer: str
    zoomed: bool
    zoom_fallback_reason: str | None
    region_window: Window
    roi_window: Window | None
    roi_polygon: Any  # shapely Polygon in the raster CRS (pixel coordinates if not georeferenced)
    crs: Any  # pyproj.CRS | None
    region_crs: Any = None  # pyproj.CRS of the requested bounds, when it differs from ``crs``
    roi_polygon_region_crs: Any = None
    region_polygon: Any = None  # what the model was shown in the first pass (raster CRS)
    region_polygon_region_crs: Any = None
    box_pixels: Box | None = None  # grounding: raster pixels (x1, y1, x2, y2)
    box_polygon: Any = None
    box_polygon_region_crs: Any = None
    label: str | None = None  # classification: the closest class
    label_score: float | None = None
    answer_empty: bool = False
    follow_up: bool = False
    raster_notes: list[str] = field(default_factory=list)  # what was done to show the bands as RGB
    transcript: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def features(self, in_region_crs: bool = False) -> dict:
        """ROI, grounded box and the region shown to the model, as GeoJSON named with its CRS."""
        import geopandas as gpd

        from ..outputs import to_geojson_dict

        rows, geoms = [], []
        roi = self.roi_polygon_region_crs if in_region_crs else self.roi_polygon
        box = self.box_polygon_region_crs if in_region_crs else self.box_polygon
        if roi is not None:
            rows.append({"kind": "roi", "label": "region of interest", "window": _window_text(self.roi_window)})
            geoms.append(roi)
        if box is not None:
            rows.append({"kind": "box", "label": self.question, "window": None})
            geoms.append(box)
        region = self.region_polygon_region_crs if in_region_crs else self.region_polygon
        if region is not None:
            rows.append({"kind": "region", "label": "region shown to the model", "window": _window_text(self.region_window)})
            geoms.append(region)
        crs = self.region_crs if in_region_crs else self.crs
        frame = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs) if rows else gpd.GeoDataFrame(
            {"kind": [], "label": [], "window": []}, geometry=[], crs=crs
        )
        return to_geojson_dict(frame)

    def to_json(self) -> dict:
        """Answer, flags, geometries (GeoJSON with CRS) and the text transcript; JSON-safe."""
        data: dict[str, Any] = {
            "task": self.task,
            "question": self.question,
            "answer": self.answer,
            "answer_empty": self.answer_empty,
            "zoomed": self.zoomed,
            "zoom_fallback_reason": self.zoom_fallback_reason,
            "follow_up": self.follow_up,
            "raster_notes": list(self.raster_notes),
            "label": self.label,
            "label_score": self.label_score,
            "region_window": list(self.region_window.as_tuple()),
            "roi_window": list(self.roi_window.as_tuple()) if self.roi_window else None,
            "box_pixels": list(self.box_pixels) if self.box_pixels else None,
            "features": self.features(),
            "features_region_crs": self.features(True) if self.region_crs is not None else None,
            "transcript": self.transcript,
            "warnings": list(self.warnings),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        return data

    def summary(self) -> str:
        """A few lines for a terminal: the answer, whether it zoomed, where."""
        lines = [f"Answer: {self.answer if self.answer else '(empty)'}"]
        if self.label is not None:
            lines.append(f"Class: {self.label} (match {self.label_score:.2f})")
        if self.task == "ask":
            if self.zoomed:
                lines.append(f"Zoomed in: yes, raster pixels {_window_text(self.roi_window)}")
            else:
                lines.append(f"Zoomed in: no ({self.zoom_fallback_reason})")
        if self.roi_polygon is not None:
            lines.append(f"Region of interest ({_crs_text(self.crs)}): {self.roi_polygon.wkt}")
        if self.box_polygon is not None:
            lines.append(f"Grounded box ({_crs_text(self.crs)}): {self.box_polygon.wkt}")
        lines.extend(f"Note: {w}" for w in self.warnings)
        return "\n".join(lines)


@dataclass
class Conversation:
    """One region's question-and-answer history, images included, ready to continue."""

    raster_path: str | None = None
    region_window: Window | None = None
    bands: tuple[int, ...] | None = None
    messages: list[dict] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)
    zoomed: bool = False
    roi_window: Window | None = None
    questions: int = 0

    def reset(self) -> None:
        """Start over: forget the pictures, the questions and the answers."""
        self.raster_path = None
        self.region_window = None
        self.bands = None
        self.messages = []
        self.transcript = []
        self.zoomed = False
        self.roi_window = None
        self.questions = 0

    @property
    def started(self) -> bool:
        return bool(self.messages)

    def is_about(self, raster_path: str, region: Window, bands: tuple[int, ...] | None) -> bool:
        return self.raster_path == raster_path and self.region_window == region and self.bands == bands


class ConversationStore:
    """Conversations kept by id for the server: expire after ``ttl_s`` idle, at most ``max_items``.

    Thread-safe: the HTTP handlers and the model worker touch it from different threads.
    The least recently used conversation goes first when the cap is reached.
    """

    def __init__(self, ttl_s: float = 3600.0, max_items: int = 64, clock: Callable[[], float] = time.monotonic):
        if ttl_s <= 0 or max_items < 1:
            raise ValueError("ttl_s must be positive and max_items at least 1")
        self.ttl_s = float(ttl_s)
        self.max_items = int(max_items)
        self._clock = clock
        self._items: OrderedDict[str, tuple[Conversation, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, seen) in self._items.items() if now - seen > self.ttl_s]:
            del self._items[key]

    def create(self) -> tuple[str, Conversation]:
        """A new empty conversation and its id (unguessable, URL-safe)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            while len(self._items) >= self.max_items:
                self._items.popitem(last=False)
            key = secrets.token_urlsafe(12)
            conversation = Conversation()
            self._items[key] = (conversation, now)
            return key, conversation

    def get(self, conversation_id: str) -> Conversation:
        """The conversation, refreshed; NotFoundError (a sentence) when unknown or expired."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._items.get(conversation_id)
            if entry is None:
                raise NotFoundError(
                    f"The conversation {conversation_id!r} is unknown or expired (kept {self.ttl_s / 60:.0f} "
                    "minutes after its last question); ask again without a conversation id to start a new one."
                )
            self._items[conversation_id] = (entry[0], now)
            self._items.move_to_end(conversation_id)
            return entry[0]

    def get_or_create(self, conversation_id: str | None) -> tuple[str, Conversation]:
        if conversation_id:
            return conversation_id, self.get(conversation_id)
        return self.create()

    def reset(self, conversation_id: str) -> Conversation:
        """Start the conversation over, keeping its id."""
        conversation = self.get(conversation_id)
        conversation.reset()
        return conversation

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            return self._items.pop(conversation_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._items)


# --------------------------------------------------------------------------- pure helpers


def _window_text(window: Window | None) -> str | None:
    if window is None:
        return None
    return f"columns {window.col_off}..{window.col_end}, rows {window.row_off}..{window.row_end}"


def _crs_text(crs: Any) -> str:
    if crs is None:
        return "pixel coordinates, the raster has no CRS"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name


def clean_question(question: Any, what: str = "question") -> str:
    """The question with whitespace tidied; UserError when empty or absurdly long."""
    text = str(question or "").strip()
    if not text:
        raise UserError(f"The {what} is empty; type what you want to know about the imagery.")
    if len(text) > MAX_QUESTION_CHARS:
        raise UserError(
            f"The {what} is {len(text)} characters long; keep it under {MAX_QUESTION_CHARS} characters."
        )
    return text


def clamp_window(window: Window, width: int, height: int) -> Window | None:
    """The part of ``window`` inside a ``width`` x ``height`` image, or None if none is."""
    col0, row0 = max(0, window.col_off), max(0, window.row_off)
    col1, row1 = min(width, window.col_end), min(height, window.row_end)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(int(col0), int(row0), int(col1 - col0), int(row1 - row0))


def input_box_to_raster(box: Box, input_wh: tuple[int, int], region: Window) -> Box:
    """A box in model-input pixels -> raster pixels: scale by region/input size, shift by offset."""
    in_w, in_h = input_wh
    sx, sy = region.width / in_w, region.height / in_h
    x1, y1, x2, y2 = box
    return (x1 * sx + region.col_off, y1 * sy + region.row_off, x2 * sx + region.col_off, y2 * sy + region.row_off)


def _snap_span(lo: float, hi: float, start: int, stop: int, factor: int) -> tuple[int, int]:
    """``(offset, length)``: a span of whole ``factor`` patches centred on [lo, hi], inside [start, stop)."""
    extent = stop - start
    length = max(factor, int(round((hi - lo) / factor)) * factor)
    if length > extent:
        length = max(factor, extent // factor * factor)
    centre = (lo + hi) / 2.0
    offset = int(math.floor(centre - length / 2.0 + 0.5))
    offset = min(max(offset, start), stop - length)
    return offset, length


def zoom_window(box_raster: Box, region: Window, factor: int = IMAGE_FACTOR) -> Window | None:
    """The native-resolution window the model asked to see, or None if it misses the region.

    The box is clipped to the region, then each side is snapped to a whole number of
    ``factor`` px patches around the box centre (at least one patch, shifted back inside the
    region), so the crop reaches the model pixel for pixel with no resampling.
    """
    x1, y1, x2, y2 = box_raster
    x1, x2 = max(x1, region.col_off), min(x2, region.col_end)
    y1, y2 = max(y1, region.row_off), min(y2, region.row_end)
    if x2 < x1 or y2 < y1:
        return None
    col, width = _snap_span(x1, x2, region.col_off, region.col_end, factor)
    row, height = _snap_span(y1, y2, region.row_off, region.row_end, factor)
    return Window(col, row, width, height)


def window_polygon(window_or_box: Window | Box, transform: Any) -> Any:
    """The window's (or float box's) four corners through the full affine: rotation kept."""
    import shapely

    from ..georef import pixel_to_map

    if isinstance(window_or_box, Window):
        x1, y1, x2, y2 = window_or_box.col_off, window_or_box.row_off, window_or_box.col_end, window_or_box.row_end
    else:
        x1, y1, x2, y2 = window_or_box
    quad = np.array([[x1, y1, x2, y1, x2, y2, x1, y2]], dtype=np.float64)
    corners = pixel_to_map(quad, transform).reshape(4, 2)
    return shapely.Polygon(corners)


def reproject_polygon(polygon: Any, src_crs: Any, dst_crs: Any, points_per_edge: int = 16) -> Any:
    """The polygon in another CRS, edges densified first so curved edges stay faithful."""
    import shapely
    from pyproj import Transformer

    transformer = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    length = polygon.length / (4 * points_per_edge) if polygon.length > 0 else 0
    dense = shapely.segmentize(polygon, length) if length > 0 else polygon

    def _project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(dense, _project)


def _image_note(image: Any, window: Window, source: str) -> dict:
    return {
        "type": "image",
        "width": int(image.width),
        "height": int(image.height),
        "window": list(window.as_tuple()),
        "source": source,
    }


def _transcript_entry(role: str, text: str, images: Sequence[dict] = ()) -> dict:
    return {"role": role, "text": text, "images": list(images)}


def _user_turn(text: str, image: Any = None) -> dict:
    content: list[dict] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def _assistant_turn(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# --------------------------------------------------------------------------- raster edge


def _check_cancel(should_cancel: ShouldCancel | None) -> None:
    if should_cancel is not None and should_cancel():
        raise CancelledError("cancelled")


def _open_source(raster_path: Any, bands: tuple[int, ...] | None):
    from ..raster import RasterSource

    path = Path(raster_path)
    if not path.exists() and "://" not in str(raster_path) and not str(raster_path).startswith("/vsi"):
        raise NotFoundError(f"The raster {raster_path} does not exist; check the path.")
    return RasterSource.open(raster_path, bands=bands)


def resolve_region(source: Any, options: AskOptions) -> Window:
    """The pixel window the user means: bounds in any CRS, a pixel window, or the raster."""
    full = Window(0, 0, int(source.width), int(source.height))
    if options.bounds is not None:
        try:
            region = source.region_window(options.bounds, options.bounds_crs)
        except UserError:
            raise
        except ValueError as exc:  # RasterError is a ValueError whose message is a sentence
            raise UserError(str(exc)) from exc
        described = f"The region {tuple(round(v, 6) for v in options.bounds)}" + (
            f" ({options.bounds_crs})" if options.bounds_crs else ""
        )
    elif options.window is not None:
        region = options.window
        described = f"The pixel window {_window_text(region)}"
    else:
        region, described = full, "The raster"
    clamped = clamp_window(region, full.width, full.height) if region is not None else None
    if clamped is None:
        raise UserError(
            f"{described} lies outside the raster ({full.width} x {full.height} pixels); "
            "draw the region over the imagery, in the right CRS."
        )
    if clamped.width < MIN_REGION_SIDE or clamped.height < MIN_REGION_SIDE:
        raise UserError(
            f"{described} covers only {clamped.width} x {clamped.height} raster pixels; the model sees "
            f"{MIN_REGION_SIDE} x {MIN_REGION_SIDE} pixel patches, so draw a region at least "
            f"{MIN_REGION_SIDE} pixels on each side."
        )
    return clamped


def _region_crs(source: Any, options: AskOptions) -> Any:
    """The CRS the user drew the region in, when it differs from the raster's."""
    if options.bounds is None or not options.bounds_crs or source.crs is None:
        return None
    from pyproj import CRS

    try:
        crs = CRS.from_user_input(options.bounds_crs)
    except Exception as exc:  # noqa: BLE001 - pyproj raises CRSError with a technical message
        raise UserError(f"The region CRS {options.bounds_crs!r} is not a CRS pyproj knows; use e.g. 'EPSG:4326'.") from exc
    return None if crs.equals(source.crs) else crs


def read_for_model(source: Any, window: Window, min_pixels: int, max_pixels: int) -> tuple[Any, Any]:
    """The window as a PIL image at the model-input size, and its valid mask.

    Downsampling goes through ``read_rgb(out_hw=...)`` (decimated reads use overviews);
    a window already at a multiple of 28 within budget is read natively, untouched;
    upsampling (below ``min_pixels``) resamples the native pixels bicubically, as Qwen's
    processor would.
    """
    from PIL import Image

    in_h, in_w = smart_resize(window.height, window.width, IMAGE_FACTOR, min_pixels, max_pixels)
    if (in_h, in_w) == (window.height, window.width):
        rgb, valid = source.read_rgb(window)
    elif in_h * in_w < window.height * window.width:
        rgb, valid = source.read_rgb(window, out_hw=(in_h, in_w))
    else:
        rgb, valid = source.read_rgb(window)
        image = Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize((in_w, in_h), Image.BICUBIC)
        mask = Image.fromarray(np.asarray(valid, dtype=np.uint8) * 255).resize((in_w, in_h), Image.NEAREST)
        return image, np.asarray(mask) > 0
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB"), np.asarray(valid, dtype=bool)


def _generate(engine: Any, conversation: list[dict], max_new_tokens: int, region: "_Region",
              should_cancel: ShouldCancel | None = None) -> str:
    """The model's answer; one cut short by the token budget is said in the result's warnings."""
    answers = engine.generate([conversation], max_new_tokens=max_new_tokens, should_cancel=should_cancel)
    answer = answers[0] if answers else None
    if answer is None:
        return ""
    if not answer.finished:
        region.warnings.append(
            f"The model's answer was cut off at the {max_new_tokens}-token budget; ask with a larger "
            "max_new_tokens for the whole answer."
        )
    return answer.text.strip()


# --------------------------------------------------------------------------- the region path


@dataclass
class _Region:
    """An opened raster, the region asked about, and its first-pass picture."""

    source: Any
    path: str
    window: Window
    crs: Any
    region_crs: Any
    transform: Any
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. an answer cut by the token budget
    image: Any = None
    input_wh: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict)


def _prepare_region(source: Any, raster_path: Any, options: AskOptions, read_image: bool = True) -> _Region:
    started = time.perf_counter()
    window = resolve_region(source, options)
    region = _Region(
        source=source,
        path=str(Path(raster_path).resolve()) if Path(raster_path).exists() else str(raster_path),
        window=window,
        crs=source.crs,
        region_crs=_region_crs(source, options),
        transform=source.transform,
        notes=list(getattr(source, "notes", [])),
    )
    if read_image:
        image, valid = read_for_model(source, window, options.min_pixels, options.max_pixels)
        if not np.any(valid):
            raise UserError(
                f"The region ({_window_text(window)}) holds only nodata pixels; draw it over the imagery."
            )
        region.image, region.input_wh = image, (image.width, image.height)
    region.timings["read_region_s"] = time.perf_counter() - started
    return region


def _polygons(region: _Region, shape: Window | Box) -> tuple[Any, Any]:
    polygon = window_polygon(shape, region.transform)
    in_region = reproject_polygon(polygon, region.crs, region.region_crs) if region.region_crs is not None else None
    return polygon, in_region


def _empty_answer_warning(answer: str) -> list[str]:
    if answer:
        return []
    return [
        "The model returned an empty answer; rephrase the question, or check that the model "
        "folder holds RSCoVLM weights."
    ]


def ask(
    raster_path: str | Path,
    question: str,
    engine: Any,
    options: AskOptions | None = None,
    history: Conversation | None = None,
    should_cancel: ShouldCancel | None = None,
) -> AskResult:
    """Answer ``question`` about the region (or the whole raster) with the Zoom-in Chain.

    With ``history`` the conversation is continued when it is about the same raster and
    region (a follow-up: text only, the model already has the pictures) and started over
    otherwise; ``history`` is updated in place either way.
    """
    options = options or AskOptions()
    question = clean_question(question)
    started = time.perf_counter()
    with _open_source(raster_path, options.bands) as source:
        probe = _prepare_region(source, raster_path, options, read_image=False)
        warnings: list[str] = []
        if history is not None and history.started:
            if history.is_about(probe.path, probe.window, options.bands):
                return _follow_up(probe, question, engine, options, history, should_cancel, started)
            history.reset()
            warnings.append("The raster or the region changed, so the conversation started over.")
        region = _prepare_region(source, raster_path, options)
        chain = _zoom_chain if options.zoom else _plain
        result, conversation = chain(region, question, engine, options, should_cancel)
    result.warnings[:0] = warnings
    result.timings["total_s"] = time.perf_counter() - started
    if history is not None:
        history.raster_path, history.region_window, history.bands = region.path, region.window, options.bands
        history.messages, history.transcript = conversation, list(result.transcript)
        history.zoomed, history.roi_window, history.questions = result.zoomed, result.roi_window, 1
    return result


def _plain(region: _Region, question: str, engine: Any, options: AskOptions,
           should_cancel) -> tuple[AskResult, list[dict]]:
    """One turn, no tool: the question as the model saw plain VQA (no system prompt)."""
    conversation = build_messages(None, question, region.image)
    transcript = [_transcript_entry("user", question, [_image_note(region.image, region.window, "region")])]
    _check_cancel(should_cancel)
    t0 = time.perf_counter()
    answer = _generate(engine, conversation, options.max_new_tokens, region, should_cancel)
    region.timings["first_turn_s"] = time.perf_counter() - t0
    transcript.append(_transcript_entry("assistant", answer))
    conversation.append(_assistant_turn(answer))
    reason = "Zoom was turned off; the answer comes from the whole region's picture."
    return _result(region, "ask", question, answer, False, reason, None, transcript), conversation


def _zoom_chain(region: _Region, question: str, engine: Any, options: AskOptions,
                should_cancel) -> tuple[AskResult, list[dict]]:
    conversation = build_messages(ZOOM_SYSTEM_PROMPT, zoom_user_text(question), region.image)
    transcript = [
        _transcript_entry("system", ZOOM_SYSTEM_PROMPT),
        _transcript_entry("user", zoom_user_text(question), [_image_note(region.image, region.window, "region")]),
    ]
    _check_cancel(should_cancel)
    t0 = time.perf_counter()
    first = _generate(engine, conversation, options.max_new_tokens, region, should_cancel)
    region.timings["first_turn_s"] = time.perf_counter() - t0
    transcript.append(_transcript_entry("assistant", first))
    _check_cancel(should_cancel)

    box = parse_zoom_call(first)
    roi = None
    if box is not None:
        in_w, in_h = region.input_wh
        inside = (box[0] < in_w and box[1] < in_h and box[2] > 0 and box[3] > 0)
        roi = zoom_window(input_box_to_raster(box, region.input_wh, region.window), region.window) if inside else None
        reason = None if roi is not None else (
            f"The model's zoom box {list(box)} lies outside the {in_w} x {in_h} picture it was shown, "
            "so the answer comes from the whole region."
        )
    elif looks_like_tool_call(first):
        reason = "The model's zoom-in call could not be read, so the question was asked again without zoom."
    else:
        reason = "The model answered without asking to zoom in."

    if roi is None:
        if looks_like_tool_call(first):  # its text is a broken call, not an answer: ask plainly
            plain, plain_conversation = _plain(region, question, engine, options, should_cancel)
            plain.transcript[:0] = transcript
            plain.zoom_fallback_reason = reason
            return plain, plain_conversation
        conversation.append(_assistant_turn(first))
        return _result(region, "ask", question, first, False, reason, None, transcript), conversation

    t0 = time.perf_counter()
    crop, _valid = read_for_model(region.source, roi, options.min_pixels, options.max_pixels)
    region.timings["zoom_read_s"] = time.perf_counter() - t0
    call = zoom_call_text([round(v) for v in box])  # the call as trained, whatever defects it had
    conversation.append(_assistant_turn(call))
    conversation.append(_user_turn(ZOOM_FOLLOWUP_TEXT, crop))
    source_note = "native" if (crop.width, crop.height) == (roi.width, roi.height) else "resampled"
    transcript.append(_transcript_entry("user", ZOOM_FOLLOWUP_TEXT, [_image_note(crop, roi, source_note)]))
    _check_cancel(should_cancel)
    t0 = time.perf_counter()
    answer = _generate(engine, conversation, options.max_new_tokens, region, should_cancel)
    region.timings["second_turn_s"] = time.perf_counter() - t0
    transcript.append(_transcript_entry("assistant", answer))
    conversation.append(_assistant_turn(answer))
    return _result(region, "ask", question, answer, True, None, roi, transcript), conversation


def _follow_up(region: _Region, question: str, engine: Any, options: AskOptions, history: Conversation,
               should_cancel, started: float) -> AskResult:
    if history.questions > MAX_FOLLOW_UPS:
        raise UserError(
            f"This conversation already has {history.questions} questions; start over to ask about the "
            "region afresh (long histories slow the model down and blur its answers)."
        )
    conversation = history.messages + [_user_turn(question)]
    _check_cancel(should_cancel)
    t0 = time.perf_counter()
    answer = _generate(engine, conversation, options.max_new_tokens, region, should_cancel)
    region.timings["first_turn_s"] = time.perf_counter() - t0
    transcript = [_transcript_entry("user", question), _transcript_entry("assistant", answer)]
    reason = None if history.zoomed else "Follow-up question: answered from the pictures already in the conversation."
    result = _result(region, "ask", question, answer, history.zoomed, reason, history.roi_window, transcript)
    result.follow_up = True
    history.messages = conversation + [_assistant_turn(answer)]
    history.transcript.extend(transcript)
    history.questions += 1
    result.timings["total_s"] = time.perf_counter() - started
    return result


def _result(region: _Region, task: str, question: str, answer: str, zoomed: bool, reason: str | None,
            roi: Window | None, transcript: list[dict]) -> AskResult:
    polygon, polygon_region = _polygons(region, roi) if roi is not None else (None, None)
    shown, shown_region = _polygons(region, region.window)
    return AskResult(
        task=task,
        question=question,
        answer=answer,
        zoomed=zoomed,
        zoom_fallback_reason=reason,
        region_window=region.window,
        roi_window=roi,
        roi_polygon=polygon,
        crs=region.crs,
        region_crs=region.region_crs,
        roi_polygon_region_crs=polygon_region,
        region_polygon=shown,
        region_polygon_region_crs=shown_region,
        answer_empty=not answer,
        raster_notes=list(region.notes),
        transcript=transcript,
        warnings=list(region.warnings) + _empty_answer_warning(answer),
        timings=dict(region.timings),
    )


# --------------------------------------------------------------------------- single-turn tasks


def _single_turn(raster_path, engine, options: AskOptions, task: str, system: str | None, user_text: str,
                 question: str, should_cancel) -> tuple[AskResult, _Region]:
    started = time.perf_counter()
    with _open_source(raster_path, options.bands) as source:
        region = _prepare_region(source, raster_path, options)
        conversation = build_messages(system, user_text, region.image)
        transcript = ([_transcript_entry("system", system)] if system else []) + [
            _transcript_entry("user", user_text, [_image_note(region.image, region.window, "region")])
        ]
        _check_cancel(should_cancel)
        t0 = time.perf_counter()
        answer = _generate(engine, conversation, options.max_new_tokens, region, should_cancel)
        region.timings["first_turn_s"] = time.perf_counter() - t0
        transcript.append(_transcript_entry("assistant", answer))
        result = _result(region, task, question, answer, False, f"{task.capitalize()} is a single-turn task.",
                         None, transcript)
    result.timings["total_s"] = time.perf_counter() - started
    return result, region


def caption(raster_path: str | Path, engine: Any, options: AskOptions | None = None,
            should_cancel: ShouldCancel | None = None) -> AskResult:
    """Describe the region (or the whole raster) in a sentence or two."""
    options = options or AskOptions()
    result, _ = _single_turn(raster_path, engine, options, "caption", None, CAPTION_PROMPT, CAPTION_PROMPT,
                             should_cancel)
    return result


def classify(raster_path: str | Path, classes: Iterable[str] | str, engine: Any, options: AskOptions | None = None,
             should_cancel: ShouldCancel | None = None) -> AskResult:
    """Pick the scene class of the region from the user's list; the answer is matched to the closest."""
    options = options or AskOptions()
    prompt = classification_prompt(classes)
    result, _ = _single_turn(raster_path, engine, options, "classify", None, prompt, prompt, should_cancel)
    result.label, result.label_score = match_class(result.answer, classes)
    if result.label is not None and result.label_score < 0.6:
        result.warnings.append(
            f"The model's answer {result.answer!r} names none of the classes; {result.label!r} is only the "
            "closest spelling."
        )
    return result


def ground(raster_path: str | Path, description: str, engine: Any, options: AskOptions | None = None,
           form: str = "plain", should_cancel: ShouldCancel | None = None) -> AskResult:
    """Find the object the description names: a box in raster pixels and on the map."""
    options = options or AskOptions()
    description = clean_question(description, "description of what to find")
    system, user_text = grounding_prompt(description, form)
    result, region = _single_turn(raster_path, engine, options, "ground", system, user_text, description,
                                  should_cancel)
    box = parse_grounding(result.answer)
    if box is None:
        if result.answer:
            result.warnings.append("The model's answer holds no box; it may not have found the object.")
        return result
    x1, y1, x2, y2 = input_box_to_raster(box, region.input_wh, region.window)
    w = region.window
    clipped = (max(x1, w.col_off), max(y1, w.row_off), min(x2, w.col_end), min(y2, w.row_end))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        result.warnings.append(f"The model's box {list(box)} lies outside the picture it was shown; it was ignored.")
        return result
    result.box_pixels = clipped
    result.box_polygon, result.box_polygon_region_crs = _polygons(region, clipped)
    return result
