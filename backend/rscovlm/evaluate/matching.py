"""Deciding which detection found which ground truth.

Two rules, because the numbers they feed answer different questions:

* ``score_order_outcomes`` is the rule behind AP in both DOTA_devkit and mmrotate:
  detections are visited from the highest score down, each looks only at the ground
  truth it overlaps most (no second choice) and takes it if the IoU passes and nobody
  took it before. Later detections on a taken object are false positives.
* ``one_to_one_matches`` is for the confidence-free operating point (precision, recall,
  F1): there is no score order to follow, so it picks the pairing that matches the most
  objects, and among those the one with the largest total IoU (an optimal assignment with
  ``scipy.optimize.linear_sum_assignment``). Each detection and each ground truth is used
  at most once. Greedy pairing by IoU can leave an object unmatched that an optimal
  pairing would find, and the result would depend on ties; the optimum does neither.
  The assignment is solved per connected group of overlapping pairs, which keeps it
  cheap on images with thousands of objects.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

TRUE_POSITIVE = 1
FALSE_POSITIVE = 0
IGNORED = -1


def best_matches(
    n_dets: int, det_idx: np.ndarray, gt_idx: np.ndarray, iou: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection: the ground truth it overlaps most (-1 if none) and that IoU.

    Ties go to the pair listed first, which is the first ground truth in input order when
    the pairs come sorted by ground truth, as ``numpy.argmax`` does in both reference tools.
    """
    best_gt = np.full(n_dets, -1, dtype=np.intp)
    best_iou = np.zeros(n_dets, dtype=np.float64)
    if len(det_idx) == 0:
        return best_gt, best_iou
    # Sort by detection, then IoU descending, then ground truth ascending; the first row
    # per detection is its best match.
    order = np.lexsort((gt_idx, -iou, det_idx))
    dets_sorted = det_idx[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = dets_sorted[1:] != dets_sorted[:-1]
    chosen = order[first]
    best_gt[det_idx[chosen]] = gt_idx[chosen]
    best_iou[det_idx[chosen]] = iou[chosen]
    return best_gt, best_iou


def score_order_outcomes(
    visit_order: np.ndarray,
    best_gt: np.ndarray,
    passes: np.ndarray,
    best_is_difficult: np.ndarray,
) -> np.ndarray:
    """TRUE_POSITIVE / FALSE_POSITIVE / IGNORED per detection under the score-order rule.

    ``visit_order`` lists detection indexes from the highest score down; ``best_gt`` holds
    dataset-wide ground-truth ids; ``passes`` says whether the best IoU clears the
    threshold; ``best_is_difficult`` whether that best ground truth is ignored (then the
    detection is neither right nor wrong, however many detections land on it).
    """
    outcome = np.full(len(best_gt), FALSE_POSITIVE, dtype=np.int8)
    outcome[passes & best_is_difficult] = IGNORED
    claims = passes & ~best_is_difficult
    claimants = visit_order[claims[visit_order]]  # in visit order
    if claimants.size:
        _, first = np.unique(best_gt[claimants], return_index=True)
        outcome[claimants[first]] = TRUE_POSITIVE
    return outcome


def one_to_one_matches(
    det_idx: np.ndarray, gt_idx: np.ndarray, iou: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality, then maximum-IoU, pairing of the given candidate pairs.

    The pairs are those that already pass the IoU threshold. Returns matched
    (detection, ground truth) index arrays; no index appears twice on either side.
    """
    det_idx = np.asarray(det_idx, dtype=np.intp)
    gt_idx = np.asarray(gt_idx, dtype=np.intp)
    iou = np.asarray(iou, dtype=np.float64)
    if det_idx.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)

    dets, det_local = np.unique(det_idx, return_inverse=True)
    gts, gt_local = np.unique(gt_idx, return_inverse=True)
    n_nodes = len(dets) + len(gts)
    graph = coo_matrix(
        (np.ones(len(det_local)), (det_local, len(dets) + gt_local)),
        shape=(n_nodes, n_nodes),
    )
    _, component = connected_components(graph, directed=False)
    pair_component = component[det_local]
    pairs_per_component = np.bincount(pair_component)

    # A component made of one pair needs no solver: the pair is the match.
    lone = pairs_per_component[pair_component] == 1
    matched_det = [det_idx[lone]]
    matched_gt = [gt_idx[lone]]

    crowded = np.flatnonzero(~lone)
    crowded = crowded[np.argsort(pair_component[crowded], kind="stable")]
    splits = np.flatnonzero(np.diff(pair_component[crowded])) + 1
    for group in np.split(crowded, splits):
        if group.size == 0:
            continue
        rows, row_of = np.unique(det_idx[group], return_inverse=True)
        cols, col_of = np.unique(gt_idx[group], return_inverse=True)
        # Weight = (a constant larger than any possible matching's IoU sum) + IoU, so the
        # solver first maximises the number of matches, then their total IoU.
        bonus = min(len(rows), len(cols)) + 1.0
        weight = np.zeros((len(rows), len(cols)))
        weight[row_of, col_of] = bonus + iou[group]
        r, c = linear_sum_assignment(weight, maximize=True)
        real = weight[r, c] > 0
        matched_det.append(rows[r[real]])
        matched_gt.append(cols[c[real]])
    return np.concatenate(matched_det), np.concatenate(matched_gt)
