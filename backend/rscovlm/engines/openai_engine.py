"""RSCoVLM behind an OpenAI-compatible server (vLLM), for throughput past one local GPU.

A server with continuous batching wants many single requests in flight, so this engine
answers one conversation per ``generate`` call and says it suits ``concurrency`` calls
at once (the pipeline keeps that many going). Each request is streamed
(server-sent events): the answer's ``finish_reason`` arrives with it, and a cancel
closes the connection, which makes vLLM abort the request instead of finishing it.

Exactness: images travel as lossless PNG data URLs at the size the pipeline computed
(multiples of 28 within the model's pixel bounds, so the server's own smart-resize leaves
them as they are), and the first image of each size is checked against the server's
prompt-token count, so a server whose settings would resize tiles again (boxes off by
the ratio) is refused with a sentence. Temperature 0
gives greedy answers. Transient failures (connection resets, 5xx, 429, timeouts) are
retried with exponential backoff before a request counts as failed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import CancelledError, EngineUnavailableError, UserError
from .base import (
    Answer,
    Conversation,
    ShouldCancel,
    WorkWaiting,
    conversation_images,
    description,
    image_to_data_url,
    refuse_resume,
)

log = logging.getLogger(__name__)

#: Requests kept in flight by default: enough for vLLM's continuous batching to fill a
#: GPU with 512 px tiles, small enough to bound the client's memory (a tile is ~0.4 MB).
DEFAULT_CONCURRENCY = 64
#: Qwen2.5-VL turns each 28x28 block of the input image into one token.
IMAGE_TOKEN_AREA = 28 * 28
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def to_openai_messages(conversation: Conversation) -> list[dict]:
    """Hugging Face chat messages -> OpenAI chat messages (image parts become image_url)."""
    converted = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image" or "image" in part:
                    image = part["image"]
                    url = image if isinstance(image, str) else image_to_data_url(image)
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                elif "text" in part:
                    parts.append({"type": "text", "text": part["text"]})
            content = parts
        out = {"role": message["role"], "content": content}
        if message.get("tool_calls"):
            out["tool_calls"] = message["tool_calls"]
        converted.append(out)
    return converted


def local_pixel_bounds(model: str) -> tuple[int, int] | None:
    """The pixel bounds in a local model folder's preprocessor config, if ``model`` is one."""
    from .transformers_engine import checkpoint_pixel_bounds

    folder = Path(model).expanduser()
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return checkpoint_pixel_bounds(config.get("image_processor", config))
    return None


