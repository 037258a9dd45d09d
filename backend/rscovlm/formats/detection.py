"""Read RSCoVLM's detection answers into quadrilaterals, whatever shape the text is in.

A generative model's answer is data from an unreliable source: it can be cut off by the
token limit mid-line, repeat itself, invent labels, leave the image, or fall back to the
JSON form it also learned. :func:`parse_detections` therefore never raises on a string; it
keeps every detection it can trust and counts the rest in ``dropped`` under stable reason
names (see ``REASONS``), so a pipeline can report what the model got wrong.

Forms understood (detected from the text, ``form`` tells how many numbers a plain line has):

- plain quads ``x1,y1,x2,y2,x3,y3,x4,y4 label`` (the default prompt), one per line, like
  the authors' parser: numbers up to the first space, more than 8 truncated, fewer dropped;
- plain horizontal boxes ``x1,y1,x2,y2 label`` (``form="hbb"``), made into rectangles;
- ``There are none.``;
- JSON objects, fenced or not, with the defects generation produces (trailing commas,
  single quotes, unquoted keys, a missing closing bracket): each complete ``{...}`` is read
  on its own. Keys: ``"quadrant bbox"`` (8 numbers), ``"bbox_2d"`` (4, horizontal box) and
  ``"oriented bbox"`` (cx, cy, w, h, angle).

Angle convention for ``oriented bbox`` (an assumption, taken from how the authors built
their training targets with OpenCV's ``minAreaRect``): degrees, in image coordinates with y
pointing down, the ``w`` side runs along ``(cos a, sin a)`` and the ``h`` side along
``(-sin a, cos a)``; a positive angle therefore turns clockwise on screen.

Geometry checks, in this order: wholly outside the input -> dropped; partly outside ->
vertices clamped to the input (needs ``input_wh``); vertices ordered clockwise from the
top-most (then left-most) vertex, which also untangles a bow-tie; repeated vertices or area
below 1 px² -> dropped; still not a simple polygon -> dropped; exact repeats of an earlier
detection (a generation loop) -> dropped.

Labels: normalised (lower case, hyphens as spaces); if not one of the requested classes,
fuzzy-matched with difflib at ``FUZZY_CUTOFF`` (0.75 accepts "harbour", "planes",
"tennis courts", rejects "car" or "tank"), else dropped.

Where each kept detection was written: ``lines`` gives the index into
``text.splitlines()`` of its line (for JSON, the line where its object opens) and
``spans`` the character ranges of its coordinates and of its label in ``text``, so a
confidence score can be made from the very tokens that wrote them (:mod:`rscovlm.scores`).
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import shapely

from rscovlm.formats.prompts import DOTA_CLASSES, normalize_class_name
from rscovlm.geometry import order_quads, quads_to_polygons, signed_areas

__all__ = ["ParsedDetections", "parse_detections", "REASONS", "FUZZY_CUTOFF"]

FUZZY_CUTOFF = 0.75
MIN_AREA = 1.0  # px² of the model input
MAX_COORDINATE = 1e6  # far beyond any model input; larger numbers are not coordinates

MALFORMED = "malformed"
TOO_FEW = "too_few_coordinates"
TRUNCATED = "truncated"
MISSING_LABEL = "missing_label"
UNKNOWN_LABEL = "unknown_label"
OUTSIDE = "outside_image"
DEGENERATE = "degenerate"
INVALID = "invalid_geometry"
DUPLICATE = "duplicate"
REASONS = (MALFORMED, TOO_FEW, TRUNCATED, MISSING_LABEL, UNKNOWN_LABEL, OUTSIDE, DEGENERATE, INVALID, DUPLICATE)


@dataclass
class ParsedDetections:
    quads: np.ndarray  # (N, 8) float64, model-input pixels, clockwise from min-y vertex
    labels: list[str]  # canonical class names from the requested list
    kept: int
    dropped: dict[str, int]  # reason -> count (only reasons that occurred)
    said_none: bool  # the model answered "There are none."
    clipped: int = 0  # kept detections whose vertices were clamped into the input
    lines: list[int] = field(default_factory=list)  # per kept detection: index into text.splitlines()
    #: per kept detection: (coordinates start, end, label start, end) character offsets in the text
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)


_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_LINE_RE = re.compile(
    rf"^(?:[-*•]\s+)?(?P<nums>{_NUMBER}(?:\s*,\s*{_NUMBER})*)\s*,?\s*(?P<label>.*)$"
)
_NUMBER_RE = re.compile(_NUMBER)
_NONE_RE = re.compile(r"there\s+(?:are|is)\s+(?:none|no\s+objects?)\s*\.?", re.IGNORECASE)
_OBJECT_RE = re.compile(r"\{[^{}]*\}")
_KEY_RE = re.compile(
    r"""["']?\s*(?P<key>quadrant[ _]bbox|quadrant[ _]bounding[ _]box|oriented[ _]bbox|rotated[ _]bbox"""
    r"""|oriented[ _]bounding[ _]box|rotated[ _]bounding[ _]box|bbox[ _]2d|bbox|polygon|quad)\s*["']?\s*:\s*"""
    r"""\[(?P<vals>(?:[^\[\]]|\[[^\[\]]*\])*)\]""",
    re.IGNORECASE,
)
_LABEL_RE = re.compile(
    r"""["']?(?:label|category|class|name)["']?\s*:\s*(?:"(?P<d>[^"]*)"?|'(?P<s>[^']*)'?)""",
    re.IGNORECASE,
)
_NEEDED = {"quad": 8, "hbb": 4, "obb": 5}


