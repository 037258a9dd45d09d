"""Prompts and answer parsing for RSCoVLM's single-image tasks beyond detection.

Zoom-in Chain (UHR question answering), visual grounding, captioning and scene
classification. The strings are the ones the released weights were trained or evaluated
with (see docs/rscovlm-interface.md); paraphrasing them costs accuracy, so they live here
as constants and the pipeline never spells a prompt itself.

The zoom tool is declared the way Qwen2.5's chat template renders ``tools=[...]``, but
baked into the system prompt as plain text: Qwen2.5-VL's own chat template ignores
``tools``, and the authors trained with exactly this text as the whole system message
(no "You are a helpful assistant." before it)::

    # Tools
    <blank>
    You may call one or more functions to assist with the user query.
    <blank>
    You are provided with function signatures within <tools></tools> XML tags:
    <tools>
    {"type": "function", "function": {"name": "image_zoom_in", ...}}   (json.dumps, one line)
    </tools>
    <blank>
    For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

Note the tool's ``parameters`` object is not a JSON schema (it names the single parameter
directly): that is how the model saw it, so it stays that way.

Parsers here never raise: a language model's output is data, and malformed data gives
``None``, not a traceback.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from rscovlm.errors import UserError

__all__ = [
    "Box",
    "ZOOM_TOOL_NAME",
    "ZOOM_TOOL",
    "ZOOM_SYSTEM_PROMPT",
    "ZOOM_INSTRUCTION",
    "ZOOM_FOLLOWUP_TEXT",
    "zoom_user_text",
    "zoom_call_text",
    "looks_like_tool_call",
    "parse_zoom_call",
    "GROUNDING_SYSTEM_PROMPT",
    "GROUNDING_USER_PLAIN",
    "GROUNDING_USER_JSON",
    "grounding_prompt",
    "parse_grounding",
    "CAPTION_PROMPT",
    "classification_prompt",
    "match_class",
]

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 with x1 <= x2, y1 <= y2

# --------------------------------------------------------------------------- zoom-in chain

ZOOM_TOOL_NAME = "image_zoom_in"

ZOOM_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": ZOOM_TOOL_NAME,
        "description": (
            "Zoom in to the region of interest on the given image. Input the bounding box of the "
            "region of interest and return the zoomed-in image to help to focus and view more clearly."
        ),
        "parameters": {
            "name": "bbox",
            "type": "list[int]",
            "description": (
                "The bounding box of the region of interest as an array [x1, y1, x2, y2], where "
                "(x1, y1) and (x2, y2) indicate the positions' absolute coordinates of the left top "
                "and right down corners, respectively."
            ),
            "required": True,
        },
    },
}

_TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)

# json.dumps with default separators is what Qwen's template ``tojson`` produces.
ZOOM_SYSTEM_PROMPT = _TOOLS_HEADER + "\n" + json.dumps(ZOOM_TOOL, ensure_ascii=False) + _TOOLS_FOOTER

ZOOM_INSTRUCTION = "Zoom in to the region of interest and answer the question."
ZOOM_FOLLOWUP_TEXT = "Here's the zoomed-in image. You can complete your task now."


def zoom_user_text(question: str) -> str:
    """First-turn user text: the question, a newline, the zoom instruction (as trained)."""
    return f"{question}\n{ZOOM_INSTRUCTION}"


def zoom_call_text(box: Sequence[float]) -> str:
    """The assistant's tool call exactly as in training (integer model-input pixels)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    arguments = {"bbox": [x1, y1, x2, y2]}
    return "<tool_call>\n" + json.dumps({"name": ZOOM_TOOL_NAME, "arguments": arguments}) + "\n</tool_call>"


_TOOL_HINT = re.compile(r"tool_call|image_zoom_in|bbox", re.IGNORECASE)


