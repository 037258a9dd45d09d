"""Merge detections from overlapping tiles into one set, with or without confidence scores.

mmrotate merges patch detections per class with greedy polygon NMS at IoU 0.1, ordered by
score. RSCoVLM writes no score (scores made from its token probabilities, :mod:`rscovlm.scores`,
may or may not be there), so the order is defined here, and it never depends on the
order of the input:

1. detections lying wholly inside their tile come before those touching an inner tile
   edge (those may be truncated pieces of an object that continues next door, and a
   confident piece is still a piece);
2. then, when scores are given and ``MergeConfig.order_by_score`` is set, the higher score
   first (NaN last): of two sightings of one object, the better-scored one is kept. Off by
   default (``rscovlm.defaults.MERGE_BY_SCORE``): measured with the demo model, the
   better-scored sighting was the worse box (AP50 34.6 against 36.2, bench/README.md);
3. then larger area first (of two pieces of one object, the larger is the more complete);
4. then tile id, min x, min y and finally all coordinates, so exact ties are still ordered.

Without scores (``scores=None``, or all NaN) step 2 is skipped and the result is exactly
the score-free merge (``MergeConfig.order_by_score=False`` skips it too, but still scores
the survivors: the study compares score definitions on the very same objects that way).

A candidate is suppressed by an already kept detection of the same class when

- IoU >= ``iou_threshold`` (default 0.1, the paper's / mmrotate's merge setting: with
  overlapping tiles one object is seen twice at nearly the same place, while distinct
  objects of one class rarely overlap at all in overhead imagery), or
- IOS (intersection over the smaller area) >= ``ios_threshold`` (default 0.5, SAHI's
  default) and the smaller of the two touches an inner tile edge. A piece cut by a tile
  edge has a small IoU with the whole object but lies mostly inside it; the edge condition
  keeps a small object that merely overlaps a big one (a car under a bridge) from vanishing.

``support`` counts the distinct tiles among a kept detection and those it suppressed: how
many tiles agreed on the object, the natural confidence of a score-free detector. It is
never changed by scores.

A kept object's ``score`` combines the scores of its group (itself and what it absorbed)
by ``MergeConfig.score_rule`` (``SCORE_RULES``): ``own`` (the kept detection's), ``max``,
``mean``, or ``noisy_or`` (1 - the product over the group's distinct tiles of 1 - that
tile's best score: each tile that saw the object is one more piece of evidence, so score and
support combine). The default, ``rscovlm.defaults.SCORE_MERGE``, is the one that ranked
best in ``bench/score_study.py``: ``own``, the survivor's own score; ``support`` stays its
own column (folding it in by noisy-or ranked worse).

Speed: candidate pairs come from an STRtree bounding-box query; exact intersection areas are
computed for all pairs at once (numpy polygon clipping for convex quads, which is nearly
all of them, vectorised shapely for the rest); and the greedy pass walks only detections that have
neighbours, over a sparse pair list. About 100,000 quads merge in well under 2 s on 2 cores
(``bench/bench_merge.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from rscovlm import defaults
from rscovlm.errors import UserError
from rscovlm.geometry import is_convex, pair_overlaps, quad_areas, quads_to_polygons, valid_polygons

__all__ = ["MergeConfig", "MergeResult", "merge_detections", "merge_order", "group_scores", "SCORE_RULES"]

SCORE_RULES = ("own", "max", "mean", "noisy_or")


@dataclass(frozen=True)
class MergeConfig:
    """Thresholds of the tile merge (see the module docstring for why these defaults)."""

    iou_threshold: float = 0.1
    ios_threshold: float | None = 0.5  # None: no truncated-piece rule
    score_rule: str = defaults.SCORE_MERGE  # how a kept object's score comes from its group's
    order_by_score: bool = defaults.MERGE_BY_SCORE  # False: the score-free choice of survivors, scored

    def __post_init__(self) -> None:
        if self.score_rule not in SCORE_RULES:
            raise UserError(f"Unknown score rule {self.score_rule!r}: use one of {', '.join(SCORE_RULES)}.")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise UserError(f"The merge IoU threshold must be above 0 and at most 1; got {self.iou_threshold}.")
        if self.ios_threshold is not None and not 0.0 < self.ios_threshold <= 1.0:
            raise UserError(
                f"The merge IOS threshold must be above 0 and at most 1 (or unset); got {self.ios_threshold}."
            )


@dataclass
class MergeResult:
    keep: np.ndarray  # (K,) int indexes into the input, in merge order
    support: np.ndarray  # (K,) int, distinct tiles that saw each kept detection (>= 1)
    suppressed_by: np.ndarray  # (N,) int, index of the kept detection that absorbed it, -1 if kept
    scores: np.ndarray | None = None  # (K,) float, the kept objects' scores by the score rule (NaN: none)


def merge_order(
    quads: np.ndarray, areas: np.ndarray, tile_ids: np.ndarray, inner_edge: np.ndarray,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Indexes in priority order: inside-tile first, higher score, larger area, tile id, min x, min y, coords."""
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    keys = [quads[:, c] for c in range(7, -1, -1)]  # last tie-breaks first (lexsort reads keys backwards)
    keys += [ys.min(axis=1), xs.min(axis=1), tile_ids, -areas]
    if scores is not None:
        keys.append(-np.where(np.isnan(scores), -np.inf, scores))  # NaN after every real score
    keys.append(inner_edge.astype(np.int8))
    return np.lexsort(keys)


