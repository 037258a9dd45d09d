"""Engines over the real tiny Qwen2.5-VL: loading rules, batching, adapters, the HTTP client."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from openai_server import decode_data_url, openai_server
from PIL import Image

from rscovlm.engines import create_engine
from rscovlm.engines.base import Engine, image_to_data_url
from rscovlm.engines.openai_engine import OpenAIEngine
from rscovlm.engines.transformers_engine import TransformersEngine
from rscovlm.errors import CancelledError, EngineUnavailableError, UserError

SYSTEM = (
    "As an AI assistant, you specialize in accurate oriented object detection, delivering "
    "coordinates of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'."
)


def same_answers(first, second) -> bool:
    """Same words, ending and tokens; log-probabilities equal up to batch arithmetic (1e-3)."""
    if [(a.text, a.finished, a.tokens) for a in first] != [(a.text, a.finished, a.tokens) for a in second]:
        return False
    return all([t for t, _ in a.logprobs] == [t for t, _ in b.logprobs]
               and np.allclose([v for _, v in a.logprobs], [v for _, v in b.logprobs], atol=1e-3)
               for a, b in zip(first, second))


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def detection_conversation(image: Image.Image, classes: str = "plane, ship") -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": f"find the {classes}."}]},
    ]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return TransformersEngine.from_pretrained(str(tiny_model_dir), batch_size=4)


@pytest.fixture(scope="module")
def conversations():
    return [
        detection_conversation(noise_image(504, 504, 1)),
        detection_conversation(noise_image(336, 224, 2), "harbor"),
        detection_conversation(noise_image(280, 392, 3), "storage tank, small vehicle"),
        [{"role": "user", "content": "Describe the scene."}],
    ]


def test_loads_offline_and_describes_itself(engine, tiny_model_dir):
    assert isinstance(engine, Engine)
    info = engine.describe()
    assert info["model"] == str(tiny_model_dir)
    assert info["adapter"] is None and info["quantization"] is None
    assert info["parameters"] > 500_000
    assert info["batch_size"] == engine.batch_size == 4
    if torch.cuda.is_available():
        assert info["device"].startswith("cuda") and info["gpu"] and info["gpu_memory_total_gb"] > 0
    else:
        assert (info["device"], info["dtype"], info["attention"]) == ("cpu", "float32", "sdpa")
        assert "CPU" in engine.device_note and info["note"] == engine.device_note


def test_batched_generation_matches_one_at_a_time(engine, conversations):
    batched = engine.generate(conversations, max_new_tokens=10)
    alone = [engine.generate([c], max_new_tokens=10)[0] for c in conversations]
    assert len(batched) == len(conversations)
    assert [(a.text, a.finished, a.tokens) for a in batched] == [(a.text, a.finished, a.tokens) for a in alone]
    for together, single in zip(batched, alone):  # padding changes the arithmetic a little, not the tokens
        assert [t for t, _ in together.logprobs] == [t for t, _ in single.logprobs]
        assert np.allclose([v for _, v in together.logprobs], [v for _, v in single.logprobs], atol=1e-3)
    texts = [answer.text for answer in batched]
    assert all(text.strip() for text in texts)
    assert len(set(texts)) == len(texts)  # the answer depends on the input
    assert "<|im_end|>" not in "".join(texts) and "<|image_pad|>" not in "".join(texts)
    # The random model never ends an answer by itself: each one ran to the budget, and says so.
    assert all(not a.finished and a.tokens == 10 for a in batched)
    # One log-probability per generated token; the tokens spell the answer.
    for answer in batched:
        assert len(answer.logprobs) == 10 and all(v <= 0 for _, v in answer.logprobs)
        assert "".join(t for t, _ in answer.logprobs) == answer.text


def test_log_probabilities_are_the_models_own(engine, conversations):
    """The recorded value is log softmax of the model's logits at the chosen token, step by step."""
    import torch

    answer = engine.generate([conversations[0]], max_new_tokens=4)[0]
    inputs = engine.processor.apply_chat_template([conversations[0]], add_generation_prompt=True, tokenize=True,
                                                  return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**inputs, generation_config=engine._generation_config, max_new_tokens=4,
                                    output_logits=True, return_dict_in_generate=True)
    chosen = out.sequences[0, inputs["input_ids"].shape[1]:]
    expected = [torch.log_softmax(step[0].float(), -1)[token].item() for step, token in zip(out.logits, chosen)]
    assert np.allclose([v for _, v in answer.logprobs], expected, atol=1e-4)


