"""Session fixtures shared by backend and plugin tests: real files, built once."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Never write into the real user's cache (servers keep per-job responses there).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rscovlm-test-cache-")

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped on CPU)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing means no GPU either
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved in Hugging Face format (built by the project)."""
    from rscovlm.tiny_model import build_tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(path, seed=0)
    return path


@pytest.fixture(scope="session")
def synth_scene(tmp_path_factory):
    """A 1200 px synthetic georeferenced scene and its ground truth."""
    from rscovlm.synth import make_scene

    folder = tmp_path_factory.mktemp("synth")
    raster, truth = folder / "scene.tif", folder / "truth.gpkg"
    make_scene(raster, truth, size=1200, seed=7)
    return raster, truth
