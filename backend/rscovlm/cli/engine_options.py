"""Model options shared by every command that runs the model (detect, ask, serve, train)."""

from __future__ import annotations

import argparse


def add_engine_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=required,
                       help="model folder or Hugging Face id, e.g. Qingyun/RSCoVLM-7B-2512 (offline mode is honoured)")
    group.add_argument("--adapter", help="a PEFT LoRA adapter folder to load on top of the model")
    group.add_argument("--device", default="auto", help="auto (CUDA with bf16 when available), cuda, cuda:N or cpu")
    group.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    group.add_argument("--quantization", choices=["4bit", "8bit"], help="load the model quantized with bitsandbytes (GPU only)")
    group.add_argument("--attn", dest="attn_implementation", choices=["flash_attention_2", "sdpa", "eager"],
                       help="attention implementation (default: flash_attention_2 when installed, else sdpa)")
    group.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    group.add_argument("--openai-base-url",
                       help="use an OpenAI-compatible server (e.g. vLLM) instead of loading the model here")
    group.add_argument("--max-in-flight", type=int, metavar="N",
                       help="requests kept in flight at a server (default 64; vLLM batches them continuously)")


def load_engine(args: argparse.Namespace):
    """Load the model once; the engine logs its own device note (e.g. a CPU fall-back)."""
    from ..engines import create_engine

    return create_engine(
        args.model,
        adapter=args.adapter,
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        attn_implementation=args.attn_implementation,
        batch_size=args.batch_size,
        openai_base_url=args.openai_base_url,
        concurrency=getattr(args, "max_in_flight", None),
    )
