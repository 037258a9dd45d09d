"""The pipelines through a real vLLM server give what the local transformers engine gives.

The demo scene of `make demo` (1024 px, 0.5 m, seed 2001; 25 tiles of 256 px) is detected
once with the model loaded here (transformers, CPU) and once through vLLM serving the
same weights; greedy decoding in float32 must give the same words on every tile. The
commands are the user's: the `rscovlm` console script of the main environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "resources" / "demo-model"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLASSES = "plane,storage tank"
DETECT_ARGS = ["--tile-size", "256", "--overlap", "64", "--classes", CLASSES, "--max-new-tokens", "512"]
QUESTION = "How many storage tanks are there in this image?"


def _rscovlm_command() -> list[str]:
    script = Path(sys.executable).with_name("rscovlm")
    if script.exists():
        return [str(script)]
    found = shutil.which("rscovlm")
    return [found] if found else [sys.executable, "-m", "rscovlm"]


def run_rscovlm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([*_rscovlm_command(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (
        f"rscovlm {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
        f"stderr:\n{done.stderr[-3000:]}"
    )
    return done


def read_responses(path: Path) -> dict[tuple[int, int, int, int], str]:
    """(col_off, row_off, width, height) -> the tile's answer text, through the product's reader."""
    from rscovlm.responses import read_responses as read

    return {(r.col_off, r.row_off, r.width, r.height): r.response for r in read(path)}


@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory) -> Path:
    """Exactly the scene `make demo` makes for the demo model."""
    folder = tmp_path_factory.mktemp("vllm-demo")
    run_rscovlm("synth", str(folder / "scene.tif"), "--truth", str(folder / "truth.gpkg"),
                "--size", "1024", "--gsd", "0.5", "--seed", "2001", cwd=folder)
    return folder / "scene.tif"


@pytest.fixture(scope="module")
def local_responses(demo_scene) -> dict[tuple[int, int], str]:
    folder = demo_scene.parent
    run_rscovlm("detect", str(demo_scene), "-o", str(folder / "local.gpkg"), "--model", str(DEMO_MODEL),
                "--device", "cpu", *DETECT_ARGS, "--responses-out", str(folder / "local.jsonl"), cwd=folder)
    return read_responses(folder / "local.jsonl")


def test_server_lists_the_served_model_with_its_context(vllm_server):
    import httpx

    models = httpx.get(f"{vllm_server.base_url}/models", timeout=30).json()
    [entry] = models["data"]
    assert entry["id"] == vllm_server.model
    assert entry["max_model_len"] == vllm_server.max_model_len


def _png_data_url(size: int) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _chat(image_url: str | None, **extra) -> dict:
    content = [{"type": "image_url", "image_url": {"url": image_url}}] if image_url else []
    content.append({"type": "text", "text": "Detect all objects."})
    return {"model": "demo", "temperature": 0, "messages": [{"role": "user", "content": content}], **extra}


def test_server_keeps_a_tile_at_the_size_the_pipeline_made(vllm_server):
    """A 504 px tile (multiple of 28, within the pixel bounds) costs exactly 18*18 image
    tokens plus the two vision markers: the server does not resize it again."""
    import httpx

    url = f"{vllm_server.base_url}/chat/completions"
    with httpx.Client(timeout=120) as client:
        plain = client.post(url, json=_chat(None, max_tokens=1)).json()["usage"]["prompt_tokens"]
        tile = client.post(url, json=_chat(_png_data_url(504), max_tokens=1)).json()["usage"]["prompt_tokens"]
    assert tile - plain == (504 // 28) ** 2 + 2


def test_closing_the_connection_aborts_the_request(vllm_server):
    """The engine cancels by closing its stream; the server must stop generating then."""
    import time

    import httpx

    def metric(name: str) -> float:
        text = httpx.get(f"{vllm_server.root_url}/metrics", timeout=30).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    before = metric("vllm:generation_tokens_total")
    body = _chat(_png_data_url(252), max_tokens=3000, ignore_eos=True, stream=True)
    with httpx.Client(timeout=120) as client, client.stream(
            "POST", f"{vllm_server.base_url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        for number, _ in enumerate(response.iter_lines()):
            if number >= 20:
                break
    time.sleep(3.0)  # a request still running would be a few hundred tokens further on now
    assert metric("vllm:num_requests_running") == 0, "the server still generates for a closed stream"
    generated = metric("vllm:generation_tokens_total") - before
    assert generated < 1500, f"{generated:.0f} of 3000 tokens generated for a stream closed after 20 events"


def test_detect_through_vllm_gives_the_local_engines_answers(vllm_server, demo_scene, local_responses):
    folder = demo_scene.parent
    done = run_rscovlm("detect", str(demo_scene), "-o", str(folder / "vllm.gpkg"),
                       "--openai-base-url", vllm_server.base_url, "--model", vllm_server.model,
                       *DETECT_ARGS, "--responses-out", str(folder / "vllm.jsonl"), cwd=folder)
    served = read_responses(folder / "vllm.jsonl")

    full_tiles = [key for key in local_responses if key[2:] == (256, 256)]
    assert len(full_tiles) == 25, "the demo scene is 25 tiles of 256 px with 64 px overlap"
    assert sorted(served) == sorted(local_responses)
    found = [key for key, text in local_responses.items() if text and "There are none" not in text]
    assert found, "the demo model finds objects on some tiles of this scene (a meaningful comparison)"
    different = {key: (local_responses[key], served[key]) for key in local_responses
                 if served[key] != local_responses[key]}
    assert not different, f"{len(different)} tile(s) answered differently (local, vLLM): {different}"
    assert "Wrote" in done.stdout

    # The chosen tokens' log-probabilities (for confidence scores) agree between the engines.
    import numpy as np

    from rscovlm.responses import read_responses as read

    def logprobs(path):
        return {(r.col_off, r.row_off, r.width, r.height): r.logprobs for r in read(path)}

    here, there = logprobs(folder / "local.jsonl"), logprobs(folder / "vllm.jsonl")
    for key, ours in here.items():
        theirs = there[key]
        assert ours and theirs, f"tile {key} has no log-probabilities"
        assert [t for t, _ in ours] == [t for t, _ in theirs], (key, ours, theirs)
        assert np.allclose([v for _, v in ours], [v for _, v in theirs], atol=2e-3), (key, ours, theirs)


def test_ask_through_vllm_gives_the_local_engines_answer(vllm_server, demo_scene):
    folder = demo_scene.parent
    run_rscovlm("ask", str(demo_scene), QUESTION, "--no-zoom", "--model", str(DEMO_MODEL), "--device", "cpu",
                "--json", str(folder / "ask-local.json"), cwd=folder)
    run_rscovlm("ask", str(demo_scene), QUESTION, "--no-zoom", "--openai-base-url", vllm_server.base_url,
                "--model", vllm_server.model, "--json", str(folder / "ask-vllm.json"), cwd=folder)
    local = json.loads((folder / "ask-local.json").read_text(encoding="utf-8"))
    served = json.loads((folder / "ask-vllm.json").read_text(encoding="utf-8"))

    assert served["answer"].strip(), "vLLM gave an empty answer"
    assert served["answer"] == local["answer"]
    assert served["zoomed"] is False and local["zoomed"] is False


def test_the_zoom_in_chain_through_vllm_gives_the_local_engines_turns(vllm_server, demo_scene):
    """Both turns of the Zoom-in Chain (the reference leaves vLLM's as a to-do) match the local engine."""
    folder = demo_scene.parent
    run_rscovlm("ask", str(demo_scene), QUESTION, "--model", str(DEMO_MODEL), "--device", "cpu",
                "--json", str(folder / "zoom-local.json"), cwd=folder)
    run_rscovlm("ask", str(demo_scene), QUESTION, "--openai-base-url", vllm_server.base_url,
                "--model", vllm_server.model, "--json", str(folder / "zoom-vllm.json"), cwd=folder)
    local = json.loads((folder / "zoom-local.json").read_text(encoding="utf-8"))
    served = json.loads((folder / "zoom-vllm.json").read_text(encoding="utf-8"))
    assert served["transcript"] == local["transcript"]
    assert (served["answer"], served["zoomed"]) == (local["answer"], local["zoomed"])


def test_a_tile_the_server_would_resize_is_refused_with_a_sentence(vllm_server):
    """The demo model's bounds end at 1008x1008: a 1120 px picture would be shrunk by the
    server, so boxes would be off by the ratio; the engine says so instead of answering."""
    import numpy as np
    from PIL import Image

    from rscovlm.engines.openai_engine import OpenAIEngine
    from rscovlm.errors import UserError

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1120, 1120, 3), dtype=np.uint8))
    conversation = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": "find the plane."}]}]
    engine = OpenAIEngine(vllm_server.base_url, vllm_server.model)
    try:
        with pytest.raises(UserError, match="resizes images again: a 1120x1120 px tile"):
            engine.generate([conversation], max_new_tokens=8)
        small = image.resize((504, 504))
        conversation[0]["content"][0]["image"] = small
        assert engine.generate([conversation], max_new_tokens=8)[0].text is not None  # a fitting size is fine
    finally:
        engine.close()
