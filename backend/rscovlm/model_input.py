"""How a tile becomes the model's input, and how model coordinates map back.

RSCoVLM answers in integer pixels of the RESIZED input ("scalable bounding boxes"), so the
pipeline resizes each tile itself with Qwen2.5-VL's smart-resize rule and maps answers
back with the exact same sizes. Rule (as in qwen-vl-utils): round each side to the
nearest multiple of 28; if the area is above ``max_pixels`` scale down keeping the aspect
and floor to multiples of 28; if below ``min_pixels`` scale up and ceil. The paper's
bounds are 224x224 .. 1008x1008, so a 512 px tile becomes 504 px.

"Max mode" upsamples a tile to the largest allowed input (512x512 -> 1008x1008): small
objects get more pixels, at about four times the vision tokens.
"""

from __future__ import annotations

import math

import numpy as np

from rscovlm.errors import UserError
from rscovlm.tiling import Window

__all__ = [
    "IMAGE_FACTOR",
    "MIN_PIXELS",
    "MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "smart_resize",
    "model_input_size",
    "input_to_image",
    "image_to_input",
]

IMAGE_FACTOR = 28
MIN_PIXELS = 224 * 224
MAX_PIXELS = 1008 * 1008
MAX_ASPECT_RATIO = 200  # Qwen's processor refuses longer strips


def _round_to(value: float, factor: int) -> int:
    return round(value / factor) * factor


def _floor_to(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def _ceil_to(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def smart_resize(
    height: float,
    width: float,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2.5-VL's input size ``(h, w)``: multiples of ``factor`` within the pixel bounds."""
    if not (height > 0 and width > 0):
        raise UserError(f"An image tile must have a positive size; got {width} x {height} pixels.")
    if min_pixels > max_pixels:
        raise UserError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels}).")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise UserError(
            f"A {width} x {height} pixel tile is too elongated for the model (aspect ratio above "
            f"{MAX_ASPECT_RATIO}); choose a squarer region or tile."
        )
    h_bar = max(factor, _round_to(height, factor))
    w_bar = max(factor, _round_to(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, _floor_to(height / beta, factor))
        w_bar = max(factor, _floor_to(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_to(height * beta, factor)
        w_bar = _ceil_to(width * beta, factor)
    return h_bar, w_bar


def model_input_size(
    height: int,
    width: int,
    max_mode: bool = False,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """The ``(h, w)`` a tile is resized to; ``max_mode`` scales it to fill ``max_pixels``."""
    if max_mode and height > 0 and width > 0:
        scale = math.sqrt(max_pixels / (height * width))
        return smart_resize(height * scale, width * scale, IMAGE_FACTOR, min_pixels, max_pixels)
    return smart_resize(height, width, IMAGE_FACTOR, min_pixels, max_pixels)


def _as_quads(quads: np.ndarray) -> np.ndarray:
    arr = np.asarray(quads, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 8)
    if arr.ndim != 2 or arr.shape[1] % 2:
        raise ValueError(f"expected an (N, 2k) array of x,y coordinates, got shape {arr.shape}")
    return arr


def input_to_image(quads: np.ndarray, input_wh: tuple[int, int], window: Window) -> np.ndarray:
    """Model-input pixels -> image pixels: scale by window/input size, shift by the offset."""
    arr = _as_quads(quads)
    in_w, in_h = input_wh
    out = arr.copy()
    out[:, 0::2] = arr[:, 0::2] * (window.width / in_w) + window.col_off
    out[:, 1::2] = arr[:, 1::2] * (window.height / in_h) + window.row_off
    return out


def image_to_input(quads: np.ndarray, input_wh: tuple[int, int], window: Window) -> np.ndarray:
    """Image pixels -> model-input pixels (the inverse of :func:`input_to_image`)."""
    arr = _as_quads(quads)
    in_w, in_h = input_wh
    out = arr.copy()
    out[:, 0::2] = (arr[:, 0::2] - window.col_off) * (in_w / window.width)
    out[:, 1::2] = (arr[:, 1::2] - window.row_off) * (in_h / window.height)
    return out
