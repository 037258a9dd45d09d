"""Generation throughput and peak memory of the transformers engine on detection tiles.

Why: users ask "how long will my raster take, and will it fit my GPU?". This prints
tiles/s, generated tokens/s and peak GPU memory for a batch size and quantization, on
random 504x504 tiles with RSCoVLM's detection prompt (``--max-mode`` for 1008x1008).

    # tiny model, CPU or GPU (builds it in a temporary folder)
    python bench/bench_engine.py
    # real weights
    python bench/bench_engine.py --model /data/RSCoVLM-7B-2512 --batch-size 16 --quantization 4bit
    # no weights at hand, GPU only: random weights with the real Qwen2.5-VL-7B sizes, bf16
    python bench/bench_engine.py --random-7b --batch-size 8 --tiles 32

Random weights don't stop at a sensible length, so every answer runs to
--max-new-tokens: the numbers are per generated token, and the real model, which
answers "There are none." on empty tiles, is faster per tile. With --random-7b the
tiny model's tokenizer and processor are used (token ids stay within the 7B vocabulary).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from PIL import Image

SYSTEM = (
    "As an AI assistant, you specialize in accurate oriented object detection, delivering "
    "coordinates of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'."
)
USER = (
    "find the baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, "
    "large vehicle, plane, roundabout, ship, small vehicle, soccer ball field, storage tank, "
    "swimming pool, tennis court."
)


def qwen25_vl_7b_config(tokenizer):
    """Qwen2.5-VL-7B-Instruct's published sizes, with the special-token ids of ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
            eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"),
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )


def random_7b_engine(tiny_folder: str, batch_size: int, attention: str | None):
    """A TransformersEngine around a random 7B built straight on the GPU in bf16 (never saved)."""
    import torch
    from transformers import AutoProcessor, GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from rscovlm.engines.transformers_engine import TransformersEngine, plan_loading

    if not torch.cuda.is_available():
        raise SystemExit("--random-7b needs a CUDA GPU (about 17 GB of memory in bf16).")
    plan = plan_loading("cuda", "auto", None, attention)
    processor = AutoProcessor.from_pretrained(tiny_folder, local_files_only=True)
    processor.tokenizer.padding_side = "left"
    config = qwen25_vl_7b_config(processor.tokenizer)
    config._attn_implementation = plan.attention
    dtype = getattr(torch, plan.dtype_name)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(plan.device):
            model = Qwen2_5_VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=[eos],
                                               pad_token_id=processor.tokenizer.pad_token_id)
    return TransformersEngine(model, processor, model_name="random Qwen2.5-VL-7B sizes", adapter=None,
                              plan=plan, batch_size=batch_size)


def tiles(count: int, side: int, seed: int = 0) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    conversations = []
    for _ in range(count):
        image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        conversations.append([
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": USER}]},
        ])
    return conversations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or HF id (default: a freshly built tiny model)")
    parser.add_argument("--random-7b", action="store_true", help="random weights with Qwen2.5-VL-7B sizes (GPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quantization", choices=["4bit", "8bit"], default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--attn", default=None, help="flash_attention_2, sdpa or eager (default: best available)")
    parser.add_argument("--tiles", type=int, default=16, help="number of tiles to run (after one warm-up batch)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-mode", action="store_true", help="1008x1008 tiles instead of 504x504")
    args = parser.parse_args()

    import torch

    from rscovlm.engines.transformers_engine import TransformersEngine
    from rscovlm.tiny_model import build_tiny_model

    scratch = tempfile.TemporaryDirectory()
    tiny = str(build_tiny_model(scratch.name)) if (args.random_7b or not args.model) else None
    if args.random_7b:
        if args.quantization:
            raise SystemExit("--quantization needs saved weights: use it with --model.")
        engine = random_7b_engine(tiny, args.batch_size, args.attn)
    else:
        engine = TransformersEngine.from_pretrained(
            args.model or tiny, device=args.device, quantization=args.quantization,
            attn_implementation=args.attn, batch_size=args.batch_size,
        )
    on_cuda = engine.plan.device.startswith("cuda")
    side = 1008 if args.max_mode else 504
    work = tiles(args.tiles, side)
    tokenizer = engine.processor.tokenizer

    engine.generate(work[: args.batch_size], max_new_tokens=8)  # warm-up: kernels, allocator
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    answers = engine.generate(work, max_new_tokens=args.max_new_tokens)
    if on_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    generated = sum(len(tokenizer.encode(a, add_special_tokens=False)) for a in answers)

    info = engine.describe()
    print(f"model       {info['model']}  ({info['parameters'] / 1e6:,.1f} M parameters)")
    print(f"device      {info['device']} {info['gpu'] or ''}  dtype {info['dtype']}  "
          f"attention {info['attention']}  quantization {info['quantization']}")
    print(f"workload    {len(work)} tiles of {side}x{side}, batch {engine.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}")
    print(f"time        {elapsed:.2f} s  ->  {len(work) / elapsed:.2f} tiles/s, "
          f"{generated / elapsed:.1f} generated tokens/s ({generated} tokens)")
    if on_cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")
    scratch.cleanup()


if __name__ == "__main__":
    main()