@dataclass
class _Candidate:
    numbers: list[float]
    kind: str  # quad | hbb | obb
    label: str
    line: int = 0  # index into text.splitlines()
    span: tuple[int, int, int, int] = (0, 0, 0, 0)  # coordinates and label, character offsets in the text


class _Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + n


class _LabelMatcher:
    """Resolve free-text labels to the requested classes (exact, then difflib)."""

    def __init__(self, classes: Iterable[str]) -> None:
        names = sorted({normalize_class_name(c) for c in classes} - {""})
        self.names = names or list(DOTA_CLASSES)
        self.cache: dict[str, str | None] = {name: name for name in self.names}

    def resolve(self, label: str) -> str | None:
        if label not in self.cache:
            match = difflib.get_close_matches(label, self.names, n=1, cutoff=FUZZY_CUTOFF)
            self.cache[label] = match[0] if match else None
        return self.cache[label]


def _clean_label(raw: str) -> str:
    return normalize_class_name(raw.strip().strip("\"'`").rstrip(".,;:!").strip("\"'`"))


def _plain_candidates(text: str, form: str, tally: _Tally, matcher: _LabelMatcher) -> tuple[list[_Candidate], bool]:
    needed = 4 if form == "hbb" else 8
    kind = "hbb" if form == "hbb" else "quad"
    lines = text.splitlines()
    starts = _line_starts(text)
    ends_cleanly = text.endswith(("\n", "\r"))
    candidates: list[_Candidate] = []
    saw_none = False
    for index, raw in enumerate(lines):
        line = raw.strip()
        offset = starts[index] + len(raw) - len(raw.lstrip())  # where the stripped line begins in the text
        if not line or line.startswith("```"):
            continue
        if _NONE_RE.fullmatch(line):
            saw_none = True
            continue
        match = _LINE_RE.match(line)
        if match is None:
            tally.add(MALFORMED)
            continue
        numbers = [float(v) for v in _NUMBER_RE.findall(match["nums"])]
        label = _clean_label(match["label"])
        unfinished = index == len(lines) - 1 and not ends_cleanly
        if unfinished and (len(numbers) < needed or label not in matcher.names):
            tally.add(TRUNCATED)  # cut off by the token limit
            continue
        span = (offset + match.start("nums"), offset + match.end("nums"),
                offset + match.start("label"), offset + match.end("label"))
        candidates.append(_Candidate(numbers, kind, label, index, span))
    return candidates, saw_none


def _line_starts(text: str) -> list[int]:
    """Character offset of each line of ``text.splitlines()`` (the same line breaks)."""
    starts, position = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(position)
        position += len(line)
    return starts


def _json_candidates(text: str, tally: _Tally) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    covered_until = 0
    starts = _line_starts(text)
    for obj in _OBJECT_RE.finditer(text):
        tally.add(MALFORMED, text.count("{", covered_until, obj.start()))  # stray openings
        covered_until = obj.end()
        body = obj.group(0)
        key = _KEY_RE.search(body)
        if key is None:
            tally.add(MALFORMED)
            continue
        name = key["key"].lower().replace("_", " ")
        kind = "obb" if name.startswith(("oriented", "rotated")) else "hbb" if name.startswith("bbox") else "quad"
        numbers = [float(v) for v in _NUMBER_RE.findall(key["vals"])]
        label_match = _LABEL_RE.search(body)
        label = ""
        label_span = (obj.end(), obj.end())
        if label_match is not None:
            group = "d" if label_match["d"] is not None else "s"
            label = _clean_label(label_match[group] or "")
            label_span = (obj.start() + label_match.start(group), obj.start() + label_match.end(group))
        line = bisect.bisect_right(starts, obj.start()) - 1
        span = (obj.start() + key.start("vals"), obj.start() + key.end("vals"), *label_span)
        candidates.append(_Candidate(numbers, kind, label, max(line, 0), span))
    # an object opened after the last complete one was cut off by the token limit
    tally.add(TRUNCATED, text.count("{", covered_until))
    return candidates


