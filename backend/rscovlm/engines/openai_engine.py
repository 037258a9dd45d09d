"""RSCoVLM behind an OpenAI-compatible server (vLLM), for throughput past one local GPU.

vLLM batches concurrent requests itself (continuous batching), so a batch here is just
``batch_size`` requests in flight at once. Images travel as lossless PNG data URLs so the
server sees exactly the pixels the pipeline sized; temperature 0 gives greedy answers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import UserError
from .base import Conversation, image_to_data_url


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


class OpenAIEngine:
    """Client for ``POST {base_url}/chat/completions`` (base_url usually ends in /v1)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 600.0, batch_size: int = 8) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.timeout = timeout
        self.device_note: str | None = None  # the server owns the device
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=self.batch_size),
        )

    def generate(self, conversations: list[Conversation], max_new_tokens: int = 1024) -> list[str]:
        """One greedy answer per conversation, requests sent ``batch_size`` at a time."""
        conversations = list(conversations)
        if len(conversations) <= 1:
            return [self._complete(c, max_new_tokens) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(conversations))) as pool:
            return list(pool.map(lambda c: self._complete(c, max_new_tokens), conversations))

    def _complete(self, conversation: Conversation, max_new_tokens: int) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = {
            "model": self.model,
            "messages": to_openai_messages(conversation),
            "temperature": 0,
            "max_tokens": int(max_new_tokens),
        }
        try:
            response = self._client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise UserError(
                f"The model server at {self.base_url} did not answer within {self.timeout:.0f} s; "
                "check that it is running and not overloaded."
            ) from exc
        except httpx.HTTPError as exc:
            raise UserError(
                f"Could not reach the model server at {self.base_url} ({exc.__class__.__name__}); start it "
                "(e.g. `vllm serve Qingyun/RSCoVLM-7B-2512`) or fix --openai-base-url (it usually ends in /v1)."
            ) from exc
        if response.status_code >= 400:
            raise UserError(
                f"The model server at {self.base_url} answered {response.status_code}: {_error_detail(response)}"
            )
        try:
            return response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UserError(
                f"The model server at {self.base_url} did not answer like an OpenAI-compatible chat API; "
                "check --openai-base-url."
            ) from exc

    def describe(self) -> dict:
        return {
            "engine": "openai",
            "endpoint": self.base_url,
            "model": self.model,
            "adapter": None,
            "device": "remote",
            "gpu": None,
            "dtype": None,
            "quantization": None,
            "attention": None,
            "batch_size": self.batch_size,
            "note": None,
        }

    def close(self) -> None:
        self._client.close()


def _error_detail(response: Any) -> str:
    """The server's own error message, whichever common shape it comes in."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(payload)[:300]
