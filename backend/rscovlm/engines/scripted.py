"""A model-free engine that answers from a script: for tests, benchmarks and a server without weights.

:class:`ScriptedEngine` implements :class:`rscovlm.engines.base.Engine` exactly, so a
pipeline cannot tell it from a model: it answers each conversation from a function, a
list or a constant, cuts each answer at ``max_new_tokens`` as a model would (with
``finished=False``), can take time (a fixed delay, or one that grows with the answer's
length, so a benchmark sees the stragglers of real batches), stops with
:class:`~rscovlm.errors.CancelledError` when asked to, and records every request it got
(image sizes, tile windows, the conversation) behind a lock, so tests can count them.

:func:`truth_answerer` (``ScriptedEngine.from_truth``) is an oracle: it answers each tile
from a scene's ground-truth vector file in the model's exact plain-text answer format.
:meth:`ScriptedEngine.for_serving` builds the engine of ``rscovlm serve`` without a model.

Token counting (:func:`estimate_tokens`) is a deterministic estimate close to Qwen2.5's
tokenizer on detection answers, whose pre-tokenizer splits every digit on its own:

- each digit is one token;
- each run of letters is one token with the space before it (`` storage``), plus one
  token per further 8 letters (long words split);
- each CJK character is one token;
- ``<tool_call>`` and ``</tool_call>`` are one token each (special tokens in Qwen2.5);
- each newline is one token, each other run of spaces is one token, and every other
  character (``,`` ``.`` ``{`` ``"``…) is one token.

So ``123,45,130,50,128,60,121,55 storage tank`` plus its newline costs 30 tokens, and a
line of eight 3-digit numbers 34: about the 32 per line the paper's budget implies. A
generation also ends with an end-of-text token, so an answer of ``n`` tokens is
``finished`` only when ``n < max_new_tokens``; otherwise its first ``max_new_tokens``
tokens come back (cut mid-line, mid-number even) with ``finished=False``, as from a
model that ran out of budget.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CancelledError, UserError
from ..formats.prompts import NONE_ANSWER
from ..model_input import MAX_PIXELS, MIN_PIXELS
from .base import Answer, Conversation, ShouldCancel, WorkWaiting, conversation_images, description, refuse_resume

__all__ = [
    "ScriptedEngine",
    "ScriptedRequest",
    "estimate_tokens",
    "token_pieces",
    "cut_at_tokens",
    "truth_answerer",
    "responses_answerer",
]

Answerer = Callable[[Conversation], str]
Delay = float | Callable[[Answer], float]


_WORD_PIECE = 8
_TOKEN = re.compile(
    r"</?tool_call>"
    r"|\d"
    r"|[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]"
    r"| ?[^\W\d_\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
    r"|\n"
    r"|[^\S\n]+"
    r"|.",
    re.DOTALL,
)


def token_pieces(text: str) -> list[str]:
    """``text`` cut into estimated tokens; ``"".join(token_pieces(t)) == t`` always."""
    pieces: list[str] = []
    for match in _TOKEN.finditer(text):
        piece = match.group()
        letters = len(piece) - piece.startswith(" ")
        if letters > _WORD_PIECE and piece.strip().isalpha():
            head = len(piece) - letters + _WORD_PIECE
            pieces.append(piece[:head])
            pieces.extend(piece[k:k + _WORD_PIECE] for k in range(head, len(piece), _WORD_PIECE))
        else:
            pieces.append(piece)
    return pieces


def estimate_tokens(text: str) -> int:
    """How many tokens a Qwen2.5 model spends writing ``text`` (see the module's rule)."""
    return len(token_pieces(text))


def cut_at_tokens(text: str, max_new_tokens: int) -> Answer:
    """The answer a model with a budget of ``max_new_tokens`` new tokens gives for ``text``.

    Generation ends with an end-of-text token, which also counts against the budget: an
    answer of ``n`` tokens is finished when ``n < max_new_tokens``, else cut after
    ``max_new_tokens`` tokens with ``finished=False``.
    """
    budget = max(0, int(max_new_tokens))
    pieces = token_pieces(text)
    if len(pieces) < budget:
        return Answer(text=text, finished=True, tokens=len(pieces) + 1)  # + the end-of-text token
    return Answer(text="".join(pieces[:budget]), finished=False, tokens=budget)


@dataclass(frozen=True)
class ScriptedRequest:
    """One conversation the engine answered, and what it answered."""

    index: int                               # 0, 1, 2… over the engine's life
    call: int                                # which generate() call brought it
    image_sizes: tuple[tuple[int, int], ...]  # (width, height) of each image: the model input
    windows: tuple[tuple[int, int, int, int] | None, ...]  # image.info["window"] of each image
    max_new_tokens: int
    conversation: Conversation | None = field(repr=False, compare=False)  # a shallow copy; None unless kept
    answer: Answer | None = field(default=None, compare=False)  # None: cancelled, or the script failed


class ScriptedEngine:
    """An :class:`~rscovlm.engines.base.Engine` that answers from a script.

    ``answers`` is one of:

    - a function ``conversation -> str``, called for every conversation;
    - a list, consumed in request order: each item is a string or such a function;
      once it runs out, ``after`` answers (a string or a function, default ``""``);
    - a string: the same answer every time.

    ``delay`` is seconds per answer (a number, or a function of the :class:`Answer`),
    ``seconds_per_token`` adds time per generated token; a ``generate`` call sleeps for
    the longest of its answers (a batch lasts as long as its longest answer) and checks
    ``should_cancel`` every 10 ms meanwhile. ``batch_size``, ``concurrency``,
    ``pixel_bounds`` and ``max_new_tokens_limit`` are the protocol's attributes; a
    ``max_new_tokens`` above ``max_new_tokens_limit`` is lowered to it.

    What it was asked is in :attr:`requests` (:class:`ScriptedRequest`, in the order
    the answers came back; ``index`` is the order they came in; a cancelled call's
    requests have ``answer=None``), :attr:`conversations`,
    :attr:`request_count` and :attr:`calls`; :attr:`peak_in_flight` is the most
    ``generate`` calls that ran at once. All are safe to read from other threads.
    ``keep_conversations=False`` keeps only the metadata (a conversation holds its
    images: a benchmark over thousands of tiles must not keep them), and
    ``max_records`` keeps only the latest records (a long-running server); the counters
    count everything.
    """

    def __init__(
        self,
        answers: str | Sequence[str | Answerer] | Answerer = NONE_ANSWER,
        *,
        after: str | Answerer = "",
        delay: Delay = 0.0,
        seconds_per_token: float = 0.0,
        batch_size: int = 8,
        concurrency: int = 1,
        pixel_bounds: tuple[int, int] = (MIN_PIXELS, MAX_PIXELS),
        max_new_tokens_limit: int | None = None,
        name: str = "scripted",
        keep_conversations: bool = True,
        max_records: int | None = None,
    ) -> None:
        if isinstance(answers, str):
            constant = answers
            self._answer_for: Answerer | None = lambda _conversation: constant
            self._script: list[str | Answerer] | None = None
        elif callable(answers):
            self._answer_for, self._script = answers, None
        else:
            self._answer_for, self._script = None, list(answers)
        self._after = after
        self.delay = delay
        self.seconds_per_token = float(seconds_per_token)
        self.batch_size = max(1, int(batch_size))
        self.concurrency = max(1, int(concurrency))
        self.pixel_bounds = (int(pixel_bounds[0]), int(pixel_bounds[1]))
        self.max_new_tokens_limit = max_new_tokens_limit
        self.name = name
        self._lock = threading.Lock()
        self.keep_conversations = bool(keep_conversations)
        self._requests: deque[ScriptedRequest] = deque(maxlen=max_records)
        self._count = 0
        self._calls = 0
        self._in_flight = 0
        self._peak_in_flight = 0

    # -- the Engine protocol ---------------------------------------------------------------

    def generate(
        self,
        conversations: list[Conversation],
        max_new_tokens: int = 1024,
        should_cancel: ShouldCancel | None = None,
        *,
        resume: list[Answer | None] | None = None,
        work_waiting: WorkWaiting | None = None,
    ) -> list[Answer]:
        """One :class:`Answer` per conversation, cut at the token budget; see the class."""
        refuse_resume(resume)  # answers are never paused
        if should_cancel is not None and should_cancel():
            raise CancelledError("generation cancelled")
        budget = int(max_new_tokens)
        if self.max_new_tokens_limit is not None:
            budget = min(budget, int(self.max_new_tokens_limit))
        with self._lock:
            self._calls += 1
            call = self._calls - 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            first = self._count
            self._count += len(conversations)  # a batch takes consecutive script items
        answers: list[Answer] = []
        came_back = False
        try:
            for offset, conversation in enumerate(conversations):
                answers.append(cut_at_tokens(str(self._text_for(first + offset, conversation)), budget))
            self._wait(answers, should_cancel)
            came_back = True
            return answers
        finally:
            with self._lock:
                self._in_flight -= 1
            # Recorded when the answers come back (so a record's place is the order answers
            # returned); a cancelled or failed call is recorded without its answers.
            for offset, conversation in enumerate(conversations):
                answer = answers[offset] if came_back else None
                self._record(first + offset, call, budget, conversation, answer)

    def describe(self) -> dict:
        return description(self, "scripted", model=self.name, device="none",
                           note="answers come from a script, not from a model")

    # -- what it was asked -----------------------------------------------------------------

    @property
    def requests(self) -> list[ScriptedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Conversations answered so far (all of them, also those no longer in :attr:`requests`)."""
        with self._lock:
            return self._count

    @property
    def conversations(self) -> list[Conversation]:
        """The conversations answered (shallow copies), when ``keep_conversations``."""
        return [request.conversation for request in self.requests if request.conversation is not None]

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak_in_flight

    # -- constructors ----------------------------------------------------------------------

    @classmethod
    def from_truth(
        cls,
        truth_path: str | Path,
        raster_path: str | Path,
        *,
        classes: Sequence[str] | None = None,
        class_field: str = "class",
        form: str = "quad",
        **options: Any,
    ) -> ScriptedEngine:
        """An oracle engine answering every tile from the ground truth (:func:`truth_answerer`)."""
        answerer = truth_answerer(truth_path, raster_path, classes=classes, class_field=class_field, form=form)
        options.setdefault("name", f"truth oracle ({Path(truth_path).name})")
        return cls(answerer, **options)

    @classmethod
    def for_serving(cls, spec: str | Path, **options: Any) -> ScriptedEngine:
        """The engine of a model-free ``rscovlm serve --scripted-answers SPEC``.

        ``SPEC`` is ``none`` (every tile: ``There are none.``, every question: the same), a
        responses file of an earlier run (``*.jsonl`` from ``--responses-out``: each tile is
        answered with the recorded answer of the tile with the same window, others with
        ``There are none.``), or any other text file, whose whole content is the answer
        to everything. A missing or unreadable file is a :class:`UserError`.
        """
        text = str(spec)
        options.setdefault("keep_conversations", False)
        options.setdefault("max_records", 1000)
        if text.strip().lower() == "none":
            options.setdefault("name", "scripted: There are none.")
            return cls(NONE_ANSWER, **options)
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(
                f"The scripted answers file {path} does not exist; give a responses file "
                "(.jsonl from --responses-out), a text file, or 'none'."
            )
        options.setdefault("name", f"scripted: {path.name}")
        if path.suffix.lower() == ".jsonl":
            return cls(responses_answerer(path), **options)
        try:
            answer = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"Cannot read the scripted answers file {path}: {exc}.") from exc
        return cls(answer, **options)

    # -- inside ----------------------------------------------------------------------------

    def _record(self, index: int, call: int, budget: int, conversation: Conversation, answer: Answer | None) -> None:
        images = conversation_images(conversation)
        request = ScriptedRequest(
            index=index, call=call, image_sizes=tuple(tuple(int(v) for v in image.size) for image in images),
            windows=tuple(_window_of(image) for image in images), max_new_tokens=budget,
            conversation=list(conversation) if self.keep_conversations else None, answer=answer,
        )
        with self._lock:
            self._requests.append(request)

    def _text_for(self, index: int, conversation: Conversation) -> str:
        if self._answer_for is not None:
            return self._answer_for(conversation)
        script = self._script or []
        item = script[index] if index < len(script) else self._after
        return item(conversation) if callable(item) else item

    def _wait(self, answers: list[Answer], should_cancel: ShouldCancel | None) -> None:
        seconds = 0.0
        for answer in answers:
            base = self.delay(answer) if callable(self.delay) else float(self.delay)
            seconds = max(seconds, base + self.seconds_per_token * (answer.tokens or 0))
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        while True:
            if should_cancel is not None and should_cancel():
                raise CancelledError("generation cancelled")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))


def _window_of(image: Any) -> tuple[int, int, int, int] | None:
    window = getattr(image, "info", {}).get("window")
    if window is None:
        return None
    if hasattr(window, "as_tuple"):
        window = window.as_tuple()
    return tuple(int(v) for v in window)


def _tile_of(conversation: Conversation) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The last image's raster window and model-input size ``(width, height)``."""
    images = conversation_images(conversation)
    if not images:
        raise ValueError("the conversation holds no image to answer about")
    image = images[-1]
    window = _window_of(image)
    if window is None:
        raise ValueError(
            'the image carries no image.info["window"] (col_off, row_off, width, height): '
            "the pipeline must say which part of the raster it shows"
        )
    return window, (int(image.size[0]), int(image.size[1]))


_FIND = re.compile(r"(?:find the|category set includes) (.+?)\.?\s*$", re.IGNORECASE | re.DOTALL)


def _prompt_classes(conversation: Conversation) -> list[str] | None:
    """The classes the user prompt asks for (``find the a, b, c.``, or the JSON prompt's), or None."""
    for message in reversed(conversation):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            part.get("text", "") for part in content or [] if part.get("type") == "text"
        ]
        match = _FIND.search(" ".join(texts).strip())
        if match:
            return [c.strip() for c in match.group(1).split(",") if c.strip()]
        return None
    return None


def truth_answerer(
    truth_path: str | Path,
    raster_path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    class_field: str = "class",
    form: str = "quad",
) -> Answerer:
    """A function answering a detection conversation from the ground truth, as a perfect model.

    The truth polygons (in the raster's CRS; reprojected when the file has another) are
    mapped to raster pixels with the raster's geotransform. A tile is told by its image:
    ``image.info["window"]`` is ``(col_off, row_off, width, height)`` in raster pixels
    and ``image.size`` the model input. An object is in a tile when its centre (the mean
    of its four vertices) lies inside the window (``col_off <= x < col_off + width``,
    same for y): each object then belongs to every tile that shows its centre, whole,
    with coordinates that may reach past the tile's edge, as in the training data.
    Coordinates are model-input pixels, the answer is :func:`format_detection_answer`'s
    (vertices clockwise from the smallest y, lines by class then position,
    ``There are none.`` when empty). Only the classes the prompt asks for are answered
    (``classes`` overrides the prompt); polygons with other than four corners are
    answered by their minimum rotated rectangle.
    """
    import geopandas as gpd
    import rasterio
    import shapely

    from ..formats.prompts import format_detection_answer, normalize_class_name
    from ..georef import map_to_pixel
    from ..model_input import image_to_input
    from ..tiling import Window

    with rasterio.open(raster_path) as src:
        transform = src.transform
        raster_crs = src.crs
    gdf = gpd.read_file(truth_path)
    if class_field not in gdf.columns:
        raise UserError(
            f"{truth_path} has no field {class_field!r} for the class; its fields are "
            f"{', '.join(c for c in gdf.columns if c != 'geometry')}."
        )
    if raster_crs is not None and gdf.crs is not None and not gdf.crs.equals(raster_crs):
        gdf = gdf.to_crs(raster_crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    labels = np.array([normalize_class_name(c) for c in gdf[class_field]], dtype=object)
    quads = np.zeros((len(gdf), 4, 2))
    for k, geom in enumerate(gdf.geometry.values):
        ring = np.asarray(shapely.get_coordinates(geom.exterior if geom.geom_type == "Polygon" else geom))
        if len(ring) == 5 and np.allclose(ring[0], ring[-1]):
            corners = ring[:4]
        else:
            corners = np.asarray(shapely.get_coordinates(geom.minimum_rotated_rectangle))[:4]
        quads[k] = corners
    px = map_to_pixel(quads.reshape(-1, 8), transform).reshape(-1, 4, 2)
    centres = px.mean(axis=1)
    flat = px.reshape(-1, 8)
    wanted = None if classes is None else {normalize_class_name(n) for n in classes}

    def answer(conversation: Conversation) -> str:
        (col, row, width, height), input_wh = _tile_of(conversation)
        inside = (
            (centres[:, 0] >= col) & (centres[:, 0] < col + width)
            & (centres[:, 1] >= row) & (centres[:, 1] < row + height)
        )
        asked = wanted
        if asked is None:
            named = _prompt_classes(conversation)
            asked = None if named is None else {normalize_class_name(n) for n in named}
        if asked is not None:
            inside &= np.isin(labels, list(asked))
        chosen = np.flatnonzero(inside)
        model_px = image_to_input(flat[chosen], input_wh, Window(col, row, width, height))
        return format_detection_answer(model_px, list(labels[chosen]), form=form)

    return answer


def responses_answerer(path: str | Path, default: str = NONE_ANSWER) -> Answerer:
    """Answer each tile with the recorded response of the tile with the same window.

    ``path`` is a responses file (``--responses-out``); tiles it does not hold, and
    conversations without a tile window (questions), get ``default``. Records the
    pipeline split into sub-tiles are skipped: their answers were not used.
    """
    from ..responses import read_responses

    by_window = {
        (r.col_off, r.row_off, r.width, r.height): r.response
        for r in read_responses(path, tolerate_cut_end=True)
        if not r.split
    }

    def answer(conversation: Conversation) -> str:
        images = conversation_images(conversation)
        window = _window_of(images[-1]) if images else None
        return by_window.get(window, default) if window is not None else default

    return answer
