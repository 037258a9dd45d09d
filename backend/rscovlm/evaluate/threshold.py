"""Choosing a score threshold the honest way: on validation images, measured on the others.

A scored detector is used at one threshold (objects below it are hidden), and F1 there
is its operating point. Chosen on the very images it is then measured on, that F1 is
optimistic; so the images are split, deterministically, into a validation part where
the threshold that maximises mean F1 is found and a test part where F1 is reported at
that threshold (beside the confidence-free F1 of all detections on the same test images).

The split does not depend on the order images come in: images are ranked by a hash of
their id and the first ``fraction`` of them validate. With a single image there is
nothing to split: the threshold is chosen and measured on it, and the result says so.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ThresholdChoice", "split_images", "candidate_thresholds", "MAX_CANDIDATES"]

#: At most this many candidate thresholds are tried (quantiles of the validation scores):
#: enough for any F1 curve, and bounded on large datasets.
MAX_CANDIDATES = 200


def split_images(image_ids: Iterable[str], fraction: float) -> tuple[list[str], list[str]]:
    """(validation, test) image ids; both non-empty when there are two images or more."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must lie between 0 and 1, got {fraction}")
    ids = sorted(set(image_ids), key=lambda i: (hashlib.sha1(i.encode("utf-8")).hexdigest(), i))
    if len(ids) < 2:
        return ids, ids
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return sorted(ids[:count]), sorted(ids[count:])


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """The distinct scores (each a threshold that keeps it), thinned to quantiles when many."""
    values = np.unique(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    if len(values) > MAX_CANDIDATES:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, MAX_CANDIDATES), method="lower"))
    return values


@dataclass
class ThresholdChoice:
    """The operating point of a scored detector: a threshold from validation images, F1 on the rest."""

    threshold: float
    validation_fraction: float
    validation_images: list[str]
    test_images: list[str]
    validation_f1: float  # at the chosen threshold, on the validation images
    precision: float  # at the threshold, on the test images (mean over classes with ground truth)
    recall: float
    f1: float
    confidence_free_f1: float  # every detection, on the same test images
    notes: list[str] = field(default_factory=list)

    @property
    def same_images(self) -> bool:
        return self.validation_images == self.test_images

    def to_dict(self) -> dict:
        def num(v: float) -> float | None:
            return None if v is None or math.isnan(v) else float(v)

        return {
            "threshold": num(self.threshold),
            "validation_fraction": self.validation_fraction,
            "validation_images": self.validation_images,
            "test_images": self.test_images,
            "validation_f1": num(self.validation_f1),
            "precision": num(self.precision),
            "recall": num(self.recall),
            "f1": num(self.f1),
            "confidence_free_f1": num(self.confidence_free_f1),
            "notes": self.notes,
        }
