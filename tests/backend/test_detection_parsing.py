from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rscovlm.formats.detection import REASONS, parse_detections
from rscovlm.formats.prompts import DOTA_CLASSES, format_detection_answer
from rscovlm.geometry import order_quads, signed_areas

SQUARE = "10,10,50,10,50,50,10,50"


def test_plain_answer_is_parsed_in_model_input_pixels():
    text = f"{SQUARE} small vehicle\n100,100,140,100,140,120,100,120 plane\n"
    p = parse_detections(text, DOTA_CLASSES, input_wh=(504, 504))
    assert p.labels == ["small vehicle", "plane"]
    assert p.kept == 2 and p.dropped == {} and not p.said_none
    np.testing.assert_array_equal(p.quads[0], [10, 10, 50, 10, 50, 50, 10, 50])
    assert p.quads.dtype == np.float64


def test_there_are_none():
    p = parse_detections("There are none.", DOTA_CLASSES)
    assert p.said_none and p.kept == 0 and p.quads.shape == (0, 8) and p.dropped == {}


def test_more_than_eight_numbers_are_truncated_fewer_dropped():
    text = f"{SQUARE},99,98 ship\n1,2,3,4,5,6 ship\n"
    p = parse_detections(text, ["ship"])
    assert p.kept == 1 and p.dropped == {"too_few_coordinates": 1}
    np.testing.assert_array_equal(p.quads[0], [10, 10, 50, 10, 50, 50, 10, 50])


@pytest.mark.parametrize("tail", ["12,34,56", f"{SQUARE} small veh", f"{SQUARE}", "10,10,50,10,50,50,10,"])
def test_answer_cut_mid_line_drops_the_last_line_as_truncated(tail):
    p = parse_detections(f"{SQUARE} ship\n{tail}", DOTA_CLASSES)
    assert p.labels == ["ship"]
    assert p.dropped == {"truncated": 1}


def test_complete_last_line_without_newline_is_kept():
    p = parse_detections(f"{SQUARE} ship\n60,60,90,60,90,90,60,90 plane", DOTA_CLASSES)
    assert p.labels == ["ship", "plane"] and p.dropped == {}


def test_labels_are_fuzzy_matched_or_dropped():
    text = f"{SQUARE} Harbour\n{SQUARE.replace('10', '110')} tennis-courts\n{SQUARE} car\n{SQUARE}\n"
    p = parse_detections(text, DOTA_CLASSES)
    assert p.labels == ["harbor", "tennis court"]
    assert p.dropped == {"unknown_label": 1, "missing_label": 1}


def test_labels_only_match_the_requested_classes():
    p = parse_detections(f"{SQUARE} plane\n{SQUARE} ship\n", ["ship"])
    assert p.labels == ["ship"] and p.dropped == {"unknown_label": 1}


def test_prose_and_garbage_lines_are_counted_as_malformed():
    p = parse_detections(f"Sure! Here you go:\n{SQUARE} ship\nthanks\n", ["ship"])
    assert p.kept == 1 and p.dropped == {"malformed": 2}


def test_outside_the_input_is_clipped_or_dropped():
    text = "-20,-20,30,-20,30,30,-20,30 ship\n600,600,700,600,700,700,600,700 ship\n490,10,530,10,530,40,490,40 ship\n"
    p = parse_detections(text, ["ship"], input_wh=(504, 504))
    assert p.kept == 2 and p.clipped == 2 and p.dropped == {"outside_image": 1}
    np.testing.assert_array_equal(p.quads[0], [0, 0, 30, 0, 30, 30, 0, 30])
    assert p.quads[1].max() == 504
    # without the input size nothing can be judged: kept as answered
    assert parse_detections(text, ["ship"]).kept == 3


def test_degenerate_quads_are_dropped():
    text = "10,10,10,10,50,50,10,50 ship\n10,10,20,20,30,30,40,40 ship\n10,10,10.5,10,10.5,10.5,10,10.5 ship\n"
    p = parse_detections(text, ["ship"])
    assert p.kept == 0 and p.dropped == {"degenerate": 3}


def test_bow_tie_is_repaired_by_reordering():
    p = parse_detections("10,10,50,50,50,10,10,50 ship\n", ["ship"])  # crossing edges
    np.testing.assert_array_equal(p.quads[0], [10, 10, 50, 10, 50, 50, 10, 50])


def test_repeated_lines_from_a_generation_loop_are_dropped():
    p = parse_detections(f"{SQUARE} ship\n50,10,50,50,10,50,10,10 ship\n{SQUARE} plane\n", DOTA_CLASSES)
    assert p.labels == ["ship", "plane"] and p.dropped == {"duplicate": 1}


def test_output_vertices_are_clockwise_from_the_top_vertex():
    p = parse_detections("30,60,10,30,30,0,50,30 plane\n", ["plane"])  # a diamond, given counter-clockwise
    np.testing.assert_array_equal(p.quads[0], [30, 0, 50, 30, 30, 60, 10, 30])
    assert signed_areas(p.quads)[0] > 0  # positive = clockwise on screen (y down)


def test_hbb_form():
    p = parse_detections("10,20,40,60 storage tank\n40,60,10,20 ship\n", DOTA_CLASSES, form="hbb")
    expected = [10, 20, 40, 20, 40, 60, 10, 60]
    np.testing.assert_array_equal(p.quads, [expected, expected])


