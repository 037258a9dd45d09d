"""The tiny model is a real Qwen2.5-VL: it loads the way RSCoVLM's weights load."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from rscovlm.tiny_model import SPECIAL_TOKENS, TOOL_TOKENS, build_tiny_model, parameter_count


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_is_small_and_names_the_real_architecture(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    text = config["text_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    size = sum(f.stat().st_size for f in tiny_model_dir.iterdir())
    assert size < 10 * 2**20
    assert 500_000 < parameter_count(tiny_model_dir) < 3_000_000
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["do_sample"] is False


def test_same_seed_gives_identical_weights(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _digest(again / "model.safetensors") == _digest(tiny_model_dir / "model.safetensors")
    assert _digest(again / "tokenizer.json") == _digest(tiny_model_dir / "tokenizer.json")


def test_vocabulary_matches_the_model_and_special_tokens_are_single(processor, tiny_model_dir):
    tokenizer = processor.tokenizer
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == len(tokenizer)
    assert len(tokenizer) > 1500
    for token in SPECIAL_TOKENS + TOOL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # Digits are split one by one, as Qwen does, so coordinates tokenize predictably.
    assert tokenizer.tokenize("1008,504")[:4] == ["1", "0", "0", "8"]


def test_tool_call_markers_survive_skipping_special_tokens(processor):
    text = '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, 4]}}\n</tool_call>'
    ids = processor.tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
    assert processor.tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("side", [504, 1008])
def test_processor_leaves_model_input_sizes_unresized(processor, side):
    image = Image.new("RGB", (side, side), (90, 120, 60))
    out = processor(images=[image], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, side // 14, side // 14]]
    image_tokens = (out["input_ids"] == processor.image_token_id).sum().item()
    assert image_tokens == (side // 28) ** 2


def test_chat_template_renders_qwen_turns_with_image(processor):
    image = Image.new("RGB", (56, 56))
    conversation = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "find the ship."}]},
        {"role": "assistant", "content": "There are none."},
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nSYS<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>find the ship.<|im_end|>\n"
        "<|im_start|>assistant\nThere are none.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_adds_default_system_and_no_prompt_when_not_asked(processor):
    text = processor.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


def test_chat_template_declares_tools_and_renders_tool_calls(processor):
    tool = {
        "type": "function",
        "function": {
            "name": "image_zoom_in",
            "description": "Zoom in on a region.",
            "parameters": {"type": "object", "properties": {"bbox": {"type": "array"}}, "required": ["bbox"]},
        },
    }
    conversation = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "How many ships?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 30, 40]}}}
        ]},
        {"role": "tool", "content": "zoomed"},
    ]
    text = processor.apply_chat_template(conversation, tools=[tool], add_generation_prompt=True, tokenize=False)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nSYS\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(tool) + "\n</tools>" in system
    assert system.endswith('<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 30, 40]}}\n'
        "</tool_call><|im_end|>\n" in text
    )
    assert "<|im_start|>user\n<tool_response>\nzoomed\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_small_size_builds_a_larger_model_that_loads_offline(tmp_path):
    from rscovlm.engines.transformers_engine import TransformersEngine
    from rscovlm.errors import UserError

    small = build_tiny_model(tmp_path / "small", seed=0, size="small")
    config = json.loads((small / "config.json").read_text())
    text = config.get("text_config", config)
    assert text["hidden_size"] == 256 and text["num_hidden_layers"] == 4
    assert parameter_count(small) > 4_000_000
    engine = TransformersEngine.from_pretrained(str(small), device="cpu")
    image = Image.new("RGB", (252, 252), (90, 120, 60))
    conversation = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "find the ship."}]}]
    assert isinstance(engine.generate([conversation], max_new_tokens=4)[0].text, str)
    with pytest.raises(UserError, match="size"):
        build_tiny_model(tmp_path / "huge", size="huge")


def test_small_model_rope_can_tell_image_columns_apart():
    """M-RoPE gives the width axis the slowest frequencies: with Qwen's theta 1e6 and
    16 frequencies the columns of a 9-token-wide image rotate by < 0.002 rad, too little
    for attention to tell them apart. The small size must keep them distinguishable."""
    from rscovlm.tiny_model import MROPE_SECTION, SIZES

    def width_frequencies(size: str) -> list[float]:
        text = SIZES[size]["text"]
        pairs = text["hidden_size"] // text["num_attention_heads"] // 2
        assert sum(MROPE_SECTION) == pairs
        start = MROPE_SECTION[0] + MROPE_SECTION[1]
        return [SIZES[size]["rope_theta"] ** (-i / pairs) for i in range(start, pairs)]

    columns = 9  # a 252 px input: 9 merged visual tokens across
    assert max(width_frequencies("small")) * (columns - 1) > 1.0  # radians between the first and last column
    assert max(width_frequencies("tiny")) * (columns - 1) < 0.01  # Qwen's own, kept for tests
