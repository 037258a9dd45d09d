"""The one interface every model engine offers, and helpers engines share.

Pipelines only ever call ``generate`` and ``describe``: whether the model runs in this
process on a GPU, on a CPU, or behind a vLLM server is the engine's business.

A conversation is a list of Hugging Face chat messages. ``content`` is a string or a list
of parts: ``{"type": "text", "text": ...}`` or ``{"type": "image", "image": PIL.Image}``,
the image already resized by the pipeline to the model-input size (multiples of 28).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
Conversation = list[Message]
ShouldCancel = Callable[[], bool]
#: Asked by an engine that could pause long answers: is other work waiting for room?
WorkWaiting = Callable[[], bool]


@dataclass(frozen=True)
class Answer:
    """One generated answer and how it ended.

    ``finished`` is False when generation stopped at the token budget (OpenAI's
    ``finish_reason == "length"``, no EOS token for transformers) or was cancelled: the
    text may be cut mid-line and must not be taken as the whole answer.
    """

    text: str
    finished: bool = True
    tokens: int | None = None  # new tokens generated, when the engine knows
    #: (token text, log-probability) of each generated token, end-of-answer token included,
    #: when the engine gives them: what a confidence score per object is made from.
    logprobs: tuple[tuple[str, float], ...] | None = None
    #: Set only when the engine paused the answer to make room for waiting work (it did
    #: not end and has budget left): the token ids so far, to continue it with ``resume``.
    resume_ids: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def paused(self) -> bool:
        return self.resume_ids is not None


@runtime_checkable
class Engine(Protocol):
    """A loaded model that answers conversations greedily (deterministic answers).

    ``batch_size`` conversations go into one ``generate`` call, and up to
    ``concurrency`` calls may run at once from different threads: a model in this
    process wants one call at a time with a batch; a server with continuous batching
    wants many single requests in flight.
    """

    batch_size: int
    concurrency: int
    pixel_bounds: tuple[int, int]  # (min_pixels, max_pixels) of a model input image
    max_new_tokens_limit: int | None  # the most new tokens the model's context allows

    def generate(
        self,
        conversations: list[Conversation],
        max_new_tokens: int = 1024,
        should_cancel: ShouldCancel | None = None,
        *,
        resume: list[Answer | None] | None = None,
        work_waiting: WorkWaiting | None = None,
    ) -> list[Answer]:
        """One answer per conversation, in order: only the new text, special tokens removed.

        When ``should_cancel()`` turns true the engine stops as soon as it can and
        raises :class:`rscovlm.errors.CancelledError`. An engine that batches rows in
        lockstep may, when ``work_waiting()`` is true, return some answers paused
        (:attr:`Answer.paused`); the caller continues each by passing it back in
        ``resume`` (one entry per conversation, None for a fresh one). Engines that never
        pause ignore ``work_waiting`` and refuse ``resume`` (:func:`refuse_resume`).
        """
        ...

    def describe(self) -> dict:
        """What is running: model, adapter, device, GPU name/memory, dtype, quantization, attention."""
        ...


def description(engine: Any, engine_kind: str, **fields: Any) -> dict:
    """``describe()``'s answer: every key present (None when it does not apply), the
    protocol's attributes read from the engine, ``fields`` for the rest."""
    info: dict[str, Any] = {
        "engine": engine_kind, "model": None, "adapter": None, "device": None, "gpu": None,
        "dtype": None, "quantization": None, "attention": None, "note": None,
        "batch_size": engine.batch_size, "concurrency": engine.concurrency,
        "pixel_bounds": list(engine.pixel_bounds), "max_new_tokens_limit": engine.max_new_tokens_limit,
    }
    info.update(fields)
    return info


def refuse_resume(resume: list[Answer | None] | None) -> None:
    """For engines that never pause an answer, so have none to continue."""
    if resume is not None and any(answer is not None for answer in resume):
        raise ValueError("this engine never pauses an answer, so it cannot continue one")


def image_to_data_url(image: Any) -> str:
    """A PIL image as a lossless ``data:image/png;base64,...`` URL.

    PNG, not JPEG: the server must see the exact pixels the pipeline prepared, or a remote
    engine's answers would differ from a local engine's on the same tile.
    """
    buffer = io.BytesIO()
    # Level 1: 6 ms for a 252 px tile against 37 ms at PIL's default 6, for 8 % more bytes;
    # at the default, encoding on the client held back a vLLM server (bench_vllm.py).
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def conversation_images(conversation: Conversation) -> list[Any]:
    """The PIL images in a conversation, in order of appearance."""
    images = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            images.extend(part["image"] for part in content if part.get("type") == "image" and "image" in part)
    return images


def chunks(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive lists of at most ``size``."""
    size = max(1, int(size))
    return [items[start:start + size] for start in range(0, len(items), size)]