def test_json_with_the_usual_defects():
    text = """Here it is:
```json
[
\t{"quadrant bbox": [10, 10, 50, 10, 50, 50, 10, 50], "label": "ship"},
\t{'bbox_2d': [100, 100, 140, 120], 'label': 'plane',},
\t{"oriented bbox": [200, 200, 40, 20, 90], "label": "large-vehicle"},
\t{label: "harbor", "quadrant bbox": [[300, 300], [340, 300], [340, 340], [300, 340]]},
\t{"quadrant bbox": [1, 2, 3, 4, 5, 6, 7, 8], "label": "bus"},
\t{"label": "ship"},
\t{"quadrant bbox": [10, 10, 50"""
    p = parse_detections(text, DOTA_CLASSES)
    assert p.labels == ["ship", "plane", "large vehicle", "harbor"]
    assert p.dropped == {"truncated": 1, "unknown_label": 1, "malformed": 1}
    np.testing.assert_array_equal(p.quads[1], [100, 100, 140, 100, 140, 120, 100, 120])
    # oriented box rotated 90 degrees: the 40 px side runs down the image
    np.testing.assert_allclose(p.quads[2], [190, 180, 210, 180, 210, 220, 190, 220], atol=1e-9)
    np.testing.assert_array_equal(p.quads[3], [300, 300, 340, 300, 340, 340, 300, 340])


def test_oriented_bbox_angle_convention():
    p = parse_detections('[{"oriented bbox": [100, 100, 40, 10, 30], "label": "ship"}]', ["ship"])
    quad = p.quads[0].reshape(4, 2)
    long_side = quad[1] - quad[0] if np.linalg.norm(quad[1] - quad[0]) > 30 else quad[2] - quad[1]
    angle = math.degrees(math.atan2(long_side[1], long_side[0])) % 180
    assert angle == pytest.approx(30)  # positive angle: the width side turns clockwise on screen (y down)
    np.testing.assert_allclose(quad.mean(axis=0), [100, 100])


def test_json_none_answer():
    assert parse_detections("There are none.", DOTA_CLASSES, form="json").said_none


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400) | st.text(alphabet="0123456789,.-{}[]\"': \nabcshiplane", max_size=400))
def test_arbitrary_text_never_raises(text):
    for form in ("quad", "hbb", "json"):
        p = parse_detections(text, DOTA_CLASSES, form=form, input_wh=(504, 504))
        assert p.quads.shape == (p.kept, 8) and len(p.labels) == p.kept
        assert set(p.dropped) <= set(REASONS)
        if p.kept:
            assert p.quads.min() >= 0 and p.quads.max() <= 504


def _rotated_rect(cx, cy, w, h, angle):
    a = math.radians(angle)
    u = np.array([math.cos(a), math.sin(a)]) * w / 2
    v = np.array([-math.sin(a), math.cos(a)]) * h / 2
    c = np.array([cx, cy])
    return np.concatenate([c - u - v, c + u - v, c + u + v, c - u + v])


_objects = st.lists(
    st.tuples(
        st.floats(55, 445), st.floats(55, 445), st.floats(6, 70), st.floats(6, 70), st.floats(0, 180),
        st.sampled_from(DOTA_CLASSES),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(_objects, st.sampled_from(["quad", "json"]))
def test_formatted_answers_round_trip(objects, form):
    quads = np.array([_rotated_rect(*o[:5]) for o in objects]).reshape(-1, 8)
    labels = [o[5] for o in objects]
    rounded = order_quads(np.rint(quads))
    assume(np.all(np.abs(signed_areas(rounded)) >= 1))
    assume(len({(lab, *q) for lab, q in zip(labels, rounded.tolist())}) == len(labels))  # no exact repeats
    text = format_detection_answer(quads, labels, form=form)
    p = parse_detections(text, DOTA_CLASSES, form=form, input_wh=(504, 504))
    assert p.dropped == {} and p.kept == len(objects) and p.said_none == (not objects)
    got = sorted((lab, *q) for lab, q in zip(p.labels, p.quads.tolist()))
    want = sorted((lab, *q) for lab, q in zip(labels, rounded.tolist()))
    assert got == want


def test_each_kept_detection_says_which_line_and_characters_wrote_it():
    text = f"There are none.\n  {SQUARE} ship\n1,2,3 plane\n{SQUARE.replace('10', '60')} Plane.\n{SQUARE} ship"
    p = parse_detections(text, ["ship", "plane"])
    assert p.labels == ["ship", "plane"] and p.dropped == {"too_few_coordinates": 1, "duplicate": 1}
    assert p.lines == [1, 3]  # indexes into text.splitlines(); the repeat on line 4 was dropped
    assert [(text[a:b], text[c:d]) for a, b, c, d in p.spans] == [(SQUARE, "ship"), (SQUARE.replace("10", "60"), "Plane.")]


def test_json_objects_say_the_line_they_open_on():
    text = ('```json\n[\n {"quadrant bbox": [10,10,50,10,50,50,10,50], "label": "ship"},\n'
            ' {"label": "plane",\n  "quadrant bbox": [60,60,90,60,90,90,60,90]}\n]\n```')
    p = parse_detections(text, ["ship", "plane"])
    assert p.labels == ["ship", "plane"] and p.lines == [2, 3]
    assert [(text[a:b], text[c:d]) for a, b, c, d in p.spans] == [
        ("10,10,50,10,50,50,10,50", "ship"), ("60,60,90,60,90,90,60,90", "plane")]