def test_batches_larger_than_batch_size_keep_order(engine, conversations):
    small = TransformersEngine(engine.model, engine.processor, model_name="tiny", adapter=None,
                               plan=engine.plan, batch_size=3)
    doubled = conversations + conversations[::-1]
    answers = small.generate(doubled, max_new_tokens=6)
    expected = engine.generate(conversations, max_new_tokens=6)
    assert same_answers(answers, expected + expected[::-1])


def test_images_larger_than_the_processor_range_are_not_resized(engine):
    captured = {}
    original = engine.model.generate

    def spy(**kwargs):
        captured["grid"] = kwargs["image_grid_thw"].tolist()
        return original(**kwargs)

    engine.model.generate = spy
    try:
        engine.generate([detection_conversation(noise_image(1036, 1064, 4))], max_new_tokens=1)
    finally:
        del engine.model.generate
    assert captured["grid"] == [[1, 1064 // 14, 1036 // 14]]


def test_lora_adapter_folder_loads_and_changes_the_weights(tiny_model_dir, engine, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, local_files_only=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    tuned = TransformersEngine.from_pretrained(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    assert tuned.describe()["adapter"] == str(tmp_path / "adapter")
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    base_weights = dict(engine.model.named_parameters())[name]
    tuned_weights = dict(tuned.model.named_parameters())[name]
    assert not torch.allclose(base_weights, tuned_weights)
    assert tuned.generate([detection_conversation(noise_image(224, 224, 5))], max_new_tokens=4)[0]


def test_an_adapter_given_as_model_is_explained(tiny_model_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="--adapter"):
        TransformersEngine.from_pretrained(str(tmp_path))
    with pytest.raises(UserError, match="not a LoRA adapter folder"):
        TransformersEngine.from_pretrained(str(tiny_model_dir), adapter=str(tiny_model_dir))


def test_a_folder_that_is_not_a_model_is_explained(tmp_path):
    with pytest.raises(UserError, match="not a model folder"):
        TransformersEngine.from_pretrained(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        TransformersEngine.from_pretrained(str(tmp_path / "missing" / "deeper"))


def test_an_uncached_hub_id_offline_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError) as caught:
        TransformersEngine.from_pretrained("Qingyun/RSCoVLM-7B-2512")
    message = str(caught.value)
    assert "huggingface-cli download Qingyun/RSCoVLM-7B-2512 --local-dir" in message
    assert "--model" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when there is no GPU")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantization_without_a_gpu_is_explained(tiny_model_dir, quantization):
    with pytest.raises(UserError, match=f"{quantization} quantization needs a CUDA GPU"):
        TransformersEngine.from_pretrained(str(tiny_model_dir), quantization=quantization)


def test_bad_options_are_explained(tiny_model_dir):
    with pytest.raises(UserError, match="Unknown device"):
        TransformersEngine.from_pretrained(str(tiny_model_dir), device="tpu")
    with pytest.raises(UserError, match="Unknown quantization"):
        TransformersEngine.from_pretrained(str(tiny_model_dir), quantization="3bit")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            TransformersEngine.from_pretrained(str(tiny_model_dir), device="cuda")


def test_create_engine_picks_the_engine(tiny_model_dir):
    local = create_engine(str(tiny_model_dir), batch_size=2)
    assert isinstance(local, TransformersEngine) and local.batch_size == 2
    remote = create_engine("rscovlm", openai_base_url="http://127.0.0.1:9/v1", concurrency=3)
    assert isinstance(remote, OpenAIEngine) and remote.describe()["endpoint"] == "http://127.0.0.1:9/v1"
    assert (remote.batch_size, remote.concurrency) == (1, 3)
    with pytest.raises(UserError, match="lora-modules"):
        create_engine("rscovlm", adapter="lora", openai_base_url="http://127.0.0.1:9/v1")


# -- OpenAI-compatible server on loopback -------------------------------------------------


@pytest.fixture(scope="module")
def chat_server(engine):
    """A real HTTP server answering /v1/chat/completions from the tiny model."""
    with openai_server(engine) as (base_url, state):
        yield base_url, state


def _answers_only(state):
    return [b for b in state.received if b.get("stream")]


def test_openai_engine_gives_the_local_answers(chat_server, engine, conversations):
    base_url, state = chat_server
    remote = OpenAIEngine(base_url, "tiny", concurrency=3)
    try:
        assert same_answers(remote.generate(conversations, max_new_tokens=8),
                            engine.generate(conversations, max_new_tokens=8))
        assert remote.generate(conversations[:1], max_new_tokens=8)[0].logprobs  # they travel over the API
        assert remote.max_new_tokens_limit == 32768 and remote.describe()["concurrency"] == 3
    finally:
        remote.close()
    assert len(_answers_only(state)) >= len(conversations)


def test_openai_request_format(chat_server, conversations):
    base_url, state = chat_server
    state.received.clear()
    remote = OpenAIEngine(base_url, "tiny")
    remote.generate([conversations[0]], max_new_tokens=5)
    remote.close()
    body = _answers_only(state)[0]
    assert body["temperature"] == 0 and body["max_tokens"] == 5 and body["model"] == "tiny"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    image = conversations[0][1]["content"][0]["image"]
    assert "mm_processor_kwargs" not in body  # vLLM refuses per-request processor settings by default
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM}
    image_part, text_part = user["content"]
    assert image_part["image_url"]["url"] == image_to_data_url(image)
    sent = decode_data_url(image_part["image_url"]["url"])
    assert np.array_equal(np.asarray(sent), np.asarray(image))
    assert text_part == {"type": "text", "text": "find the plane, ship."}
    # The size probe (two one-token requests, with and without the image) ran once for this size.
    probes = [b for b in state.received if not b.get("stream")]
    assert len(probes) == 2 and all(b["max_tokens"] == 1 for b in probes)


def test_openai_budget_hit_is_reported(chat_server, conversations):
    base_url, _ = chat_server
    remote = OpenAIEngine(base_url, "tiny")
    answer = remote.generate([conversations[1]], max_new_tokens=4)[0]
    remote.close()
    assert not answer.finished and answer.tokens == 4  # the random model never stops by itself


def test_openai_transient_failures_are_retried(chat_server, engine, conversations):
    base_url, state = chat_server
    remote = OpenAIEngine(base_url, "tiny", backoff_s=0.01, check_image_size=False)
    state.faults.extend(["503", "drop", "502"])
    try:
        answer = remote.generate([conversations[2]], max_new_tokens=6)[0]
    finally:
        state.faults.clear()
    assert same_answers([answer], engine.generate([conversations[2]], max_new_tokens=6))
    state.faults.extend(["503"] * 10)
    try:
        with pytest.raises(EngineUnavailableError, match="after 3 tries"):
            OpenAIEngine(base_url, "tiny", retries=2, backoff_s=0.01, check_image_size=False).generate(
                [conversations[2]], max_new_tokens=6)
    finally:
        state.faults.clear()
    remote.close()


def test_a_server_that_resizes_images_is_refused(chat_server, conversations):
    base_url, state = chat_server
    state.shrink = 0.5
    try:
        with pytest.raises(UserError, match="resizes images again"):
            OpenAIEngine(base_url, "tiny").generate([conversations[0]], max_new_tokens=2)
    finally:
        state.shrink = None


def test_openai_cancel_stops_at_once(chat_server, conversations):
    base_url, _ = chat_server
    with pytest.raises(CancelledError):
        OpenAIEngine(base_url, "tiny").generate([conversations[0]], max_new_tokens=4, should_cancel=lambda: True)


def test_openai_server_errors_are_explained(chat_server, conversations):
    base_url, _ = chat_server
    with pytest.raises(UserError, match="answered 404: The model `other` does not exist"):
        OpenAIEngine(base_url, "other", check_image_size=False).generate([conversations[3]], max_new_tokens=2)


def test_openai_unreachable_server_is_explained(conversations):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EngineUnavailableError, match="Could not reach the model server"):
        OpenAIEngine(f"http://127.0.0.1:{port}/v1", "tiny", timeout=5, retries=1, backoff_s=0.01).generate(
            [conversations[3]], max_new_tokens=2)


# -- GPU only -----------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_bf16_generation_matches_batched(tiny_model_dir, conversations):
    gpu = TransformersEngine.from_pretrained(str(tiny_model_dir), device="cuda", batch_size=4)
    info = gpu.describe()
    assert info["device"] == "cuda:0" and info["dtype"] in {"bfloat16", "float16"}
    assert info["gpu"] and info["gpu_memory_used_gb"] > 0
    answers = gpu.generate(conversations, max_new_tokens=8)
    assert len(answers) == len(conversations) and all(isinstance(a.text, str) for a in answers)
    assert answers == TransformersEngine.from_pretrained(str(tiny_model_dir), device="cuda", batch_size=1).generate(
        conversations, max_new_tokens=8)


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_load_on_cuda(tiny_model_dir, conversations, quantization):
    quantized = TransformersEngine.from_pretrained(str(tiny_model_dir), quantization=quantization)
    assert quantized.describe()["quantization"] == quantization
    layer = quantized.model.model.language_model.layers[0].self_attn.q_proj
    assert type(layer).__name__ in {"Linear4bit", "Linear8bitLt"}
    assert quantized.generate(conversations[:2], max_new_tokens=4)[0] is not None
