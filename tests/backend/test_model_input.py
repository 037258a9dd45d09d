from __future__ import annotations

import numpy as np
import pytest

from rscovlm.errors import UserError
from rscovlm.model_input import (
    MAX_PIXELS,
    MIN_PIXELS,
    image_to_input,
    input_to_image,
    model_input_size,
    smart_resize,
)
from rscovlm.tiling import Window


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((512, 512), (504, 504)),  # the paper's tile
        ((1200, 1200), (1008, 1008)),  # above max: scaled down, floored to 28
        ((100, 100), (224, 224)),  # below min: scaled up, ceiled to 28
        ((512, 300), (504, 308)),
        ((14, 14), (224, 224)),
    ],
)
def test_smart_resize_known_sizes(hw, expected):
    assert smart_resize(*hw) == expected


@pytest.mark.parametrize(("h", "w"), [(512, 512), (300, 512), (1200, 700), (90, 2000), (4000, 3000), (57, 83), (999, 10)])
def test_smart_resize_matches_the_qwen_processor(h, w):
    ref = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    assert smart_resize(h, w) == tuple(ref.smart_resize(h, w, factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))


def test_max_mode_fills_the_largest_input():
    assert model_input_size(512, 512, max_mode=True) == (1008, 1008)
    assert model_input_size(512, 512) == (504, 504)
    h, w = model_input_size(300, 600, max_mode=True)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= MAX_PIXELS
    assert h * w > 0.85 * MAX_PIXELS
    assert abs(w / h - 2.0) < 0.1


def test_elongated_tile_is_a_user_error():
    with pytest.raises(UserError, match="too elongated"):
        smart_resize(10, 5000)


def test_input_to_image_scales_and_shifts():
    window = Window(412, 688, 512, 512)
    quads = np.array([[0, 0, 504, 0, 504, 504, 0, 504], [252, 126, 300, 126, 300, 200, 252, 200]], dtype=float)
    out = input_to_image(quads, (504, 504), window)
    np.testing.assert_allclose(out[0], [412, 688, 924, 688, 924, 1200, 412, 1200])
    assert out[1, 0] == pytest.approx(252 * 512 / 504 + 412)
    assert out[1, 1] == pytest.approx(126 * 512 / 504 + 688)
    assert out.dtype == np.float64


def test_image_to_input_inverts_input_to_image():
    rng = np.random.default_rng(3)
    window = Window(1000, 37, 512, 300)
    quads = rng.uniform(0, 500, (20, 8))
    back = input_to_image(image_to_input(quads, (504, 308), window), (504, 308), window)
    np.testing.assert_allclose(back, quads)
    assert input_to_image(np.zeros((0, 8)), (504, 504), window).shape == (0, 8)