def looks_like_tool_call(text: Any) -> bool:
    """Whether the model tried to call the tool (so its text is not an answer by itself)."""
    return isinstance(text, str) and bool(_TOOL_HINT.search(text))


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_BBOX_KEY_LIST = re.compile(r"bbox(?:_2d)?['\"]?\s*[:=]\s*['\"]?\s*[\[\(]([^\]\)]*)", re.IGNORECASE)
# A bbox list that never closes was cut off by the token limit: its last number may be cut too.
_UNCLOSED_BBOX = re.compile(r"bbox(?:_2d)?['\"]?\s*:\s*['\"]?\s*\[[^\]]*$", re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_MAX_PARSE_CHARS = 20_000  # a tool call is ~100 characters; longer text is not worth literal_eval


def _tool_call_segment(text: str) -> str:
    """The text inside the first <tool_call> (to </tool_call> or the end), else all of it."""
    start = text.find("<tool_call>")
    if start < 0:
        return text
    rest = text[start + len("<tool_call>"):]
    end = rest.find("</tool_call>")
    return rest if end < 0 else rest[:end]


def _close_brackets(candidate: str) -> str:
    """Append the closers a truncated JSON object is missing (outside strings)."""
    stack: list[str] = []
    in_string: str | None = None
    escaped = False
    for ch in candidate:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_string:
                in_string = None
        elif ch in "\"'":
            in_string = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack and stack[-1] == ch:
            stack.pop()
    return candidate + (in_string or "") + "".join(reversed(stack))


def _load_object(candidate: str) -> Any:
    """JSON, then repaired JSON, then a Python literal; ``None`` when nothing reads."""
    attempts = [candidate]
    repaired = _TRAILING_COMMA.sub(r"\1", candidate)
    attempts.append(repaired)
    attempts.append(_close_brackets(repaired))
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
    pythonish = re.sub(r"\btrue\b", "True", _close_brackets(candidate))
    pythonish = re.sub(r"\bfalse\b", "False", pythonish)
    pythonish = re.sub(r"\bnull\b", "None", pythonish)
    try:
        return ast.literal_eval(pythonish)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _objects(segment: str, limit: int = 16):
    """Parsed values starting at each of the first ``limit`` '{' of the segment."""
    for count, match in enumerate(re.finditer(r"\{", segment)):
        if count >= limit:
            return
        candidate = segment[match.start():]
        last = candidate.rfind("}")
        pieces = ([candidate[: last + 1]] if last >= 0 else []) + [candidate]
        for piece in pieces:
            value = _load_object(piece)
            if value is not None:
                yield value
                break


def _bbox_from(value: Any, depth: int = 0) -> Any:
    """The bbox value inside a parsed tool call, wherever the model put it."""
    if depth > 4:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith(("{", "[")):
            return _bbox_from(_load_object(stripped), depth + 1)
        return None
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return None
    for key in ("bbox", "bbox_2d", "box", "bounding_box"):
        if key in value:
            return value[key]
    for key in ("arguments", "parameters", "args", "input"):
        if key in value:
            inner = _bbox_from(value[key], depth + 1)
            if inner is not None:
                return inner
    return None


def _coerce_box(raw: Any) -> Box | None:
    """Four finite numbers as a normalised box; strings and nested pairs are accepted."""
    if isinstance(raw, str):
        values: list[Any] = _NUMBER_RE.findall(raw)
    elif isinstance(raw, (list, tuple)):
        values = []
        for item in raw:
            if isinstance(item, (list, tuple)):
                values.extend(item)
            else:
                values.append(item)
    else:
        return None
    if len(values) != 4:
        return None
    numbers = []
    for item in values:
        if isinstance(item, bool):
            return None
        if isinstance(item, str):
            match = _NUMBER_RE.search(item)
            if match is None:
                return None
            item = match.group(0)
        try:
            number = float(item)
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(number):
            return None
        numbers.append(number)
    x1, y1, x2, y2 = numbers
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def parse_zoom_call(text: Any) -> Box | None:
    """``(x1, y1, x2, y2)`` in model-input pixels from an ``image_zoom_in`` call, or ``None``.

    Tolerates what models actually emit: a missing ``</tool_call>``, single quotes,
    trailing commas, numbers as strings, text around the call, swapped corners (sorted
    here), a ``bbox_2d`` key, and ``arguments`` given as a JSON string. A bbox list cut
    off before its ``]`` is refused (its last number may be cut too). Boxes are not
    clamped: only the caller knows the image size. Never raises.
    """
    try:
        if not isinstance(text, str) or not text.strip():
            return None
        segment = _tool_call_segment(text[:_MAX_PARSE_CHARS])
        if _UNCLOSED_BBOX.search(segment):
            return None
        for value in _objects(segment):
            box = _coerce_box(_bbox_from(value))
            if box is not None:
                return box
        match = _BBOX_KEY_LIST.search(segment)
        if match is not None:
            return _coerce_box(match.group(1))
        return None
    except Exception:  # noqa: BLE001 - model output is untrusted data; never crash on it
        return None


# --------------------------------------------------------------------------- grounding

GROUNDING_SYSTEM_PROMPT = (
    "As an AI assistant, you specialize in accurate image object detection, delivering "
    "coordinates in plain text format 'x1,y1,x2,y2 object'."
)
GROUNDING_USER_PLAIN = "find the {description}"
GROUNDING_USER_JSON = "Locate the {description}, output the bbox coordinates using JSON format"
GROUNDING_FORMS = ("plain", "json")


def _clean_phrase(text: Any, what: str) -> str:
    phrase = " ".join(str(text or "").split())
    if not phrase:
        raise UserError(f"The {what} is empty; type a few words, e.g. 'the white ship near the pier'.")
    return phrase


def grounding_prompt(description: str, form: str = "plain") -> tuple[str | None, str]:
    """``(system, user)`` for grounding a description; the JSON form has no system prompt."""
    phrase = _clean_phrase(description, "description of what to find")
    if form == "plain":
        return GROUNDING_SYSTEM_PROMPT, GROUNDING_USER_PLAIN.format(description=phrase)
    if form == "json":
        return None, GROUNDING_USER_JSON.format(description=phrase)
    raise UserError(f"Unknown grounding form {form!r}; use 'plain' or 'json'.")


_PLAIN_BOX_LINE = re.compile(
    rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})(?![\d.,])", re.MULTILINE
)
_PAIR_BOX = re.compile(
    rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)"
)


