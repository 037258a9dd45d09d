"""DOTA Task-1 metrics under a named convention: AP, mAP_nc and confidence-free P/R/F1.

The two public conventions give different numbers on the same files, so every number
says which one it follows:

``dota_devkit`` (``dota_evaluation_task1``)
    IoU of the raw polygons; a match needs IoU > threshold (strict); difficult ground
    truth is ignored (detections landing on it are neither right nor wrong) and left out
    of recall; VOC07 11-point AP; mAP = sum over the class list / its length, so a listed
    class without ground truth counts as AP 0.
``mmrotate`` (``eval_rbbox_map``)
    IoU of minimum-area rectangles of both sides; a match needs IoU >= threshold; nothing
    is difficult by default; 11-point AP by default ('area' optional); mAP is the mean
    over the classes that have ground truth.

In both, detections are ranked by score over the whole dataset and each one may only
take the ground truth it overlaps most. A VLM gives no score, so its ranking is
undefined: ``mAP_nc`` ranks by random scores instead, averaged over several seeds (as the
RSCoVLM authors did), and reports the spread. Precision, recall and F1 need no ranking:
they come from an optimal one-to-one pairing (see ``matching``).

With real scores (every prediction has one; for RSCoVLM they come from its token
probabilities, :mod:`rscovlm.scores`) AP ranks by them and mAP_nc is still reported
beside it, from the same predictions, so what the scores are worth is one subtraction.
The scored detector's operating point is F1 at a score threshold chosen on validation
images and measured on the others (:mod:`.threshold`), beside the confidence-free F1.

Everything here is pure: datasets in, a result object out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .ap import AP_MODES, average_precision, precision_recall
from .matching import (
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
    best_matches,
    one_to_one_matches,
    score_order_outcomes,
)
from .objects import Dataset, EvalObject, dataset_classes, has_scores
from .overlap import min_area_rectangles, pairwise_iou, quads_to_polygons
from .threshold import ThresholdChoice, candidate_thresholds, split_images

CONVENTIONS = ("dota_devkit", "mmrotate")
COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.50:0.05:0.95
AP_KEYS = ("AP50", "AP75", "AP50:95")


@dataclass(frozen=True)
class Convention:
    """How one reference tool turns matches into numbers."""

    name: str
    strict: bool  # IoU must exceed the threshold (True) or only reach it (False)
    rectangles: bool  # compare minimum-area rectangles instead of the raw polygons
    ignore_difficult: bool
    ap_mode: str
    map_over_listed_classes: bool  # False: only classes that have ground truth

    def passes(self, iou: np.ndarray, threshold: float) -> np.ndarray:
        return iou > threshold if self.strict else iou >= threshold


def get_convention(
    name: str, ap_mode: str | None = None, ignore_difficult: bool | None = None
) -> Convention:
    """The named convention with its reference defaults; mmrotate's options may be changed.

    DOTA_devkit has no options (it is defined by its script). mmrotate can use 'area' AP
    and can be told to ignore difficult objects, as its dataset's ``difficulty`` setting does.
    """
    if name == "dota_devkit":
        if ap_mode not in (None, "11point") or ignore_difficult is False:
            raise ValueError("the dota_devkit convention is fixed: 11-point AP, difficult ignored")
        return Convention(name, True, False, True, "11point", True)
    if name == "mmrotate":
        mode = ap_mode or "11point"
        if mode not in AP_MODES:
            raise ValueError(f"unknown AP mode {mode!r}; use one of {AP_MODES}")
        return Convention(name, False, True, bool(ignore_difficult), mode, False)
    raise ValueError(f"unknown convention {name!r}; use one of {CONVENTIONS}")


@dataclass
class ClassResult:
    """Every number for one class. NaN means "not defined" (e.g. recall without ground truth)."""

    name: str
    ground_truth: int  # objects that count (difficult ones excluded where ignored)
    difficult_ignored: int
    detections: int
    ap: dict[str, float]  # AP50 / AP75 / AP50:95, from scores or the mean over seeds
    ap_nc_mean: dict[str, float]
    ap_nc_std: dict[str, float]
    true_positives: int
    false_positives: int
    false_negatives: int
    ignored_detections: int
    precision: float
    recall: float
    f1: float
    curve_recall: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    curve_precision: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict:
        return {
            "class": self.name,
            "ground_truth": self.ground_truth,
            "difficult_ignored": self.difficult_ignored,
            "detections": self.detections,
            "ap": _clean(self.ap),
            "ap_nc_mean": _clean(self.ap_nc_mean),
            "ap_nc_std": _clean(self.ap_nc_std),
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "ignored_detections": self.ignored_detections,
            "precision": _nan_to_none(self.precision),
            "recall": _nan_to_none(self.recall),
            "f1": _nan_to_none(self.f1),
        }


@dataclass
class EvaluationResult:
    """A whole evaluation under one convention."""

    convention: str
    ap_mode: str
    iou: float  # threshold of the precision/recall/F1 operating point and of the curves
    classes: list[str]
    scored: bool  # True: AP used the detections' scores; False: mean over random scores
    seeds: int
    base_seed: int
    per_class: list[ClassResult]
    map: dict[str, float]
    map_nc_mean: dict[str, float]
    map_nc_std: dict[str, float]
    mean_precision: float
    mean_recall: float
    mean_f1: float
    mean_over: list[str]  # the classes the means average
    unlisted_predictions: int  # predictions of classes outside the list, left out
    unlisted_ground_truth: int
    threshold: ThresholdChoice | None = None  # scored predictions only: F1 at a validated threshold

    def to_dict(self) -> dict:
        return {
            "convention": self.convention,
            "ap_mode": self.ap_mode,
            "iou": self.iou,
            "classes": self.classes,
            "scored": self.scored,
            "seeds": self.seeds,
            "base_seed": self.base_seed,
            "map": _clean(self.map),
            "map_nc_mean": _clean(self.map_nc_mean),
            "map_nc_std": _clean(self.map_nc_std),
            "mean_precision": _nan_to_none(self.mean_precision),
            "mean_recall": _nan_to_none(self.mean_recall),
            "mean_f1": _nan_to_none(self.mean_f1),
            "mean_over": self.mean_over,
            "unlisted_predictions": self.unlisted_predictions,
            "unlisted_ground_truth": self.unlisted_ground_truth,
            "threshold": self.threshold.to_dict() if self.threshold is not None else None,
            "per_class": [c.to_dict() for c in self.per_class],
        }


def evaluate(
    truth: Dataset,
    predictions: Dataset,
    convention: str = "dota_devkit",
    classes: Sequence[str] | None = None,
    iou: float = 0.5,
    seeds: int = 10,
    base_seed: int = 0,
    ap_mode: str | None = None,
    ignore_difficult: bool | None = None,
    validation_fraction: float | None = 0.5,
) -> EvaluationResult:
    """Evaluate ``predictions`` against ``truth`` under one named convention.

    ``classes`` defaults to the classes present in the truth; objects of other classes are
    left out (and counted). Predictions on images that the truth does not list are false
    positives, as there is nothing there to find. ``seeds`` random score orders give
    mAP_nc; they are drawn from ``base_seed`` so a run is reproducible. When every
    prediction has a score, ``validation_fraction`` of the images choose the score
    threshold of the best F1 and the others measure it (None: not done).
    """
    conv = get_convention(convention, ap_mode, ignore_difficult)
    if not 0.0 < iou < 1.0:
        raise ValueError(f"the IoU threshold must lie between 0 and 1, got {iou}")
    if seeds < 1:
        raise ValueError("at least one random seed is needed for mAP_nc")
    class_list = list(dict.fromkeys(classes)) if classes else dataset_classes(truth)
    if not class_list:
        raise ValueError("there are no classes to evaluate: the truth holds no objects")

    data, unlisted_pred, unlisted_truth = _collect(truth, predictions, class_list, conv)
    scored = has_scores(predictions)
    thresholds = sorted(set(COCO_THRESHOLDS) | {0.5, 0.75})

    random_scores = _random_scores(
        [d.n_dets for d in data.values()], seeds, base_seed
    )
    per_class: list[ClassResult] = []
    per_seed_ap: dict[str, np.ndarray] = {}
    for k, name in enumerate(class_list):
        d = data[name]
        orders = [np.argsort(-scores, kind="stable") for scores in random_scores[k]]
        seed_aps = np.array(
            [_ap_by_key(d, order, thresholds, conv) for order in orders]
        )  # (seeds, len(AP_KEYS))
        per_seed_ap[name] = seed_aps
        if scored:
            scored_order = np.argsort(-d.scores, kind="stable")
            ap_values = _ap_by_key(d, scored_order, thresholds, conv)
            curve_order = scored_order
        else:
            ap_values = seed_aps.mean(axis=0)
            curve_order = orders[0]
        curve_p, curve_r = _curve(d, curve_order, iou, conv)
        per_class.append(
            _class_result(d, name, ap_values, seed_aps, curve_p, curve_r, iou, conv)
        )

    mean_over = [
        c.name for c in per_class if conv.map_over_listed_classes or c.ground_truth > 0
    ]
    prf_over = [c for c in per_class if c.ground_truth > 0]
    map_values, map_nc_mean, map_nc_std = {}, {}, {}
    for j, key in enumerate(AP_KEYS):
        by_class = {c.name: c.ap[key] for c in per_class}
        map_values[key] = _mean([by_class[n] for n in mean_over])
        if mean_over:
            per_seed_map = np.mean([per_seed_ap[n][:, j] for n in mean_over], axis=0)
            map_nc_mean[key] = float(per_seed_map.mean())
            map_nc_std[key] = float(per_seed_map.std())
        else:
            map_nc_mean[key] = map_nc_std[key] = math.nan

    threshold = None
    if scored and validation_fraction is not None:
        threshold = choose_threshold(truth, predictions, conv, class_list, iou, validation_fraction)
    return EvaluationResult(
        threshold=threshold,
        convention=conv.name,
        ap_mode=conv.ap_mode,
        iou=iou,
        classes=class_list,
        scored=scored,
        seeds=seeds,
        base_seed=base_seed,
        per_class=per_class,
        map=map_values,
        map_nc_mean=map_nc_mean,
        map_nc_std=map_nc_std,
        mean_precision=_mean([c.precision for c in prf_over]),
        mean_recall=_mean([c.recall for c in prf_over]),
        mean_f1=_mean([c.f1 for c in prf_over]),
        mean_over=mean_over,
        unlisted_predictions=unlisted_pred,
        unlisted_ground_truth=unlisted_truth,
    )


# --------------------------------------------------------------------------- internals


@dataclass
class _ClassData:
    """One class across the dataset, with indexes that are unique over all images."""

    scores: np.ndarray  # (D,) NaN where a detection has none
    gt_ignored: np.ndarray  # (G,) bool: difficult and the convention ignores it
    pair_det: np.ndarray  # sparse IoU > 0 pairs (same image, same class)
    pair_gt: np.ndarray
    pair_iou: np.ndarray
    best_gt: np.ndarray  # (D,) -1 where the detection overlaps nothing
    best_iou: np.ndarray

    @property
    def n_dets(self) -> int:
        return len(self.scores)

    @property
    def n_counted_gt(self) -> int:
        return int((~self.gt_ignored).sum())

    def best_is_ignored(self) -> np.ndarray:
        out = np.zeros(self.n_dets, dtype=bool)
        has = self.best_gt >= 0
        out[has] = self.gt_ignored[self.best_gt[has]]
        return out


def _collect(
    truth: Dataset, predictions: Dataset, classes: list[str], conv: Convention
) -> tuple[dict[str, _ClassData], int, int]:
    """Group objects by class, computing same-image IoU pairs once per image."""
    index = {name: k for k, name in enumerate(classes)}
    scores: list[list[float]] = [[] for _ in classes]
    ignored: list[list[bool]] = [[] for _ in classes]
    pairs: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in classes]
    unlisted_pred = unlisted_truth = 0

    for image_id in sorted(set(truth) | set(predictions)):
        dets = [o for o in predictions.get(image_id, ()) if o.cls in index]
        gts = [o for o in truth.get(image_id, ()) if o.cls in index]
        unlisted_pred += len(predictions.get(image_id, ())) - len(dets)
        unlisted_truth += len(truth.get(image_id, ())) - len(gts)
        det_cls = np.array([index[o.cls] for o in dets], dtype=np.intp)
        gt_cls = np.array([index[o.cls] for o in gts], dtype=np.intp)
        # Offsets of this image's objects in each class's dataset-wide numbering.
        det_base = np.array([len(s) for s in scores], dtype=np.intp)
        gt_base = np.array([len(g) for g in ignored], dtype=np.intp)
        det_rank = _rank_within_class(det_cls)
        gt_rank = _rank_within_class(gt_cls)
        for o, c in zip(dets, det_cls):
            scores[c].append(math.nan if o.score is None else float(o.score))
        for o, c in zip(gts, gt_cls):
            ignored[c].append(bool(o.difficult) and conv.ignore_difficult)
        if not dets or not gts:
            continue
        ia, ib, iou = pairwise_iou(_shapes(dets, conv), _shapes(gts, conv))
        same = det_cls[ia] == gt_cls[ib]
        ia, ib, iou = ia[same], ib[same], iou[same]
        cls_of_pair = det_cls[ia]
        for c in np.unique(cls_of_pair):
            sel = cls_of_pair == c
            pairs[c].append(
                (
                    det_base[c] + det_rank[ia[sel]],
                    gt_base[c] + gt_rank[ib[sel]],
                    iou[sel],
                )
            )

    data: dict[str, _ClassData] = {}
    for name, k in index.items():
        if pairs[k]:
            pd, pg, pi = (np.concatenate(p) for p in zip(*pairs[k]))
        else:
            pd, pg, pi = np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0)
        n_dets = len(scores[k])
        best_gt, best_iou = best_matches(n_dets, pd, pg, pi)
        data[name] = _ClassData(
            scores=np.array(scores[k], dtype=np.float64),
            gt_ignored=np.array(ignored[k], dtype=bool),
            pair_det=pd,
            pair_gt=pg,
            pair_iou=pi,
            best_gt=best_gt,
            best_iou=best_iou,
        )
    return data, unlisted_pred, unlisted_truth


def _rank_within_class(class_ids: np.ndarray) -> np.ndarray:
    """Position of each object among the objects of its own class, in input order."""
    rank = np.zeros(len(class_ids), dtype=np.intp)
    for c in np.unique(class_ids):
        sel = np.flatnonzero(class_ids == c)
        rank[sel] = np.arange(len(sel))
    return rank


def _shapes(objects: list[EvalObject], conv: Convention) -> np.ndarray:
    polygons = quads_to_polygons(np.array([o.quad for o in objects], dtype=np.float64))
    return min_area_rectangles(polygons) if conv.rectangles else polygons


def _random_scores(
    counts: list[int], seeds: int, base_seed: int
) -> list[list[np.ndarray]]:
    """Per class, per seed: uniform random scores, reproducible from ``base_seed``."""
    out: list[list[np.ndarray]] = [[] for _ in counts]
    total = int(sum(counts))
    bounds = np.cumsum([0, *counts])
    for child in np.random.SeedSequence(base_seed).spawn(seeds):
        drawn = np.random.default_rng(child).random(total)
        for k in range(len(counts)):
            out[k].append(drawn[bounds[k] : bounds[k + 1]])
    return out


def _ranked_tp(
    d: _ClassData, order: np.ndarray, threshold: float, conv: Convention
) -> np.ndarray:
    """Booleans (TP or not) in score order, with ignored detections removed."""
    passes = conv.passes(d.best_iou, threshold) & (d.best_gt >= 0)
    outcome = score_order_outcomes(order, d.best_gt, passes, d.best_is_ignored())
    ranked = outcome[order]
    return ranked[ranked != IGNORED] == TRUE_POSITIVE


def _ap_at(d: _ClassData, order: np.ndarray, threshold: float, conv: Convention) -> float:
    if d.n_counted_gt == 0:
        return 0.0  # what both tools report for a class with nothing to find
    precision, recall = precision_recall(_ranked_tp(d, order, threshold, conv), d.n_counted_gt)
    return average_precision(precision, recall, conv.ap_mode)


def _ap_by_key(
    d: _ClassData, order: np.ndarray, thresholds: list[float], conv: Convention
) -> np.ndarray:
    at = {t: _ap_at(d, order, t, conv) for t in thresholds}
    return np.array(
        [at[0.5], at[0.75], float(np.mean([at[t] for t in COCO_THRESHOLDS]))]
    )


def _curve(
    d: _ClassData, order: np.ndarray, threshold: float, conv: Convention
) -> tuple[np.ndarray, np.ndarray]:
    return precision_recall(_ranked_tp(d, order, threshold, conv), d.n_counted_gt)


def _class_result(
    d: _ClassData,
    name: str,
    ap_values: np.ndarray,
    seed_aps: np.ndarray,
    curve_p: np.ndarray,
    curve_r: np.ndarray,
    iou: float,
    conv: Convention,
) -> ClassResult:
    tp, fp, ignored = _confidence_free_counts(d, iou, conv)
    counted = d.n_counted_gt
    fn = counted - tp
    precision = tp / (tp + fp) if tp + fp > 0 else (0.0 if counted else math.nan)
    recall = tp / counted if counted else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else math.nan
    return ClassResult(
        name=name,
        ground_truth=counted,
        difficult_ignored=int(d.gt_ignored.sum()),
        detections=d.n_dets,
        ap=dict(zip(AP_KEYS, map(float, ap_values))),
        ap_nc_mean=dict(zip(AP_KEYS, map(float, seed_aps.mean(axis=0)))),
        ap_nc_std=dict(zip(AP_KEYS, map(float, seed_aps.std(axis=0)))),
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        ignored_detections=ignored,
        precision=precision,
        recall=recall,
        f1=f1,
        curve_recall=curve_r,
        curve_precision=curve_p,
    )


LEFT_OUT = -2  # a detection below the score threshold: not part of the pairing


def _pairing_outcomes(d: _ClassData, iou: float, conv: Convention, keep: np.ndarray | None = None) -> np.ndarray:
    """Per detection: TRUE_POSITIVE, FALSE_POSITIVE or IGNORED under the one-to-one pairing.

    Pairs are made with countable ground truth only; a detection left unpaired that
    overlaps an ignored (difficult) object enough is ignored, like in DOTA_devkit.
    ``keep`` (D,) bool leaves the other detections out (LEFT_OUT: below a score threshold).
    """
    keep = np.ones(d.n_dets, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    used = keep[d.pair_det]
    pair_det, pair_gt, pair_iou = d.pair_det[used], d.pair_gt[used], d.pair_iou[used]
    ok = conv.passes(pair_iou, iou)
    on_ignored_gt = d.gt_ignored[pair_gt]
    countable = ok & ~on_ignored_gt
    matched_det, _ = one_to_one_matches(pair_det[countable], pair_gt[countable], pair_iou[countable])
    outcome = np.full(d.n_dets, FALSE_POSITIVE, dtype=np.int8)
    outcome[pair_det[ok & on_ignored_gt]] = IGNORED
    outcome[matched_det] = TRUE_POSITIVE
    outcome[~keep] = LEFT_OUT
    return outcome


def _confidence_free_counts(
    d: _ClassData, iou: float, conv: Convention, keep: np.ndarray | None = None
) -> tuple[int, int, int]:
    """(TP, FP, ignored) from the one-to-one pairing at one IoU threshold (see ``_pairing_outcomes``)."""
    outcome = _pairing_outcomes(d, iou, conv, keep)
    return (int((outcome == TRUE_POSITIVE).sum()), int((outcome == FALSE_POSITIVE).sum()),
            int((outcome == IGNORED).sum()))


def detection_outcomes(
    truth: Dataset,
    predictions: Dataset,
    convention: str = "dota_devkit",
    classes: Sequence[str] | None = None,
    iou: float = 0.5,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class: each detection's score and whether the one-to-one pairing found it right.

    The outcome is TRUE_POSITIVE, FALSE_POSITIVE or IGNORED (on a difficult object), as
    behind the confidence-free P/R/F1: what a reliability diagram and a threshold need.
    """
    conv = get_convention(convention)
    class_list = list(dict.fromkeys(classes)) if classes else dataset_classes(truth)
    data, _, _ = _collect(truth, predictions, class_list, conv)
    return {name: (d.scores.copy(), _pairing_outcomes(d, iou, conv)) for name, d in data.items()}


