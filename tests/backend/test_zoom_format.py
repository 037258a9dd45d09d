"""Zoom-in chain prompts and the parsers for tool calls, grounding and class answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rscovlm.errors import UserError
from rscovlm.formats import zoom
from rscovlm.formats.zoom import (
    classification_prompt,
    grounding_prompt,
    looks_like_tool_call,
    match_class,
    parse_grounding,
    parse_zoom_call,
    zoom_call_text,
    zoom_user_text,
)

# The system prompt the released weights were trained with, character for character.
TRAINED_SYSTEM_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "image_zoom_in", "description": "Zoom in to the region '
    "of interest on the given image. Input the bounding box of the region of interest and return the "
    'zoomed-in image to help to focus and view more clearly.", "parameters": {"name": "bbox", "type": '
    '"list[int]", "description": "The bounding box of the region of interest as an array [x1, y1, x2, '
    "y2], where (x1, y1) and (x2, y2) indicate the positions' absolute coordinates of the left top and "
    'right down corners, respectively.", "required": true}}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def test_system_prompt_is_the_trained_text():
    assert zoom.ZOOM_SYSTEM_PROMPT == TRAINED_SYSTEM_PROMPT


def test_turn_texts_are_the_trained_text():
    assert zoom_user_text("How many ships?") == (
        "How many ships?\nZoom in to the region of interest and answer the question."
    )
    assert zoom.ZOOM_FOLLOWUP_TEXT == "Here's the zoomed-in image. You can complete your task now."
    assert zoom_call_text([10, 20, 300, 400]) == (
        '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}}\n</tool_call>'
    )


GOOD = (10.0, 20.0, 300.0, 400.0)


@pytest.mark.parametrize(
    "text",
    [
        zoom_call_text([10, 20, 300, 400]),
        '<tool_call>\n{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}}',  # no closing tag
        "<tool_call>{'name': 'image_zoom_in', 'arguments': {'bbox': [10, 20, 300, 400]}}</tool_call>",
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400,],},}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": ["10", "20", "300", "400"]}}</tool_call>',
        'Let me look closer. <tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}}'
        "</tool_call> Then I will answer.",
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [300, 400, 10, 20]}}</tool_call>',  # swapped
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox_2d": [10, 20, 300, 400]}}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": "{\\"bbox\\": [10, 20, 300, 400]}"}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": "[10, 20, 300, 400]"}}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10.0, 20.0, 300.0, 400.0]}}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [[10, 20], [300, 400]]}}</tool_call>',
        '{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}}',  # no tags at all
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 400]}',  # truncated object
        "image_zoom_in bbox: [10, 20, 300, 400]",  # not JSON at all
    ],
)
def test_parse_zoom_call_tolerates_usual_defects(text):
    assert parse_zoom_call(text) == GOOD


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "There are 3 ships docked at the pier.",
        "<tool_call>",
        "<tool_call>\n{\"name\": \"image_zoom_in\", \"arguments\": {}}\n</tool_call>",
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300]}}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, "nan"]}}</tool_call>',
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [10, 20, 300, 4',  # cut mid-number
        '<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [true, 20, 300, 400]}}</tool_call>',
        12345,
    ],
)
def test_parse_zoom_call_refuses_what_it_cannot_read(text):
    assert parse_zoom_call(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]"\',:<>/ _-.0123456789abxyzbboxtool_call\n')), max_size=200))
def test_parse_zoom_call_never_raises_on_json_like_noise(text):
    box = parse_zoom_call(text)
    assert box is None or (len(box) == 4 and box[0] <= box[2] and box[1] <= box[3])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_raise_on_any_text(text):
    parse_zoom_call(text)
    parse_grounding(text)
    match_class(text, ["forest", "farmland"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5000, 5000), min_size=4, max_size=4), st.sampled_from(["bbox", "bbox_2d"]),
       st.booleans())
def test_parse_zoom_call_round_trips_and_normalises(values, key, as_strings):
    arguments = {key: [str(v) for v in values] if as_strings else values}
    text = "<tool_call>\n" + json.dumps({"name": "image_zoom_in", "arguments": arguments}) + "\n</tool_call>"
    x1, y1, x2, y2 = values
    assert parse_zoom_call(text) == (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def test_looks_like_tool_call():
    assert looks_like_tool_call("<tool_call> garbage")
    assert not looks_like_tool_call("Three ships.")


def test_grounding_prompts_are_the_trained_text():
    system, user = grounding_prompt("white ship near the pier")
    assert system == (
        "As an AI assistant, you specialize in accurate image object detection, delivering coordinates "
        "in plain text format 'x1,y1,x2,y2 object'."
    )
    assert user == "find the white ship near the pier"
    system, user = grounding_prompt("white ship", form="json")
    assert system is None
    assert user == "Locate the white ship, output the bbox coordinates using JSON format"
    with pytest.raises(UserError, match="empty"):
        grounding_prompt("   ")


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("12,30,140,96 white ship near the pier\n", (12.0, 30.0, 140.0, 96.0)),
        ('```json\n[\n\t{"bbox_2d": [12, 30, 140, 96], "label": "white ship"}\n]\n```', (12.0, 30.0, 140.0, 96.0)),
        ('{"bbox_2d": [140, 96, 12, 30], "label": "white ship"', (12.0, 30.0, 140.0, 96.0)),  # truncated, swapped
        ("<|box_start|>(12,30),(140,96)<|box_end|>", (12.0, 30.0, 140.0, 96.0)),
        ("There are none.", None),
        ("12,30 ship", None),
        ("", None),
    ],
)
def test_parse_grounding(text, box):
    assert parse_grounding(text) == box


def test_classification_prompt_and_matching():
    classes = ["forest", "dense residential", "residential", "farmland"]
    assert classification_prompt(classes) == (
        "Classify the image within one of the given classes:forest,dense residential,residential,farmland."
    )
    assert match_class("Dense residential.", classes) == ("dense residential", 1.0)
    assert match_class("This is a dense_residential area", classes)[0] == "dense residential"
    assert match_class("residential", classes)[0] == "residential"
    label, score = match_class("forrest", classes)
    assert label == "forest" and 0.6 < score < 1.0
    assert match_class("", classes) == (None, 0.0)
    with pytest.raises(UserError, match="at least two classes"):
        classification_prompt(["forest"])
