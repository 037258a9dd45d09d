"""Scores per object from the tokens that wrote it: the right tokens, the right lines, the same on replay."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rscovlm.formats.detection import parse_detections
from rscovlm.scores import DEFINITIONS, ObjectTokens, object_scores, object_tokens, score_of

DEMO_MODEL = Path(__file__).resolve().parents[2] / "resources" / "demo-model"
CLASSES = ("plane", "storage tank")


@pytest.fixture(scope="module")
def tokenize(tiny_model_dir):
    """Real Qwen2.5 tokenisation (the project's trained tokenizer); token i gets log-probability -(i+1)/100."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def pieces(text: str, end: bool = True) -> list[tuple[str, float]]:
        ids = tokenizer(text)["input_ids"]
        tokens = tokenizer.batch_decode([[i] for i in ids])
        assert "".join(tokens) == text
        if end:
            tokens.append("<|im_end|>")
        return [(token, -(k + 1) / 100) for k, token in enumerate(tokens)]

    return pieces


def test_each_object_gets_the_tokens_of_its_own_coordinates_label_and_line(tokenize):
    text = "12,30,40,30,40,60,12,60 storage tank\n100,5,130,9,126,40,96,36 plane\n7,7,9"
    tokens = tokenize(text, end=False)  # cut by the budget in the third line
    parsed = parse_detections(text, CLASSES)
    assert parsed.labels == ["storage tank", "plane"] and parsed.dropped == {"truncated": 1}
    assert parsed.lines == [0, 1]
    found = object_tokens(text, tokens, parsed)
    offsets = np.cumsum([0] + [len(t) for t, _ in tokens])
    for obj, (c0, c1, l0, l1), line in zip(found, parsed.spans, text.splitlines()):
        expected_coord = [v for (t, v), a, b in zip(tokens, offsets, offsets[1:]) if a < c1 and b > c0]
        expected_label = [v for (t, v), a, b in zip(tokens, offsets, offsets[1:]) if a < l1 and b > l0]
        assert obj.coord.tolist() == expected_coord and len(expected_coord) >= 8  # digits and commas
        assert obj.label.tolist() == expected_label and len(expected_label) >= 1
        assert set(obj.label.tolist()).isdisjoint(obj.coord.tolist())
        assert set(obj.object.tolist()) == set(expected_coord) | set(expected_label)
        assert text[c0:c1] == line.split(" ")[0] and text[l0:l1] == line.split(" ", 1)[1]
    first, second = found
    assert first.start == tokens[0][1]  # the answer's first token started the first object
    assert first.line[-1] < first.coord.min()  # the line's tokens end with its newline, after its label
    newline_token = next(k for k, (t, _) in enumerate(tokens) if "\n" in t)
    assert second.start == tokens[newline_token + 1][1]
    # the cut third line is no object and takes no score
    assert len(object_scores(text, tokens, parsed, "coord_geomean")) == 2


def test_there_are_none_and_an_unscorable_answer(tokenize):
    tokens = tokenize("There are none.")
    parsed = parse_detections("There are none.", CLASSES)
    assert parsed.said_none and object_scores("There are none.", tokens, parsed, "object_min").shape == (0,)
    text = "1,1,20,1,20,20,1,20 plane\n"
    parsed = parse_detections(text, CLASSES)
    assert np.isnan(object_scores(text, None, parsed, "start")).all()  # an engine without log-probabilities
    wrong = [("1,1,2", -0.1), ("0,1 plane\n", -0.2)]  # tokens spelling another text
    assert object_tokens(text, wrong, parsed) is None and np.isnan(object_scores(text, wrong, parsed, "start")).all()


def test_definitions_summarise_the_right_tokens():
    tokens = ObjectTokens(coord=np.log([0.9, 0.5]), label=np.log([0.8]), object=np.log([0.9, 0.5, 0.8]),
                          line=np.log([0.9, 0.5, 0.8, 1.0]), start=math.log(0.6))
    assert score_of(tokens, "coord_mean") == pytest.approx(0.7)
    assert score_of(tokens, "coord_min") == pytest.approx(0.5)
    assert score_of(tokens, "coord_geomean") == pytest.approx(math.sqrt(0.45))
    assert score_of(tokens, "label_min") == pytest.approx(0.8)
    assert score_of(tokens, "object_geomean") == pytest.approx(0.36 ** (1 / 3))
    assert score_of(tokens, "line_min") == pytest.approx(0.5)
    assert score_of(tokens, "start") == pytest.approx(0.6)
    assert score_of(tokens, "start_x_object_min") == pytest.approx(0.3)
    assert all(0.0 <= score_of(tokens, d) <= 1.0 for d in DEFINITIONS)
    with pytest.raises(ValueError, match="unknown score definition"):
        score_of(tokens, "confidence")


@pytest.mark.slow
def test_demo_model_scores_are_the_live_runs_and_the_replays(tmp_path):
    """The real model's log-probabilities: every object scored, and a replay from the responses file agrees."""
    from rscovlm.engines import create_engine
    from rscovlm.pipelines.detect import DetectOptions, detect, detect_from_responses
    from rscovlm.responses import read_responses
    from rscovlm.synth import make_scene

    scene, truth, responses = tmp_path / "scene.tif", tmp_path / "truth.gpkg", tmp_path / "responses.jsonl"
    make_scene(scene, truth, size=1024, gsd=0.5, seed=1001, workers=1)  # held out from the demo model's training
    options = DetectOptions(classes=CLASSES, tile_size=256, overlap=64, max_new_tokens=512)
    live = detect(scene, create_engine(str(DEMO_MODEL), device="cpu"), options, responses_out=responses)
    assert len(live.gdf) >= 3 and live.scored
    scores = live.gdf["score"].to_numpy()
    assert ((scores > 0) & (scores <= 1)).all() and len(set(scores.round(6))) > 1
    for record in read_responses(responses):  # the tokens spell each answer, end token last
        assert "".join(t for t, _ in record.logprobs if not t.startswith("<|")) == record.response
    replay = detect_from_responses(scene, responses, options)
    assert replay.gdf.drop(columns="geometry").equals(live.gdf.drop(columns="geometry"))
    assert np.array_equal(replay.scores, live.scores)
    other = detect_from_responses(scene, responses, DetectOptions(classes=CLASSES, tile_size=256, overlap=64,
                                                                  max_new_tokens=512, score="start"))
    assert not np.allclose(other.scores, replay.scores)  # the definition is what changed
