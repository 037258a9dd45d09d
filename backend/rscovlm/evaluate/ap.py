"""Average precision from a ranked list of true/false positives.

Both reference tools default to the PASCAL VOC 2007 "11-point" AP; mmrotate can also
integrate the whole interpolated curve ("area", VOC 2010+). The 11 recall levels are
generated exactly as both tools do (``numpy.arange(0, 1.1, 0.1)``), whose floating-point
steps are slightly above the round decimals (0.30000000000000004): a recall of exactly
0.3 does not reach that level there, and does not here either, so numbers agree.
"""

from __future__ import annotations

import numpy as np

AP_MODES = ("11point", "area")
_ELEVEN_LEVELS = np.arange(0.0, 1.1, 0.1)


def precision_recall(
    is_tp_ranked: np.ndarray, n_positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (precision, recall) after each ranked detection.

    ``is_tp_ranked`` holds booleans in score order, ignored detections already removed.
    With no positives to find, recall is 0 throughout (both tools then report AP 0).
    """
    tp = np.cumsum(np.asarray(is_tp_ranked, dtype=np.float64))
    fp = np.cumsum(1.0 - np.asarray(is_tp_ranked, dtype=np.float64))
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    recall = tp / n_positives if n_positives > 0 else np.zeros_like(tp)
    return precision, recall


def average_precision(
    precision: np.ndarray, recall: np.ndarray, mode: str = "11point"
) -> float:
    """AP of one class: VOC07 11-point mean of interpolated precision, or the curve area."""
    if mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {mode!r}; use one of {AP_MODES}")
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if mode == "11point":
        total = 0.0
        for level in _ELEVEN_LEVELS:
            reached = precision[recall >= level]
            total += float(reached.max()) if reached.size else 0.0
        return total / 11.0
    # Area under the precision envelope (precision made monotonically non-increasing).
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
