"""Training-time variation: random input sizes with boxes scaled along, paraphrased prompts.

The paper trains with images randomly resized between min and max pixels so the model
is robust to scale (the answer is re-rendered in the new pixels), and samples several
phrasings of the request. The exact inference prompt stays the most frequent so the
model keeps answering it best.
"""

from __future__ import annotations

import math
import random

from rscovlm.model_input import IMAGE_FACTOR, smart_resize

__all__ = ["PARAPHRASES", "sample_user_prompt", "random_input_size"]

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
