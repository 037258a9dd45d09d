"""Plugin test fixtures: a real backend server on loopback, started once per session.

The server is the real ``rscovlm serve`` with the project's tiny model, in its own
process, with its token file in a temporary folder; the plugin reaches it through QGIS's
network stack exactly as it would in QGIS.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Backend:
    url: str
    token_file: Path
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as answer:
            return json.loads(answer.read()).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def backend(tiny_model_dir, tmp_path_factory):
    """``rscovlm serve`` with the tiny model on a free loopback port; stopped at the end."""
    folder = tmp_path_factory.mktemp("backend")
    token_file = folder / "config" / "token"
    log_path = folder / "server.log"
    port = free_port()
    env = dict(os.environ, RSCOVLM_TOKEN_FILE=str(token_file), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-m", "rscovlm", "serve", "--port", str(port), "--model", str(tiny_model_dir)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while not _answers(url):
            if process.poll() is not None:
                pytest.fail(f"`{' '.join(command)}` exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the backend did not answer within {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        assert token_file.is_file(), "the server should have written its token file"
        yield Backend(url=url, token_file=token_file, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def small_scene(synth_scene, tmp_path_factory) -> Path:
    """The synthetic scene's top-left 512 px: one tile, so a detection takes seconds on CPU."""
    import rasterio
    from rasterio.windows import Window

    raster, _ = synth_scene
    target = tmp_path_factory.mktemp("small-scene") / "small.tif"
    with rasterio.open(raster) as source:
        window = Window(0, 0, 512, 512)
        profile = source.profile | {"width": 512, "height": 512, "transform": source.window_transform(window)}
        with rasterio.open(target, "w", **profile) as sink:
            sink.write(source.read(window=window))
    return target


@pytest.fixture()
def client(backend):
    from rscovlm_qgis.client import BackendClient

    return BackendClient(backend.url, backend.token_file)


@pytest.fixture()
def closed_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def fresh_detect_choices():
    """Each test starts from the Detect tab's defaults: choices a test makes are remembered."""
    from qgis.core import QgsSettings

    QgsSettings().remove("rscovlm/detect")
    yield
    QgsSettings().remove("rscovlm/detect")
