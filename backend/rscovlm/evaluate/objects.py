"""The data model every evaluation function shares: images holding oriented objects.

A dataset is a plain mapping ``image_id -> list[EvalObject]``, so ground truth from a
DOTA labelTxt folder, predictions from a GeoPackage and test fixtures written by hand all
look the same to the metrics. Coordinates are whatever the two sides share (image pixels
or one map CRS); only relative geometry matters to IoU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EvalObject:
    """One oriented object: a quadrilateral, its class, and what the metrics need to know.

    ``quad`` is ``(x1, y1, x2, y2, x3, y3, x4, y4)``. ``difficult`` marks ground truth that
    DOTA_devkit ignores. ``score`` is a detector's confidence; a VLM gives none (``None``).
    """

    quad: tuple[float, float, float, float, float, float, float, float]
    cls: str
    difficult: bool = False
    score: float | None = None

    def __post_init__(self) -> None:
        if len(self.quad) != 8:
            raise ValueError(f"a quad has 8 coordinates, got {len(self.quad)}")


Dataset = Mapping[str, Sequence[EvalObject]]


def make_object(
    quad: Sequence[float], cls: str, difficult: bool = False, score: float | None = None
) -> EvalObject:
    """Build an object from any 8-number sequence (list, numpy row)."""
    return EvalObject(
        tuple(float(v) for v in quad),  # type: ignore[arg-type]
        cls,
        bool(difficult),
        None if score is None else float(score),
    )


def dataset_classes(dataset: Dataset) -> list[str]:
    """The sorted class names that occur in a dataset."""
    return sorted({obj.cls for objects in dataset.values() for obj in objects})


def has_scores(dataset: Dataset) -> bool:
    """True when every object carries a score (a conventional detector's output)."""
    objects = [obj for objs in dataset.values() for obj in objs]
    return bool(objects) and all(
        obj.score is not None and np.isfinite(obj.score) for obj in objects
    )
