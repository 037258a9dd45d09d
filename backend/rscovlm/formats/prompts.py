"""RSCoVLM's detection prompts and answer format, word for word as the model learned them.

The model was fine-tuned on these exact strings; paraphrasing them costs accuracy, so they
are constants here and nowhere else. Sources: the interface notes in
docs/rscovlm-interface.md and the authors' public training/evaluation code (facts only).

Assumptions, stated so they can be revisited:
- Plain user prompt: the authors' evaluation uses ``find the {categories}.`` (with the full
  stop); their training data used it without. We follow evaluation (and the interface doc).
- Categories are lower-case, hyphens as spaces, joined with ", ", in alphabetical order:
  training always listed its classes sorted, so a subset is listed sorted too.
- JSON form: the authors' evaluation prompt for quadrilaterals (system prompt spelling
  "corrdinates" included, as trained). Its answer is a fenced ``json`` list of
  ``{"quadrant bbox": [8 ints], "label": "..."}`` objects, one per line after a tab.
- Horizontal boxes ("hbb"): the authors' plain-text detection prompt ``'x1,y1,x2,y2 object'``.
- Target answers (for training) end with a newline after the last line, as in training;
  vertices are rounded to whole pixels of the model input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rscovlm.errors import UserError
from rscovlm.geometry import order_quads

__all__ = [
    "DOTA_CLASSES",
    "FORMS",
    "NONE_ANSWER",
    "SYSTEM_PROMPT_QUAD",
    "SYSTEM_PROMPT_HBB",
    "SYSTEM_PROMPT_JSON",
    "USER_PROMPT_PLAIN",
    "USER_PROMPT_JSON",
    "normalize_class_name",
    "categories_text",
    "detection_prompt",
    "messages",
    "format_detection_answer",
]

DOTA_CLASSES: tuple[str, ...] = (
    "baseball diamond",
    "basketball court",
    "bridge",
    "ground track field",
    "harbor",
    "helicopter",
    "large vehicle",
    "plane",
    "roundabout",
    "ship",
    "small vehicle",
    "soccer ball field",
    "storage tank",
    "swimming pool",
    "tennis court",
)

FORMS = ("quad", "json", "hbb")

NONE_ANSWER = "There are none."

SYSTEM_PROMPT_QUAD = (
    "As an AI assistant, you specialize in accurate oriented object detection, delivering "
    "coordinates of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'."
)
SYSTEM_PROMPT_HBB = (
    "As an AI assistant, you specialize in accurate image object detection, delivering "
    "coordinates in plain text format 'x1,y1,x2,y2 object'."
)
SYSTEM_PROMPT_JSON = (
    "You are an AI assistant specializing in oriented object detection. Represent objects "
    "with quadrant bbox: the corrdinates of each vertices of the oriented bounding boxes in "
    "clock-wise order."
)
USER_PROMPT_PLAIN = "find the {categories}."
USER_PROMPT_JSON = (
    "Locate every item from the category list in the image and output the oriented bbox "
    "coordinates in JSON format. The category set includes {categories}."
)

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_class_name(name: Any) -> str:
    """Lower case, hyphens/underscores as spaces, single spaces: how the model writes classes."""
    return _SEPARATORS.sub(" ", str(name)).strip().lower()


def _check_classes(classes: Iterable[str] | str) -> list[str]:
    if isinstance(classes, str):
        classes = [c for c in classes.split(",")]
    names = sorted({normalize_class_name(c) for c in classes} - {""})
    if not names:
        raise UserError("No object classes were given; name at least one class, e.g. 'plane'.")
    for name in names:
        if any(ch in name for ch in ",\n\r.") or len(name) > 64:
            raise UserError(
                f"The class name {name!r} cannot be used in a prompt; use a short name without "
                "commas, full stops or line breaks."
            )
    return names


def categories_text(classes: Iterable[str] | str) -> str:
    """The category list as the model saw it: normalised, sorted, ", "-joined."""
    return ", ".join(_check_classes(classes))


def detection_prompt(classes: Iterable[str] | str = DOTA_CLASSES, form: str = "quad") -> tuple[str, str]:
    """``(system, user)`` prompts for one detection request in ``form`` quad | json | hbb."""
    cats = categories_text(classes)
    if form == "quad":
        return SYSTEM_PROMPT_QUAD, USER_PROMPT_PLAIN.format(categories=cats)
    if form == "hbb":
        return SYSTEM_PROMPT_HBB, USER_PROMPT_PLAIN.format(categories=cats)
    if form == "json":
        return SYSTEM_PROMPT_JSON, USER_PROMPT_JSON.format(categories=cats)
    raise UserError(f"Unknown detection answer form {form!r}; use one of: {', '.join(FORMS)}.")


def messages(system: str | None, user_text: str, image: Any = None) -> list[dict]:
    """Hugging Face chat messages; the image (already resized to the model input) comes first."""
    conversation: list[dict] = []
    if system:
        conversation.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content: list[dict] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": user_text})
    conversation.append({"role": "user", "content": content})
    return conversation


def format_detection_answer(quads, labels: Sequence[str], form: str = "quad") -> str:
    """The answer the model is trained to give for these objects (model-input pixels).

    Vertices are rounded, then ordered clockwise from the smallest y (ties: smallest x);
    lines are grouped by class (alphabetical), then by position (top, then left), as in
    the authors' training data. No objects gives ``There are none.``.
    """
    arr = np.asarray(quads, dtype=np.float64).reshape(-1, 8)
    names = [normalize_class_name(label) for label in labels]
    if len(names) != len(arr):
        raise ValueError(f"{len(arr)} quads but {len(names)} labels")
    if form not in FORMS:
        raise UserError(f"Unknown detection answer form {form!r}; use one of: {', '.join(FORMS)}.")
    if len(arr) == 0:
        return NONE_ANSWER
    ints = order_quads(np.rint(arr)).astype(np.int64)
    xs, ys = ints[:, 0::2], ints[:, 1::2]
    order = sorted(range(len(ints)), key=lambda k: (names[k], ys[k].min(), xs[k].min(), ints[k].tolist()))
    if form == "hbb":
        boxes = [(xs[k].min(), ys[k].min(), xs[k].max(), ys[k].max()) for k in order]
        return "".join(f"{x1},{y1},{x2},{y2} {names[k]}\n" for (x1, y1, x2, y2), k in zip(boxes, order))
    if form == "json":
        items = [json.dumps({"quadrant bbox": ints[k].tolist(), "label": names[k]}) for k in order]
        return "```json\n[\n\t" + ",\n\t".join(items) + "\n]\n```"
    return "".join(",".join(str(v) for v in ints[k]) + f" {names[k]}\n" for k in order)
