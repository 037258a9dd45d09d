"""DOTA_devkit- and mmrotate-style metrics on small cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rscovlm.evaluate.ap import average_precision, precision_recall
from rscovlm.evaluate.matching import one_to_one_matches
from rscovlm.evaluate.metrics import evaluate
from rscovlm.evaluate.objects import EvalObject, make_object
from rscovlm.evaluate.overlap import iou_matrix, min_area_rectangles, quads_to_polygons


def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
    """An axis-aligned quad, clockwise in image coordinates from the top-left corner."""
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def rotated(cx: float, cy: float, w: float, h: float, angle_deg: float) -> tuple[float, ...]:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return tuple(v for dx, dy in corners for v in (cx + c * dx - s * dy, cy + s * dx + c * dy))


def obj(quad, cls="plane", difficult=False, score=None) -> EvalObject:
    return make_object(quad, cls, difficult, score)


BOTH = ("dota_devkit", "mmrotate")


@pytest.fixture(scope="module")
def scene() -> dict[str, list[EvalObject]]:
    """Three images of rotated planes and ships, one difficult object."""
    rng = np.random.default_rng(3)
    truth: dict[str, list[EvalObject]] = {}
    for k in range(3):
        objects = []
        for j in range(6):
            quad = rotated(60 + 90 * j, 50 + 30 * k, 40, 18, rng.uniform(0, 180))
            objects.append(obj(quad, "ship" if j % 2 else "plane", difficult=(k, j) == (1, 2)))
        truth[f"P{k:04d}"] = objects
    return truth


@pytest.mark.parametrize("convention", BOTH)
def test_perfect_predictions_score_one(scene, convention):
    predictions = {i: [obj(o.quad, o.cls) for o in objs] for i, objs in scene.items()}
    result = evaluate(scene, predictions, convention, seeds=3)
    assert result.map == {"AP50": 1.0, "AP75": 1.0, "AP50:95": 1.0}
    assert result.map_nc_mean["AP50"] == 1.0 and result.map_nc_std["AP50"] == 0.0
    assert result.mean_f1 == 1.0 and result.mean_precision == 1.0 and result.mean_recall == 1.0
    assert [c.name for c in result.per_class] == ["plane", "ship"]


def test_hand_computed_case_both_conventions_and_modes():
    # One image, three 10x10 ground-truth planes G0 (x 0-10), G1 (x 20-30), G2 (x 40-50).
    # Detections, by score:
    #   d0 0.9 = G0 exactly                 -> TP (takes G0)
    #   d1 0.8 = G0 shifted 5 px right      -> IoU 50/150 = 0.33 -> FP
    #   d2 0.7 = G1 exactly                 -> TP
    #   d3 0.6 = G0 again (duplicate)       -> its best GT G0 is taken -> FP
    # Ranked TP FP TP FP, 3 positives: precision 1, .5, .667, .5; recall .333,.333,.667,.667
    # 11-point: levels 0, .1, .2, .3 reach precision 1; .4, .5, .6 reach .667; .7-1 nothing
    #   AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    # Area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9.
    # One-to-one at IoU .5: pairs d0-G0, d3-G0, d2-G1 -> 2 matches: TP 2, FP 2, FN 1,
    #   P = 2/4, R = 2/3, F1 = 2*2 / (2*2 + 2 + 1) = 4/7.
    truth = {"img": [obj(box(0, 0, 10, 10)), obj(box(20, 0, 30, 10)), obj(box(40, 0, 50, 10))]}
    preds = {
        "img": [
            obj(box(0, 0, 10, 10), score=0.9),
            obj(box(5, 0, 15, 10), score=0.8),
            obj(box(20, 0, 30, 10), score=0.7),
            obj(box(0, 0, 10, 10), score=0.6),
        ]
    }
    for convention in BOTH:
        result = evaluate(truth, preds, convention)
        assert result.scored
        plane = result.per_class[0]
        assert plane.ap["AP50"] == pytest.approx(6 / 11)
        assert plane.ap["AP75"] == pytest.approx(6 / 11)
        assert plane.ap["AP50:95"] == pytest.approx(6 / 11)
        assert (plane.true_positives, plane.false_positives, plane.false_negatives) == (2, 2, 1)
        assert plane.precision == pytest.approx(0.5)
        assert plane.recall == pytest.approx(2 / 3)
        assert plane.f1 == pytest.approx(4 / 7)
    area = evaluate(truth, preds, "mmrotate", ap_mode="area")
    assert area.per_class[0].ap["AP50"] == pytest.approx(5 / 9)


def test_eleven_point_levels_follow_the_reference_arange():
    # Recall exactly 0.3 does not reach the level np.arange gives as 0.30000000000000004,
    # as in both reference tools: levels 0, .1, .2 only -> 3/11.
    precision, recall = precision_recall(np.array([True, True, True]), 10)
    assert recall[-1] == pytest.approx(0.3)
    assert average_precision(precision, recall) == pytest.approx(3 / 11)


def test_difficult_ignored_by_dota_devkit_counted_by_mmrotate():
    # G0 is difficult and has a detection on it; G1 is normal and found; G2 is normal and
    # missed.
    # dota_devkit: d0 on G0 ignored (neither TP nor FP); 2 positives; ranked [TP]
    #   -> recall .5 at precision 1 -> levels 0..0.5 -> 6/11; P 1, R .5.
    # mmrotate: 3 positives; ranked [TP, TP] -> recall 2/3 -> levels 0..0.6 -> 7/11;
    #   P 1, R 2/3.
    truth = {
        "a": [
            obj(box(0, 0, 10, 10), difficult=True),
            obj(box(20, 0, 30, 10)),
            obj(box(40, 0, 50, 10)),
        ]
    }
    preds = {"a": [obj(box(0, 0, 10, 10)), obj(box(20, 0, 30, 10))]}
    dota = evaluate(truth, preds, "dota_devkit").per_class[0]
    mmr = evaluate(truth, preds, "mmrotate").per_class[0]
    assert dota.ground_truth == 2 and dota.difficult_ignored == 1
    assert dota.ignored_detections == 1 and dota.false_positives == 0
    assert dota.ap["AP50"] == pytest.approx(6 / 11)
    assert (dota.precision, dota.recall) == (1.0, 0.5)
    assert mmr.ground_truth == 3 and mmr.difficult_ignored == 0
    assert mmr.ap["AP50"] == pytest.approx(7 / 11)
    assert mmr.recall == pytest.approx(2 / 3)
    # mmrotate can be told to ignore difficult objects, as its dataset option does.
    mmr_ignoring = evaluate(truth, preds, "mmrotate", ignore_difficult=True).per_class[0]
    assert mmr_ignoring.ap["AP50"] == pytest.approx(6 / 11)


def test_iou_of_exactly_one_half_is_a_hit_only_for_mmrotate():
    # GT 2x1 box, detection its left 1x1 half: IoU = 1 / 2 = 0.5 exactly.
    # DOTA_devkit needs IoU > 0.5 -> FP, AP 0; mmrotate needs >= 0.5 -> TP, AP 1.
    truth = {"a": [obj(box(0, 0, 2, 1))]}
    preds = {"a": [obj(box(0, 0, 1, 1))]}
    assert iou_matrix(quads_to_polygons([box(0, 0, 1, 1)]), quads_to_polygons([box(0, 0, 2, 1)]))[0, 0] == 0.5
    dota = evaluate(truth, preds, "dota_devkit")
    mmr = evaluate(truth, preds, "mmrotate")
    assert dota.map["AP50"] == 0.0 and dota.mean_f1 == 0.0
    assert mmr.map["AP50"] == 1.0 and mmr.mean_f1 == 1.0


def test_non_rectangular_ground_truth_changes_iou_under_mmrotate():
    # GT trapezoid (0,0) (4,0) (3,2) (1,2): area (4 + 2) / 2 * 2 = 6. Its minimum-area
    # rectangle is the 4 x 2 box (area 8; the slanted-edge orientation gives 56/5 = 11.2).
    # Detection: box x 1.2-2.8, y 0-2 (area 3.2), inside the trapezoid.
    # Raw polygons: IoU 3.2 / 6 = 0.533 > 0.5 -> TP for DOTA_devkit.
    # Rectangles:   IoU 3.2 / 8 = 0.4  < 0.5 -> FP for mmrotate.
    trapezoid = (0, 0, 4, 0, 3, 2, 1, 2)
    rect = min_area_rectangles(quads_to_polygons([trapezoid]))[0]
    assert rect.area == pytest.approx(8.0)
    truth = {"a": [obj(trapezoid)]}
    preds = {"a": [obj(box(1.2, 0, 2.8, 2))]}
    assert evaluate(truth, preds, "dota_devkit").map["AP50"] == 1.0
    assert evaluate(truth, preds, "mmrotate").map["AP50"] == 0.0


def test_empty_predictions_give_zero_without_crashing(scene):
    for convention in BOTH:
        result = evaluate(scene, {}, convention, seeds=2)
        assert result.map["AP50"] == 0.0 and result.map_nc_mean["AP50"] == 0.0
        assert result.mean_f1 == 0.0 and result.mean_recall == 0.0
        assert all(c.detections == 0 for c in result.per_class)


def test_listed_class_without_truth_counts_as_zero_only_for_dota_devkit():
    truth = {"a": [obj(box(0, 0, 10, 10), "plane")]}
    preds = {"a": [obj(box(0, 0, 10, 10), "plane"), obj(box(50, 50, 60, 60), "ship")]}
    classes = ["plane", "ship", "harbor"]
    dota = evaluate(truth, preds, "dota_devkit", classes=classes)
    mmr = evaluate(truth, preds, "mmrotate", classes=classes)
    assert dota.map["AP50"] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3 listed classes
    assert mmr.map["AP50"] == 1.0 and mmr.mean_over == ["plane"]
    ship = next(c for c in dota.per_class if c.name == "ship")
    assert ship.false_positives == 1 and math.isnan(ship.recall)


def test_map_nc_is_deterministic_for_a_seed_and_reports_its_spread():
    # One object, one detection on it and one on empty ground. Ranked TP, FP -> AP 1;
    # ranked FP, TP -> precision .5 at recall 1 -> AP .5. The random order decides.
    truth = {"a": [obj(box(0, 0, 10, 10))]}
    preds = {"a": [obj(box(0, 0, 10, 10)), obj(box(50, 50, 60, 60))]}
    first = evaluate(truth, preds, "dota_devkit", seeds=8, base_seed=5)
    again = evaluate(truth, preds, "dota_devkit", seeds=8, base_seed=5)
    other = evaluate(truth, preds, "dota_devkit", seeds=8, base_seed=6)
    assert not first.scored
    assert first.map_nc_mean == again.map_nc_mean and first.map_nc_std == again.map_nc_std
    mean = first.map_nc_mean["AP50"]
    assert 0.5 < mean < 1.0  # 8 seeds of a fair coin between AP 0.5 and AP 1 (fixed draw)
    assert first.map_nc_std["AP50"] > 0
    assert first.map["AP50"] == mean  # without scores, AP is the seed average
    # Confidence-free numbers do not depend on seeds at all.
    assert first.per_class[0].f1 == other.per_class[0].f1 == pytest.approx(2 / 3)
    # With real scores, the order is the scores' and no seed matters.
    scored = {"a": [obj(box(0, 0, 10, 10), score=0.2), obj(box(50, 50, 60, 60), score=0.9)]}
    result = evaluate(truth, scored, "dota_devkit", seeds=8, base_seed=5)
    assert result.scored and result.map["AP50"] == 0.5


def test_one_to_one_matching_never_uses_an_object_twice_and_finds_the_most_pairs():
    # Detection 0 overlaps GT 0 best (0.9) and GT 1 (0.6); detection 1 overlaps GT 0 only.
    # Greedy by IoU would pair 0-0 and leave detection 1 alone; the optimum pairs 0-1, 1-0.
    det, gt = one_to_one_matches(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.6, 0.7]))
    assert sorted(zip(det.tolist(), gt.tolist())) == [(0, 1), (1, 0)]
    # A crowd: 30 detections all overlapping the same 3 objects -> exactly 3 matches.
    rng = np.random.default_rng(0)
    d = np.repeat(np.arange(30), 3)
    g = np.tile(np.arange(3), 30)
    det, gt = one_to_one_matches(d, g, rng.uniform(0.5, 1, d.size))
    assert len(det) == 3 and len(set(det)) == 3 and sorted(gt.tolist()) == [0, 1, 2]


def test_duplicates_on_one_object_are_false_positives_for_f1():
    truth = {"a": [obj(box(0, 0, 10, 10))]}
    preds = {"a": [obj(box(0, 0, 10, 10)) for _ in range(4)]}
    c = evaluate(truth, preds, "mmrotate").per_class[0]
    assert (c.true_positives, c.false_positives, c.false_negatives) == (1, 3, 0)


def test_predictions_on_images_absent_from_truth_are_false_positives():
    truth = {"a": [obj(box(0, 0, 10, 10))]}
    preds = {"a": [obj(box(0, 0, 10, 10))], "b": [obj(box(0, 0, 10, 10))]}
    c = evaluate(truth, preds, "dota_devkit").per_class[0]
    assert (c.true_positives, c.false_positives) == (1, 1)


def test_self_intersecting_prediction_does_not_crash():
    truth = {"a": [obj(box(0, 0, 10, 10))]}
    bow_tie = (0, 0, 10, 10, 10, 0, 0, 10)
    for convention in BOTH:
        result = evaluate(truth, {"a": [obj(bow_tie)]}, convention)
        assert 0.0 <= result.map["AP50"] <= 1.0


def test_bad_arguments_raise_value_errors():
    truth = {"a": [obj(box(0, 0, 1, 1))]}
    with pytest.raises(ValueError, match="convention"):
        evaluate(truth, {}, "coco")
    with pytest.raises(ValueError, match="seed"):
        evaluate(truth, {}, seeds=0)
    with pytest.raises(ValueError, match="no classes"):
        evaluate({}, {})


def test_real_scores_give_ap_beside_map_nc_and_a_validated_threshold():
    """Scores that put the right detections first lift AP above mAP_nc; the threshold is chosen on other images."""
    from rscovlm.evaluate.threshold import split_images

    truth, predictions = {}, {}
    for k in range(8):
        truth[f"img{k}"] = [obj(box(30 * j, 0, 30 * j + 20, 20)) for j in range(4)]
        right = [obj(box(30 * j, 0, 30 * j + 20, 20), score=0.9 - 0.01 * j) for j in range(3)]
        wrong = [obj(box(300 + 30 * j, 0, 320 + 30 * j, 20), score=0.2 + 0.01 * j) for j in range(3)]
        predictions[f"img{k}"] = right + wrong
    result = evaluate(truth, predictions, "dota_devkit", seeds=5)
    assert result.scored and result.map["AP50"] > result.map_nc_mean["AP50"] + 0.2
    choice = result.threshold
    assert set(choice.validation_images).isdisjoint(choice.test_images)
    assert sorted(choice.validation_images + choice.test_images) == sorted(truth)
    assert 0.2 + 0.02 < choice.threshold <= 0.88  # between the wrong ones and the right ones
    assert choice.f1 == pytest.approx(2 * 3 / (2 * 3 + 1))  # three of four found, no false positive
    assert choice.confidence_free_f1 == pytest.approx(result.mean_f1) and result.mean_f1 < choice.f1
    assert result.to_dict()["threshold"]["test_images"] == choice.test_images

    unscored = {i: [obj(o.quad) for o in objs] for i, objs in predictions.items()}
    plain = evaluate(truth, unscored, "dota_devkit", seeds=5)
    assert not plain.scored and plain.threshold is None
    assert plain.map_nc_mean == result.map_nc_mean  # same predictions, same random orders
    # the split does not depend on the order the images come in, and keeps both sides non-empty
    assert split_images(reversed(list(truth)), 0.5) == split_images(truth, 0.5)
    assert split_images(["only"], 0.5) == (["only"], ["only"])
    assert [len(part) for part in split_images(["a", "b"], 0.9)] == [1, 1]
