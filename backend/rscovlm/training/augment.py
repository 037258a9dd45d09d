"""Training-time variation: random input sizes with boxes scaled along, paraphrased prompts,
and (optionally) random flips and quarter turns.

The paper trains with images randomly resized between min and max pixels so the model
is robust to scale (the answer is re-rendered in the new pixels), and samples several
phrasings of the request. The exact inference prompt stays the most frequent so the
model keeps answering it best. Seen from above, a scene has no "up": each of the eight
flips and quarter turns of a tile is another valid sample, which is what a small
training set needs most (mmrotate's RandomFlip and RandomRotate do the same).
"""

from __future__ import annotations

import math
import random

import numpy as np

from rscovlm.model_input import IMAGE_FACTOR, smart_resize

__all__ = ["PARAPHRASES", "DIHEDRAL", "sample_user_prompt", "random_input_size", "dihedral_quads"]

# The first one is the exact prompt RSCoVLM is queried with (formats.prompts).
PARAPHRASES: tuple[str, ...] = (
    "find the {categories}.",
    "Find the {categories}.",
    "find the {categories}",
    "detect the {categories}.",
    "locate every {categories} in the image.",
    "Find all the {categories} in this image.",
)


def sample_user_prompt(categories: str, rng: random.Random, exact_probability: float = 0.5) -> str:
    """The exact prompt with ``exact_probability``, otherwise one of the paraphrases."""
    if rng.random() < exact_probability:
        return PARAPHRASES[0].format(categories=categories)
    return rng.choice(PARAPHRASES[1:]).format(categories=categories)


def random_input_size(
    width: int, height: int, rng: random.Random, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """A random ``(w, h)`` with the image's aspect, a pixel count uniform in [min, max], multiples of 28."""
    target = rng.uniform(min_pixels, max_pixels)
    scale = math.sqrt(target / (width * height))
    h, w = smart_resize(height * scale, width * scale, IMAGE_FACTOR, min_pixels, max_pixels)
    return w, h


# The eight symmetries of a rectangle, as PIL transposes (None: unchanged).
DIHEDRAL: tuple[str | None, ...] = (
    None, "FLIP_LEFT_RIGHT", "FLIP_TOP_BOTTOM", "ROTATE_180",
    "ROTATE_90", "ROTATE_270", "TRANSPOSE", "TRANSVERSE",
)


def dihedral_quads(quads: np.ndarray, size_wh: tuple[int, int], transpose: str | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Quads on a ``w x h`` image -> the same points after PIL's ``Image.transpose(transpose)``, and the new size.

    Coordinates are continuous (pixel edges at integers), so a flip maps x to ``w - x``.
    ROTATE_90 is PIL's: counter-clockwise.
    """
    arr = np.asarray(quads, dtype=np.float64).reshape(-1, 8)
    x, y = arr[:, 0::2], arr[:, 1::2]
    w, h = size_wh
    mapped = {
        None: (x, y, (w, h)),
        "FLIP_LEFT_RIGHT": (w - x, y, (w, h)),
        "FLIP_TOP_BOTTOM": (x, h - y, (w, h)),
        "ROTATE_180": (w - x, h - y, (w, h)),
        "ROTATE_90": (y, w - x, (h, w)),
        "ROTATE_270": (h - y, x, (h, w)),
        "TRANSPOSE": (y, x, (h, w)),
        "TRANSVERSE": (h - y, w - x, (h, w)),
    }
    if transpose not in mapped:
        raise ValueError(f"unknown transpose {transpose!r}; use one of {DIHEDRAL}")
    new_x, new_y, new_size = mapped[transpose]
    out = np.empty_like(arr)
    out[:, 0::2], out[:, 1::2] = new_x, new_y
    return out, new_size
