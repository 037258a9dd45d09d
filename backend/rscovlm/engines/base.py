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
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
Conversation = list[Message]


@runtime_checkable
class Engine(Protocol):
    """A loaded model that answers conversations greedily (deterministic answers)."""

    batch_size: int  # conversations worth sending per generate() call

    def generate(self, conversations: list[Conversation], max_new_tokens: int = 1024) -> list[str]:
        """One answer per conversation, in order: only the new text, special tokens removed."""
        ...

    def describe(self) -> dict:
        """What is running: model, adapter, device, GPU name/memory, dtype, quantization, attention."""
        ...


def image_to_data_url(image: Any) -> str:
    """A PIL image as a lossless ``data:image/png;base64,...`` URL.

    PNG, not JPEG: the server must see the exact pixels the pipeline prepared, or a remote
    engine's answers would differ from a local engine's on the same tile.
    """
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
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