def _to_quad(numbers: list[float], kind: str) -> list[float]:
    if kind == "quad":
        return numbers[:8]
    if kind == "hbb":
        x1, y1, x2, y2 = numbers[:4]
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
        return [x1, y1, x2, y1, x2, y2, x1, y2]
    cx, cy, w, h, angle = numbers[:5]
    a = math.radians(angle)
    ux, uy = math.cos(a) * w / 2, math.sin(a) * w / 2  # along the width side
    vx, vy = -math.sin(a) * h / 2, math.cos(a) * h / 2  # along the height side
    return [
        cx - ux - vx, cy - uy - vy,
        cx + ux - vx, cy + uy - vy,
        cx + ux + vx, cy + uy + vy,
        cx - ux + vx, cy - uy + vy,
    ]


def _empty(tally: _Tally, said_none: bool) -> ParsedDetections:
    return ParsedDetections(np.zeros((0, 8)), [], 0, tally.counts, said_none, 0)


def parse_detections(
    text: str,
    classes: Iterable[str] = DOTA_CLASSES,
    form: str = "quad",
    input_wh: tuple[int, int] | None = None,
) -> ParsedDetections:
    """Detections in one model answer, in model-input pixels; never raises on a string."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    matcher = _LabelMatcher(classes)
    tally = _Tally()
    saw_none = False
    if "{" in text:
        candidates = _json_candidates(text, tally)
        saw_none = not candidates and _NONE_RE.search(text) is not None
    else:
        candidates, saw_none = _plain_candidates(text, form, tally, matcher)

    quads: list[list[float]] = []
    labels: list[str] = []
    origins: list[_Candidate] = []
    for cand in candidates:
        if len(cand.numbers) < _NEEDED[cand.kind]:
            tally.add(TOO_FEW)
            continue
        if not all(abs(v) <= MAX_COORDINATE for v in cand.numbers[: _NEEDED[cand.kind]]):
            tally.add(MALFORMED)  # not a pixel coordinate (and would overflow the geometry)
            continue
        if not cand.label:
            tally.add(MISSING_LABEL)
            continue
        label = matcher.resolve(cand.label)
        if label is None:
            tally.add(UNKNOWN_LABEL)
            continue
        quads.append(_to_quad(cand.numbers, cand.kind))
        labels.append(label)
        origins.append(cand)
    if not quads:
        return _empty(tally, saw_none)

    arr = np.asarray(quads, dtype=np.float64)
    keep = np.ones(len(arr), dtype=bool)
    clipped = np.zeros(len(arr), dtype=bool)
    if input_wh is not None:
        in_w, in_h = float(input_wh[0]), float(input_wh[1])
        xs, ys = arr[:, 0::2], arr[:, 1::2]
        with np.errstate(invalid="ignore"):
            outside = (xs.max(1) <= 0) | (xs.min(1) >= in_w) | (ys.max(1) <= 0) | (ys.min(1) >= in_h)
        tally.add(OUTSIDE, int((outside & keep).sum()))
        keep &= ~outside
        clamped = arr.copy()
        clamped[:, 0::2] = np.clip(xs, 0.0, in_w)
        clamped[:, 1::2] = np.clip(ys, 0.0, in_h)
        clipped = keep & np.any(clamped != arr, axis=1)
        arr = clamped

    arr[~keep] = 0.0  # placeholders keep the arrays aligned; they are dropped below
    arr = order_quads(arr)
    pts = arr.reshape(-1, 4, 2)
    same = np.all(pts[:, :, None, :] == pts[:, None, :, :], axis=-1)
    repeated = same.sum(axis=(1, 2)) > 4
    degenerate = keep & (repeated | (np.abs(signed_areas(arr)) < MIN_AREA))
    tally.add(DEGENERATE, int(degenerate.sum()))
    keep &= ~degenerate

    if keep.any():
        valid = np.zeros(len(arr), dtype=bool)
        valid[keep] = shapely.is_valid(quads_to_polygons(arr[keep]))
        tally.add(INVALID, int((keep & ~valid).sum()))
        keep &= valid

    seen_keys: set[tuple] = set()
    for k in np.flatnonzero(keep):
        key = (labels[k], *arr[k].tolist())
        if key in seen_keys:
            keep[k] = False
            tally.add(DUPLICATE)
        seen_keys.add(key)

    index = np.flatnonzero(keep)
    return ParsedDetections(
        quads=arr[index],
        labels=[labels[k] for k in index],
        kept=len(index),
        dropped=tally.counts,
        said_none=saw_none and len(index) == 0,
        clipped=int(clipped[index].sum()),
        lines=[origins[k].line for k in index],
        spans=[origins[k].span for k in index],
    )