def parse_grounding(text: Any) -> Box | None:
    """The first box of a grounding answer in model-input pixels, or ``None``; never raises.

    Reads both trained forms: plain ``x1,y1,x2,y2 description`` lines and the fenced JSON
    list of ``{"bbox_2d": [...], "label": ...}``; also Qwen's native ``(x1,y1),(x2,y2)``.
    """
    try:
        if not isinstance(text, str) or not text.strip():
            return None
        text = text[:_MAX_PARSE_CHARS]
        if "bbox" in text.lower():
            stripped = re.sub(r"```(?:json)?", "", text)
            start = min((i for i in (stripped.find("["), stripped.find("{")) if i >= 0), default=-1)
            if start >= 0:
                value = _load_object(stripped[start:].strip())
                items = value if isinstance(value, list) else [value]
                for item in items:
                    box = _coerce_box(_bbox_from(item))
                    if box is not None:
                        return box
            match = _BBOX_KEY_LIST.search(text)
            if match is not None:
                box = _coerce_box(match.group(1))
                if box is not None:
                    return box
        match = _PLAIN_BOX_LINE.search(text)
        if match is not None:
            return _coerce_box(list(match.groups()))
        match = _PAIR_BOX.search(text)
        if match is not None:
            return _coerce_box(list(match.groups()))
        return None
    except Exception:  # noqa: BLE001 - model output is untrusted data
        return None


# --------------------------------------------------------------------------- caption, classes

CAPTION_PROMPT = "Describe the image"  # the authors' captioning evaluation prompt, verbatim

_CLASSIFY_PREFIX = "Classify the image within one of the given classes:"


def _check_class_list(classes: Iterable[str] | str) -> list[str]:
    if isinstance(classes, str):
        classes = classes.split(",")
    names: list[str] = []
    for name in classes:
        clean = " ".join(str(name).split())
        if clean and clean not in names:
            names.append(clean)
    if len(names) < 2:
        raise UserError(
            "Scene classification needs at least two classes to choose from; give a list such "
            "as 'farmland, forest, residential, industrial'."
        )
    for name in names:
        if any(ch in name for ch in ",\n\r") or len(name) > 64:
            raise UserError(f"The class name {name!r} cannot be used in a prompt; use a short name without commas.")
    return names


def classification_prompt(classes: Iterable[str] | str) -> str:
    """The scene-classification question as the authors evaluated it: classes joined by ','."""
    names = _check_class_list(classes)
    return _CLASSIFY_PREFIX + ",".join(names) + "."


def _squash(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def match_class(answer: Any, classes: Iterable[str] | str) -> tuple[str | None, float]:
    """The class the answer names, and how sure the match is (1.0 exact .. 0.0 none).

    Exact (case/punctuation-insensitive) first, then a class named inside the answer
    (longest first, so 'dense residential' beats 'residential'), then difflib's closest.
    Never raises; an empty answer gives ``(None, 0.0)``.
    """
    try:
        names = _check_class_list(classes)
    except UserError:
        return None, 0.0
    said = _squash(answer) if isinstance(answer, str) else ""
    if not said:
        return None, 0.0
    squashed = {_squash(name): name for name in names}
    if said in squashed:
        return squashed[said], 1.0
    for key in sorted(squashed, key=len, reverse=True):
        if key and re.search(rf"\b{re.escape(key)}\b", said):
            return squashed[key], 0.9
    scores = {key: difflib.SequenceMatcher(None, said, key).ratio() for key in squashed}
    best = max(scores, key=lambda key: (scores[key], -names.index(squashed[key])))
    return squashed[best], round(scores[best], 3)
