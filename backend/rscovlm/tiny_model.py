"""A tiny, randomly initialised Qwen2.5-VL saved in Hugging Face format.

Why: tests and demos must exercise the exact loading and generation path the real
RSCoVLM weights use (``AutoProcessor`` / ``AutoModelForImageTextToText`` from a folder,
offline), but nothing here can download 16 GB of weights. So the project builds its own
model of the same architecture: same config class, same vision tower and M-RoPE, same
special tokens and chat template shape, just a few MB. Its answers are gibberish; its
plumbing is real.

Image range: ``min_pixels = 56 * 56`` (Qwen's own floor) and ``max_pixels = 1008 * 1008``
(the paper's ceiling). Smart-resize only changes an image whose sides are not multiples
of 28 or whose area leaves that range, so every input the pipeline prepares (a multiple
of 28 between 224x224 and 1008x1008) reaches the vision tower unchanged, and box
coordinates map back exactly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

MIN_PIXELS = 56 * 56
MAX_PIXELS = 1008 * 1008
VOCAB_SIZE = 4096

# Qwen2.5-VL's added tokens, in Qwen's own order so ids keep Qwen's relative layout.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen marks these two as ordinary added tokens (not special): decoding keeps them, so
# a tool call survives ``skip_special_tokens=True``.
TOOL_TOKENS = ("<tool_call>", "</tool_call>")

# Qwen2's pre-tokenizer split: letters in runs, every digit alone, punctuation runs.
# Single digits matter here: box coordinates are digit strings.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_SYSTEM = "You are a helpful assistant."

# Model sizes. "tiny" (~1 M parameters) is for tests: it only has to run. "small"
# (~6 M) is trained from scratch on the synthetic scenes (scripts/train_demo_model.sh).
# Head dim stays 32 so M-RoPE 4+6+6 (MROPE_SECTION) fits.
#
# rope_theta: M-RoPE gives the temporal axis the fastest rotary frequencies, the height
# axis the middle ones and the width axis the slowest. With Qwen's theta of 1e6 and only
# 16 frequencies per head, the width frequencies are below 2e-4 rad per position: across
# a 9-token-wide image the language model's attention cannot tell one column from
# another. (Qwen's 7B has other routes to position, learnt at scale.) Trained from
# scratch with theta 1e6, the small model placed boxes no nearer the truth than random
# points; with theta 20 (width axis 0.06-0.15 rad per position, height 0.19-0.47) it
# began to place them. The two runs differed in data too: see scripts/train_demo_model.sh.
MROPE_SECTION = (4, 6, 6)  # rotary frequency pairs for the temporal, height and width axes
SIZES: dict[str, dict[str, dict]] = {
    "tiny": {
        "text": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2,
                     # larger than Qwen's 0.02 so a random model's greedy choice depends on its input
                     initializer_range=0.2),
        "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2,
                       out_hidden_size=128, fullatt_block_indexes=[1]),
        "rope_theta": 1_000_000.0,  # Qwen2.5-VL's own
    },
    "small": {
        "text": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=4,
                     initializer_range=0.02),   # Qwen's own: this one is trained from scratch
        "vision": dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4,
                       out_hidden_size=256, fullatt_block_indexes=[1, 3]),
        "rope_theta": 20.0,  # see above: lets a model trained from scratch resolve columns
    },
}

# Qwen2.5-VL's chat layout: <|im_start|>role\n ... <|im_end|>\n; an image is
# <|vision_start|><|image_pad|><|vision_end|>; tools are declared in the system turn
# and called inside <tool_call></tool_call>; tool answers go back as a user turn.
CHAT_TEMPLATE = r"""{%- set image_count = namespace(value=0) -%}
{%- macro render_content(content) -%}
{%- if content is string -%}{{ content }}
{%- else -%}
{%- for part in content -%}
{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}
{%- set image_count.value = image_count.value + 1 -%}
{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
<|vision_start|><|image_pad|><|vision_end|>
{%- elif part.type == 'video' or 'video' in part -%}
<|vision_start|><|video_pad|><|vision_end|>
{%- elif 'text' in part -%}{{ part.text }}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if messages[0].role == 'system' -%}
{%- set system_text = render_content(messages[0].content) -%}
{%- set rest = messages[1:] -%}
{%- else -%}
{%- set system_text = 'You are a helpful assistant.' -%}
{%- set rest = messages -%}
{%- endif -%}
{{- '<|im_start|>system\n' + system_text -}}
{%- if tools -%}
{{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- for message in rest -%}
{%- if message.role == 'tool' -%}
{%- if loop.first or rest[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' -}}{% endif -%}
{{- '\n<tool_response>\n' + render_content(message.content) + '\n</tool_response>' -}}
{%- if loop.last or rest[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' -}}{% endif -%}
{%- else -%}
{{- '<|im_start|>' + message.role + '\n' -}}
{%- if message.content is defined and message.content is not none -%}{{- render_content(message.content) -}}{%- endif -%}
{%- if message.role == 'assistant' and message.tool_calls -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- if loop.first and message.content -%}{{- '\n' -}}{%- elif not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- '<tool_call>\n{"name": "' + fn.name + '", "arguments": ' -}}
{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

DOTA_NAMES = (
    "baseball diamond", "basketball court", "bridge", "ground track field", "harbor",
    "helicopter", "large vehicle", "plane", "roundabout", "ship", "small vehicle",
    "soccer ball field", "storage tank", "swimming pool", "tennis court",
)

_WORDS = (
    "the a an of in on at to and or is are was were there none this that what which how "
    "many much where image picture region area scene remote sensing satellite aerial view "
    "building road river lake forest farmland parking lot airport residential industrial "
    "commercial field water tree grass bare land dense sparse medium large small white "
    "black red green blue gray left right top bottom center near far north south east west "
    "count number answer question describe caption classify detect find locate object "
    "objects polygon vertices coordinates plain text format assistant specialize accurate "
    "oriented detection delivering json bbox label quadrant zoom zoomed complete task now "
    "here's you can interest function name arguments tool call response helpful yes no "
    "city town village harbour port dock pier vessel boat cargo tanker container truck car "
    "bus train railway station runway taxiway terminal hangar aircraft airplane jet "
    "stadium court pitch track pool tank silo chimney factory warehouse greenhouse farm "
    "crop orchard vineyard meadow pasture desert dune beach coast shore island bay sea "
    "ocean pond reservoir dam canal channel stream bridge overpass highway street lane "
    "intersection roundabout junction sidewalk square park garden cemetery church school "
    "hospital university campus mall market shop house apartment tower skyscraper roof "
    "shadow cloud snow ice mountain hill valley slope cliff rock soil sand mud wetland "
    "swamp marsh mangrove jungle woodland shrub bush vegetation urban rural suburban "
    "several few some most all every each both either neither other another same "
    "different similar between among around inside outside above below behind beside "
    "along across through over under into onto from with without within during after "
    "before while because although however therefore probably clearly visible located "
    "situated surrounded arranged parked moving docked aligned scattered distributed "
    "rows columns pairs groups clusters lines circles rectangles squares shapes sizes "
    "colors colours textures patterns structures features buildings roads vehicles "
    "ships planes trees fields houses tanks courts pools bridges harbors helicopters "
    "one two three four five six seven eight nine ten eleven twelve twenty hundred"
).split()


def _corpus(seed: int) -> list[str]:
    """Text in the shape the model will see: prompts, answers, tool calls, numbers."""
    import random

    rng = random.Random(seed)
    lines = [
        "As an AI assistant, you specialize in accurate oriented object detection, "
        "delivering coordinates of the polygon vertices in plain text format "
        "'x1,y1,x2,y2,x3,y3,x4,y4 object'.",
        "As an AI assistant, you specialize in accurate object detection, delivering "
        "coordinates in plain text format 'x1,y1,x2,y2 object'.",
        "find the " + ", ".join(DOTA_NAMES) + ".",
        "There are none.",
        "Zoom in to the region of interest and answer the question.",
        "Here's the zoomed-in image. You can complete your task now.",
        "Locate the white plane, output the bbox coordinates using JSON format",
        DEFAULT_SYSTEM,
    ]
    for _ in range(400):
        name = rng.choice(DOTA_NAMES)
        quad = ",".join(str(rng.randint(0, 1008)) for _ in range(8))
        box = [rng.randint(0, 1008) for _ in range(4)]
        lines.append(f"{quad} {name}")
        lines.append(json.dumps({"quadrant bbox": [int(v) for v in quad.split(",")], "label": name}))
        lines.append(
            '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": '
            + json.dumps(box) + "}}\n</tool_call>"
        )
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(12)).capitalize() + "?")
        lines.append(" ".join(rng.choice(_WORDS).title() for _ in range(6)) + ".")
    return lines


def _train_tokenizer(seed: int):
    """Byte-level BPE with Qwen's split rule and special tokens, as a fast HF tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS) - len(TOOL_TOKENS),
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(seed), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        padding_side="left",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.add_tokens(list(TOOL_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _config(tokenizer, size: str = "tiny"):
    """The real Qwen2.5-VL config class at toy sizes (head_dim 32, M-RoPE 4+6+6 = 16)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=len(tokenizer),
        **SIZES[size]["text"],
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": SIZES[size]["rope_theta"],
                         "mrope_section": list(MROPE_SECTION)},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        **SIZES[size]["vision"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(path: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) into ``path``.

    ``size`` is a key of ``SIZES``. The same ``seed`` and ``size`` give byte-identical
    weights. Returns the folder.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    if size not in SIZES:
        from rscovlm.errors import UserError

        raise UserError(f"Unknown model size {size!r}; use one of: {', '.join(SIZES)}.")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(seed)
    config = _config(tokenizer, size)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=[im_end, end_of_text],
        pad_token_id=end_of_text,
        bos_token_id=end_of_text,
    )
    model.save_pretrained(folder)

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    log.debug("tiny Qwen2.5-VL written to %s", folder)
    return folder


def parameter_count(path: str | Path) -> int:
    """Number of parameters stored in a saved model folder (reads safetensors headers only)."""
    from safetensors import safe_open

    total = 0
    for shard in sorted(Path(path).glob("*.safetensors")):
        with safe_open(shard, framework="pt") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total
