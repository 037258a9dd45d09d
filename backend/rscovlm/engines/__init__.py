"""Model engines: RSCoVLM in this process (transformers) or behind a vLLM server."""

from __future__ import annotations

import os

from ..errors import UserError
from .base import Engine


def create_engine(
    model: str,
    adapter: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    quantization: str | None = None,
    attn_implementation: str | None = None,
    batch_size: int = 8,
    openai_base_url: str | None = None,
    concurrency: int | None = None,
) -> Engine:
    """The engine the options describe: a server client when ``openai_base_url`` is set.

    With a server, ``model`` is the name the server serves, and adapters and quantization
    are the server's business (vLLM: ``--lora-modules``, ``--quantization``).
    The API key for a server comes from ``OPENAI_API_KEY`` when set. ``concurrency`` is
    how many requests a server client keeps in flight (default: the client's own).
    """
    if openai_base_url:
        if adapter:
            raise UserError(
                "--adapter applies to the local engine only; load the LoRA in the server "
                "(vllm serve ... --enable-lora --lora-modules NAME=FOLDER) and pass NAME as --model."
            )
        if quantization:
            raise UserError(
                "--quantization applies to the local engine only; choose quantization when "
                "starting the server instead."
            )
        from .openai_engine import DEFAULT_CONCURRENCY, OpenAIEngine

        return OpenAIEngine(openai_base_url, model, api_key=os.environ.get("OPENAI_API_KEY"),
                            concurrency=concurrency or DEFAULT_CONCURRENCY)

    from .transformers_engine import TransformersEngine

    return TransformersEngine.from_pretrained(
        model,
        adapter=adapter,
        device=device,
        dtype=dtype,
        quantization=quantization,
        attn_implementation=attn_implementation,
        batch_size=batch_size,
    )


__all__ = ["Engine", "create_engine"]