def group_scores(
    scores: np.ndarray, keep: np.ndarray, suppressed_by: np.ndarray, tile_ids: np.ndarray, rule: str
) -> np.ndarray:
    """Each kept detection's score from its group's (itself and what it absorbed); NaN ones are left out."""
    if rule not in SCORE_RULES:
        raise ValueError(f"unknown score rule {rule!r}; use one of {SCORE_RULES}")
    scores = np.asarray(scores, dtype=np.float64)
    if rule == "own":
        return scores[keep]
    n = len(scores)
    owner = np.where(suppressed_by < 0, np.arange(n), suppressed_by)
    real = ~np.isnan(scores)
    owner, values, tiles = owner[real], scores[real], np.asarray(tile_ids)[real]
    counted = np.bincount(owner, minlength=n)
    if rule == "max":
        best = np.full(n, -np.inf)
        np.maximum.at(best, owner, values)
        out = best
    elif rule == "mean":
        out = np.bincount(owner, weights=values, minlength=n) / np.maximum(counted, 1)
    else:  # noisy_or: each distinct tile's best sighting is one piece of evidence
        pairs, where = np.unique(np.stack([owner, tiles]), axis=1, return_inverse=True)
        best = np.full(pairs.shape[1], -np.inf)
        np.maximum.at(best, where.reshape(-1), values)
        with np.errstate(divide="ignore"):
            doubt = np.bincount(pairs[0], weights=np.log1p(-best), minlength=n)  # log of the product of 1 - s
        out = -np.expm1(doubt)
    out = np.where(counted > 0, out, np.nan)
    return out[keep]


def merge_detections(
    quads_img,
    labels,
    tile_ids,
    inner_edge,
    config: MergeConfig = MergeConfig(),
    scores=None,
) -> MergeResult:
    """Per-class greedy suppression across tiles with a deterministic order (image pixels).

    ``scores`` (N,) in [0, 1], NaN where a detection has none, or None: see the module's docstring.
    """
    quads = np.asarray(quads_img, dtype=np.float64).reshape(-1, 8)
    n = len(quads)
    labels = np.asarray(labels)
    tile_ids = np.asarray(tile_ids, dtype=np.int64).reshape(-1)
    inner_edge = np.asarray(inner_edge, dtype=bool).reshape(-1)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if np.isnan(scores).all():
            scores = None  # no score anywhere: the score-free merge, exactly
    if not (len(labels) == len(tile_ids) == len(inner_edge) == n) or (scores is not None and len(scores) != n):
        raise ValueError(
            f"merge inputs disagree in length: {n} quads, {len(labels)} labels, "
            f"{len(tile_ids)} tile ids, {len(inner_edge)} edge flags"
            + (f", {len(scores)} scores" if scores is not None else "")
        )
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return MergeResult(empty, empty.copy(), empty.copy())

    _, classes = np.unique(labels, return_inverse=True)
    polygons = quads_to_polygons(quads)
    convex = is_convex(quads)
    areas = quad_areas(quads)
    if not convex.all():  # bow-ties and slivers: let GEOS repair and measure them
        polygons[~convex] = valid_polygons(polygons[~convex])
        areas[~convex] = shapely.area(polygons[~convex])
    order = merge_order(quads, areas, tile_ids, inner_edge, scores if config.order_by_score else None)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    # candidate pairs: overlapping bounding boxes, same class, each pair once
    a, b = shapely.STRtree(polygons).query(polygons)
    same = (classes[a] == classes[b]) & (a < b)
    a, b = a[same], b[same]
    _, iou, ios = pair_overlaps(polygons, areas, a, b, quads=quads)
    linked = iou >= config.iou_threshold
    if config.ios_threshold is not None:
        smaller_is_a = areas[a] <= areas[b]
        smaller_is_b = areas[b] <= areas[a]
        piece_at_edge = (smaller_is_a & inner_edge[a]) | (smaller_is_b & inner_edge[b])
        linked |= (ios >= config.ios_threshold) & piece_at_edge
    a, b = a[linked], b[linked]

    # orient each link from the higher-priority detection to the lower one, group by source
    a_first = rank[a] < rank[b]
    source = np.where(a_first, a, b)
    target = np.where(a_first, b, a)
    by_source = np.lexsort((rank[target], rank[source]))
    source, target = source[by_source], target[by_source]
    sources, starts = np.unique(rank[source], return_index=True)
    ends = np.append(starts[1:], len(source))

    suppressed_by = np.full(n, -1, dtype=np.int64)
    holder = suppressed_by.tolist()  # plain lists: the walk touches few items per source
    targets = target.tolist()
    for src_rank, start, end in zip(sources.tolist(), starts.tolist(), ends.tolist()):
        src = int(order[src_rank])
        if holder[src] >= 0:
            continue  # already absorbed by a higher-priority detection
        for t in targets[start:end]:
            if holder[t] < 0:
                holder[t] = src
    suppressed_by[:] = holder

    kept_mask = suppressed_by < 0
    keep = order[kept_mask[order]]
    # support: distinct tiles among the kept detection and everything it absorbed
    owner = np.where(kept_mask, np.arange(n), suppressed_by)
    pairs = np.unique(np.stack([owner, tile_ids]), axis=1)
    counts = np.bincount(pairs[0], minlength=n)
    keep = keep.astype(np.int64)
    kept_scores = (
        None if scores is None else group_scores(scores, keep, suppressed_by, tile_ids, config.score_rule)
    )
    return MergeResult(keep=keep, support=counts[keep].astype(np.int64), suppressed_by=suppressed_by,
                       scores=kept_scores)