def prf_at_thresholds(
    truth: Dataset,
    predictions: Dataset,
    conv: Convention,
    classes: list[str],
    iou: float,
    thresholds: np.ndarray,
) -> np.ndarray:
    """(T, 3): mean precision, recall and F1 over classes with ground truth, keeping scores >= each threshold."""
    data, _, _ = _collect(truth, predictions, classes, conv)
    counted = [d for d in data.values() if d.n_counted_gt > 0]
    out = np.full((len(thresholds), 3), math.nan)
    for row, threshold in enumerate(np.asarray(thresholds, dtype=np.float64)):
        values = []
        for d in counted:
            keep = None if threshold == -np.inf else d.scores >= threshold  # NaN never passes a real one
            tp, fp, _ = _confidence_free_counts(d, iou, conv, keep)
            fn = d.n_counted_gt - tp
            values.append((tp / (tp + fp) if tp + fp else 0.0, tp / d.n_counted_gt, 2 * tp / (2 * tp + fp + fn)))
        if values:
            out[row] = np.mean(values, axis=0)
    return out


def choose_threshold(
    truth: Dataset,
    predictions: Dataset,
    conv: Convention,
    classes: list[str],
    iou: float,
    validation_fraction: float,
) -> ThresholdChoice:
    """The score threshold of the best mean F1 on validation images, measured on the others.

    Ties go to the lower threshold (fewer objects hidden). See :mod:`.threshold`.
    """
    validation, test = split_images(set(truth) | set(predictions), validation_fraction)

    def part(dataset: Dataset, ids: list[str]) -> dict:
        return {i: dataset[i] for i in ids if i in dataset}

    val_truth, val_pred = part(truth, validation), part(predictions, validation)
    listed = set(classes)
    scores = np.array([o.score for objs in val_pred.values() for o in objs if o.cls in listed], dtype=np.float64)
    candidates = candidate_thresholds(scores)
    notes = []
    if len(validation) < 2 and validation == test:
        notes.append("There is one image only, so the threshold was chosen on the image it is measured on: "
                     "its F1 is optimistic. Evaluate several images to choose it on some and measure it on others.")
    if not len(candidates):
        return ThresholdChoice(math.nan, validation_fraction, validation, test, math.nan, math.nan, math.nan,
                               math.nan, math.nan, [*notes, "The validation images hold no detections."])
    val_f1 = prf_at_thresholds(val_truth, val_pred, conv, classes, iou, candidates)[:, 2]
    best = int(np.nanargmax(val_f1)) if np.isfinite(val_f1).any() else 0
    threshold = float(candidates[best])
    test_truth, test_pred = part(truth, test), part(predictions, test)
    at, free = prf_at_thresholds(test_truth, test_pred, conv, classes, iou, np.array([threshold, -np.inf]))
    return ThresholdChoice(
        threshold=threshold, validation_fraction=validation_fraction, validation_images=validation,
        test_images=test, validation_f1=float(val_f1[best]), precision=float(at[0]), recall=float(at[1]),
        f1=float(at[2]), confidence_free_f1=float(free[2]), notes=notes,
    )


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: _nan_to_none(v) for k, v in values.items()}
