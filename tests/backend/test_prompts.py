from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rscovlm.errors import UserError
from rscovlm.formats.detection import parse_detections
from rscovlm.formats.prompts import (
    DOTA_CLASSES,
    NONE_ANSWER,
    SYSTEM_PROMPT_JSON,
    detection_prompt,
    format_detection_answer,
    messages,
    normalize_class_name,
)

DOC_CLASS_LIST = (
    "baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, large vehicle, "
    "plane, roundabout, ship, small vehicle, soccer ball field, storage tank, swimming pool, tennis court"
)


def test_dota_classes_are_the_list_the_model_saw():
    assert ", ".join(DOTA_CLASSES) == DOC_CLASS_LIST
    assert len(DOTA_CLASSES) == 15


def test_default_prompt_is_word_for_word():
    system, user = detection_prompt(DOTA_CLASSES)
    assert system == (
        "As an AI assistant, you specialize in accurate oriented object detection, delivering coordinates "
        "of the polygon vertices in plain text format 'x1,y1,x2,y2,x3,y3,x4,y4 object'."
    )
    assert user == f"find the {DOC_CLASS_LIST}."


def test_hbb_and_json_prompts():
    system, user = detection_prompt(["plane"], form="hbb")
    assert system.endswith("plain text format 'x1,y1,x2,y2 object'.")
    assert user == "find the plane."
    system, user = detection_prompt(["ship", "plane"], form="json")
    assert system == SYSTEM_PROMPT_JSON
    assert user.endswith("The category set includes plane, ship.")


def test_class_names_are_normalised_sorted_and_deduplicated():
    assert normalize_class_name("Small-Vehicle") == "small vehicle"
    assert normalize_class_name("  ground_track--field ") == "ground track field"
    _, user = detection_prompt(["Small-Vehicle", "plane", "small vehicle"])
    assert user == "find the plane, small vehicle."


@pytest.mark.parametrize(("classes", "form", "needle"), [([], "quad", "No object classes"), (["plane"], "xml", "Unknown detection answer form"), (["a, b\nc"], "quad", "cannot be used")])
def test_bad_prompt_requests_are_user_errors(classes, form, needle):
    with pytest.raises(UserError, match=needle):
        detection_prompt(classes, form=form)


def test_messages_follow_the_hugging_face_chat_layout():
    image = Image.new("RGB", (504, 504))
    conv = messages("sys", "find the plane.", image)
    assert conv == [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "find the plane."}]},
    ]
    text_only = messages("sys", "hello")
    assert text_only[1]["content"] == [{"type": "text", "text": "hello"}]


def test_answer_is_grouped_by_class_then_position_with_clockwise_vertices():
    quads = np.array(
        [
            [60, 10, 80, 10, 80, 30, 60, 30],  # ship, top
            [10, 50, 30, 50, 30, 70, 10, 70],  # plane, lower
            [50, 30, 50, 20, 40, 20, 40, 30],  # plane, higher, given counter-clockwise
        ],
        dtype=float,
    )
    text = format_detection_answer(quads, ["ship", "plane", "Plane"])
    assert text == (
        "40,20,50,20,50,30,40,30 plane\n"
        "10,50,30,50,30,70,10,70 plane\n"
        "60,10,80,10,80,30,60,30 ship\n"
    )


def test_answer_forms_none_hbb_and_json():
    assert format_detection_answer(np.zeros((0, 8)), []) == NONE_ANSWER == "There are none."
    quad = np.array([[10.4, 20, 30, 10, 40, 30, 20, 40]])
    assert format_detection_answer(quad, ["ship"], form="hbb") == "10,10,40,40 ship\n"
    text = format_detection_answer(quad, ["ship"], form="json")
    assert text == '```json\n[\n\t{"quadrant bbox": [30, 10, 40, 30, 20, 40, 10, 20], "label": "ship"}\n]\n```'
    parsed = parse_detections(text, ["ship"], form="json")
    np.testing.assert_array_equal(parsed.quads, [[30, 10, 40, 30, 20, 40, 10, 20]])
