"""The answer a tile is trained to give, rendered in the model's exact detection format.

Coordinates are pixels of the image the model sees (the resized tile). An object kept
whole by the 0.7 rule can reach past the tile; its vertices are clipped to the image
bounds only, so the answer never holds a negative or out-of-image number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rscovlm.formats.prompts import format_detection_answer

__all__ = ["clip_to_image", "scale_quads", "render_answer"]


def clip_to_image(quads: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Clamp x to [0, w] and y to [0, h]."""
    arr = np.asarray(quads, dtype=np.float64).reshape(-1, 8).copy()
    width, height = size_wh
    arr[:, 0::2] = np.clip(arr[:, 0::2], 0, width)
    arr[:, 1::2] = np.clip(arr[:, 1::2], 0, height)
    return arr


def scale_quads(quads: np.ndarray, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray:
    """Quads in pixels of an image of size ``from_wh`` -> pixels of the same image resized to ``to_wh``."""
    arr = np.asarray(quads, dtype=np.float64).reshape(-1, 8).copy()
    arr[:, 0::2] *= to_wh[0] / from_wh[0]
    arr[:, 1::2] *= to_wh[1] / from_wh[1]
    return arr


def render_answer(quads: np.ndarray, labels: Sequence[str], size_wh: tuple[int, int], form: str = "quad") -> str:
    """The target text for these objects on an image of ``size_wh``; none gives ``There are none.``."""
    return format_detection_answer(clip_to_image(quads, size_wh), list(labels), form=form)