class OpenAIEngine:
    """Client for ``POST {base_url}/chat/completions`` (base_url usually ends in /v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = 4,
        backoff_s: float = 1.0,
        pixel_bounds: tuple[int, int] | None = None,
        check_image_size: bool = True,
    ) -> None:
        import httpx

        from ..model_input import MAX_PIXELS, MIN_PIXELS

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = 1
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s
        self.pixel_bounds = pixel_bounds or local_pixel_bounds(model) or (MIN_PIXELS, MAX_PIXELS)
        self.max_new_tokens_limit: int | None = None  # learnt from /models on first use
        self.device_note: str | None = None  # the server owns the device
        self.check_image_size = check_image_size
        self._checked_sizes: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._limit_known = False
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency),
        )

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
        """One greedy answer per conversation, sent one after another from this thread."""
        refuse_resume(resume)  # answers are never paused: a server batches continuously
        return [self._answer(c, max_new_tokens, should_cancel) for c in conversations]

    def describe(self) -> dict:
        return description(self, "openai", endpoint=self.base_url, model=self.model, device="remote")

    def close(self) -> None:
        self._client.close()

    # -- one request -------------------------------------------------------------------------

    def _answer(self, conversation: Conversation, max_new_tokens: int, should_cancel: ShouldCancel | None) -> Answer:
        """One answer, retried with exponential backoff while the failure is transient."""
        attempt = 0
        while True:
            if should_cancel and should_cancel():
                raise CancelledError("generation cancelled")
            try:
                return self._answer_once(conversation, max_new_tokens, should_cancel)
            except _Transient as exc:
                if attempt >= self.retries:
                    hint = ("start it (e.g. `vllm serve Qingyun/RSCoVLM-7B-2512`) or fix --openai-base-url "
                            "(it usually ends in /v1)") if exc.unreachable else "check that it is running and not overloaded"
                    what = "Could not reach" if exc.unreachable else "Gave up on"
                    raise EngineUnavailableError(
                        f"{what} the model server at {self.base_url} after {attempt + 1} tries ({exc}); {hint}."
                    ) from exc
                delay = self.backoff_s * 2**attempt
                log.warning("model server: %s; retrying in %.1f s (%d of %d)", exc, delay, attempt + 1, self.retries)
                _sleep(delay, should_cancel)
                attempt += 1

    def _answer_once(self, conversation: Conversation, max_new_tokens: int,
                     should_cancel: ShouldCancel | None) -> Answer:
        self._learn_limit()
        images = conversation_images(conversation)
        if self.check_image_size:
            for image in images:
                self._check_size(conversation, image)
        text, finish_reason, usage, logprobs = self._stream_once(
            self._body(conversation, images, max_new_tokens), should_cancel)
        return Answer(text=text, finished=finish_reason == "stop", tokens=usage.get("completion_tokens"),
                      logprobs=logprobs)

    def _body(self, conversation: Conversation, images: list[Any], max_new_tokens: int) -> dict:
        budget = int(max_new_tokens)
        if self.max_new_tokens_limit is not None:
            # vLLM refuses a max_tokens above its context but clamps prompt + max_tokens itself.
            budget = min(budget, self.max_new_tokens_limit)
        # No per-request pixel bounds: vLLM refuses them unless started with
        # --trust-request-mm-kwargs. The tiles are already sized within the model's bounds,
        # and the size probe refuses a server whose own bounds would resize them.
        return {
            "model": self.model,
            "messages": to_openai_messages(conversation),
            "temperature": 0,
            "max_tokens": budget,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,  # the chosen tokens' log-probabilities: scores per object
            "top_logprobs": 0,
        }

    def _stream_once(self, body: dict, should_cancel: ShouldCancel | None):
        """One streamed request: (text, finish_reason, usage, token log-probabilities)."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        parts: list[str] = []
        logprobs: list[tuple[str, float]] = []
        finish_reason: str | None = None
        usage: dict = {}
        try:
            with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    detail = _error_detail(response)
                    if response.status_code in _RETRY_STATUS:
                        raise _Transient(f"HTTP {response.status_code}: {detail}")
                    raise UserError(f"The model server at {self.base_url} answered {response.status_code}: {detail}")
                for line in response.iter_lines():
                    if should_cancel and should_cancel():
                        raise CancelledError("generation cancelled")  # leaving closes the connection
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue  # read on to the end, so the connection goes back to the pool
                    chunk = _decode_chunk(data, self.base_url)
                    if chunk.get("error"):
                        raise _Transient(f"error in the stream: {_message_of(chunk['error'])}")
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        parts.append(delta.get("content") or "")
                        for entry in (choice.get("logprobs") or {}).get("content") or []:
                            logprobs.append((str(entry.get("token", "")), round(float(entry.get("logprob", 0.0)), 5)))
                        finish_reason = choice.get("finish_reason") or finish_reason
                    usage = chunk.get("usage") or usage
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within {self.timeout:.0f} s") from exc
        except httpx.ConnectError as exc:
            raise _Transient(f"could not connect: {exc.__class__.__name__}", unreachable=True) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _Transient(f"connection lost ({exc.__class__.__name__})") from exc
        if finish_reason is None:
            raise _Transient("the answer stream ended before the answer did")
        return "".join(parts), finish_reason, usage, tuple(logprobs) or None

    # -- what the server is ---------------------------------------------------------------------

    def _learn_limit(self) -> None:
        """Read the served model's context length once (vLLM lists ``max_model_len``)."""
        import httpx

        if self._limit_known:
            return
        with self._lock:
            if self._limit_known:
                return
            try:
                response = self._client.get(f"{self.base_url}/models", timeout=30.0)
            except httpx.ConnectError as exc:
                raise _Transient(f"could not connect: {exc.__class__.__name__}", unreachable=True) from exc
            except httpx.HTTPError as exc:
                raise _Transient(f"listing its models failed: {exc.__class__.__name__}") from exc
            try:
                entries = response.json().get("data") or [] if response.status_code < 400 else []
            except (ValueError, AttributeError):
                entries = []  # not every compatible server lists models
            for entry in entries:
                if isinstance(entry, dict) and entry.get("id") == self.model and entry.get("max_model_len"):
                    self.max_new_tokens_limit = int(entry["max_model_len"])
            self._limit_known = True

    def _check_size(self, conversation: Conversation, image: Any) -> None:
        """Refuse a server that would resize an image of this size (once per size).

        The server counts the prompt's tokens; with the image at the size we sent, the
        image costs exactly (w/28)*(h/28) tokens more than the same prompt without it.
        """
        size = (image.width, image.height)
        if size in self._checked_sizes:
            return
        expected = size[0] * size[1] // IMAGE_TOKEN_AREA
        with_image = self._prompt_tokens(conversation, keep_images=True)
        without = self._prompt_tokens(conversation, keep_images=False)
        if with_image is None or without is None:
            log.warning("the model server reports no token usage: cannot check that it keeps tiles at their size")
        else:
            counted = with_image - without
            # The image's own markers (vision start/end) cost a couple of tokens too.
            if not expected <= counted <= expected + 4:
                used = max(0, counted - 2) * IMAGE_TOKEN_AREA
                raise UserError(
                    f"The model server resizes images again: a {size[0]}x{size[1]} px tile cost {counted} prompt "
                    f"tokens instead of about {expected + 2}, so it saw about {used:,} px instead of "
                    f"{size[0] * size[1]:,} px and every box would be off by that ratio. Start the server with "
                    f"--mm-processor-kwargs '{{\"min_pixels\": {self.pixel_bounds[0]}, \"max_pixels\": "
                    f"{self.pixel_bounds[1]}}}' (the bounds this model was trained with) and try again."
                )
        self._checked_sizes.add(size)

    def _prompt_tokens(self, conversation: Conversation, keep_images: bool) -> int | None:
        images = conversation_images(conversation) if keep_images else []
        probe = conversation if keep_images else _without_images(conversation)
        body = self._body(probe, images, 1)
        body.update(stream=False, max_tokens=1)
        body.pop("stream_options", None)
        import httpx

        try:
            response = self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.ConnectError as exc:
            raise _Transient(f"could not connect: {exc.__class__.__name__}", unreachable=True) from exc
        except httpx.HTTPError as exc:
            raise _Transient(f"connection lost: {exc.__class__.__name__}") from exc
        if response.status_code in _RETRY_STATUS:
            raise _Transient(f"HTTP {response.status_code}: {_error_detail(response)}")
        if response.status_code >= 400:
            raise UserError(f"The model server at {self.base_url} answered {response.status_code}: "
                            f"{_error_detail(response)}")
        try:
            return int(response.json()["usage"]["prompt_tokens"])
        except (ValueError, KeyError, TypeError):
            return None


class _Transient(Exception):
    """A failure worth retrying: the server or the connection, not the request."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _without_images(conversation: Conversation) -> Conversation:
    stripped = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            content = [p for p in content if not (p.get("type") == "image" or "image" in p)]
        stripped.append({**message, "content": content})
    return stripped


def _sleep(seconds: float, should_cancel: ShouldCancel | None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_cancel and should_cancel():
            raise CancelledError("generation cancelled")
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _decode_chunk(data: str, base_url: str) -> dict:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UserError(
            f"The model server at {base_url} did not answer like an OpenAI-compatible chat API "
            "(an unreadable event in the answer stream); check --openai-base-url."
        ) from exc
    if not isinstance(chunk, dict):
        raise UserError(f"The model server at {base_url} sent an event that is not a JSON object.")
    return chunk


def _message_of(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def _error_detail(response: Any) -> str:
    """The server's own error message, whichever common shape it comes in."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        return _message_of(payload.get("error", payload.get("detail", payload)))
    return str(payload)[:300]
