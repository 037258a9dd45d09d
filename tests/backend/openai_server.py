"""A real OpenAI-compatible HTTP server on loopback, answering from a local engine.

It speaks what the client relies on in vLLM: ``GET /v1/models`` with ``max_model_len``,
``POST /v1/chat/completions`` streamed as server-sent events (``finish_reason`` and
``usage`` in the last chunks) or whole, and ``usage.prompt_tokens`` counted by the model's
own processor. Faults can be injected (HTTP errors, dropped connections) and the server
can be told to shrink images the way a mis-configured vLLM would. The real vLLM server
is exercised by ``tests/vllm``; this one runs in every ``make test``.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def decode_data_url(url: str) -> Image.Image:
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def to_hf(messages: list[dict], shrink: float | None = None) -> list[dict]:
    """What a vLLM server does with the request: image_url parts back into images."""
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image_url":
                    image = decode_data_url(part["image_url"]["url"])
                    if shrink:
                        side = lambda v: max(28, int(v * shrink) // 28 * 28)  # noqa: E731
                        image = image.resize((side(image.width), side(image.height)))
                    parts.append({"type": "image", "image": image})
                else:
                    parts.append({"type": "text", "text": part["text"]})
            content = parts
        converted.append({"role": message["role"], "content": content})
    return converted


class ServerState:
    def __init__(self, engine, model: str, max_model_len: int) -> None:
        self.engine, self.model, self.max_model_len = engine, model, max_model_len
        self.received: list[dict] = []
        self.faults: deque[str] = deque()  # "503", "drop": what the next requests meet
        self.shrink: float | None = None
        self.delay = 0.0  # seconds each answer takes, to give a test time to interrupt a run
        self.lock = threading.Lock()

    def prompt_tokens(self, conversation: list[dict]) -> int:
        processor = self.engine.processor
        inputs = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt",
                                               processor_kwargs={"size": {"shortest_edge": 28 * 28,
                                                                          "longest_edge": 4096 * 4096}})
        return int(inputs["input_ids"].shape[1])


def _handler(state: ServerState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": state.model, "object": "model", "max_model_len": state.max_model_len}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions" or body["model"] != state.model:
                self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
                return
            with state.lock:
                state.received.append(body)
                fault = state.faults.popleft() if state.faults else None
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault:
                self._send(int(fault), {"error": {"message": f"injected {fault}"}})
                return
            conversation = to_hf(body["messages"], state.shrink)
            prompt = state.prompt_tokens(conversation)
            budget = body.get("max_tokens") or (state.max_model_len - prompt)
            with state.lock:  # one model, one thread
                answer = state.engine.generate([conversation], max_new_tokens=budget)[0]
            time.sleep(state.delay)
            usage = {"prompt_tokens": prompt, "completion_tokens": answer.tokens,
                     "total_tokens": prompt + (answer.tokens or 0)}
            finish = "stop" if answer.finished else "length"
            entries = [{"token": token, "logprob": value, "top_logprobs": []} for token, value in answer.logprobs or ()]
            if not body.get("stream"):
                self._send(200, {"choices": [{"index": 0, "finish_reason": finish,
                                              "message": {"role": "assistant", "content": answer.text},
                                              "logprobs": {"content": entries}}],
                                 "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # As vLLM streams: a chunk per token with its log-probability; the end token's
            # entry comes with empty content; the text is the model's own decoding.
            sent = 0
            for number, entry in enumerate(entries):
                special = entry["token"].startswith("<|") and entry["token"].endswith("|>")
                piece = "" if special else answer.text[sent:sent + len(entry["token"])]
                sent += len(piece)
                if number == len(entries) - 1:
                    piece += answer.text[sent:]  # whatever per-token decoding did not cover
                self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None,
                                          "logprobs": {"content": [entry]}}]})
            if not entries:
                self._event({"choices": [{"index": 0, "delta": {"content": answer.text}, "finish_reason": None}]})
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            self._event({"choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _event(self, payload: dict) -> None:
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def _send(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def openai_server(engine, model: str = "tiny", max_model_len: int = 32768):
    """Yield ``(base_url, state)`` while the server runs on a free loopback port."""
    state = ServerState(engine, model, max_model_len)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
