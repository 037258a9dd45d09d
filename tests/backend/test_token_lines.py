"""Token log-probabilities attached to the answer lines they wrote."""

from __future__ import annotations

from rscovlm.formats.token_lines import token_lines


def test_lines_split_across_tokens_get_every_token_that_wrote_them():
    tokens = [("1", -0.1), ("2", -0.2), (",3", -0.3), (" ship", -0.4), ("\n", -0.5), ("4", -0.6), ("5 pl", -0.7),
              ("ane", -0.8), ("<|im_end|>", -0.01)]
    first, second = token_lines(tokens)
    assert (first.text, first.finished, first.start_logprob) == ("12,3 ship", True, -0.1)
    assert first.logprobs == [-0.1, -0.2, -0.3, -0.4, -0.5]  # the newline is its last decision
    assert (second.text, second.finished, second.start_logprob) == ("45 plane", True, -0.6)
    assert second.logprobs == [-0.6, -0.7, -0.8]


def test_a_token_holding_a_newline_counts_for_both_lines():
    first, second = token_lines([("a", -1.0), (".\n1", -2.0), ("b", -3.0)])
    assert (first.text, first.logprobs, first.finished) == ("a.", [-1.0, -2.0], True)
    assert (second.text, second.logprobs, second.start_logprob) == ("1b", [-2.0, -3.0], -2.0)


def test_a_line_cut_by_the_budget_is_not_finished():
    lines = token_lines([("1,2", -0.1), (" ship\n", -0.2), ("3,4,", -0.3)])
    assert [(line.text, line.finished) for line in lines] == [("1,2 ship", True), ("3,4,", False)]


def test_there_are_none_and_empty_answers():
    [line] = token_lines([("There", -0.01), (" are", 0.0), (" none", -0.02), (".", 0.0), ("<|im_end|>", 0.0)])
    assert line.text == "There are none." and line.finished and len(line.logprobs) == 4
    assert token_lines([]) == [] and token_lines([("<|im_end|>", -0.1)]) == []
    assert [line.text for line in token_lines([("a\n", -0.1), ("<|im_end|>", 0.0)])] == ["a"]


def test_lines_are_the_answers_lines_for_a_real_tokenisation(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "12,30,40,30,40,60,12,60 small vehicle\n100,5,130,9,126,40,96,36 ship\n7,7,9"
    ids = tokenizer(text)["input_ids"]
    pieces = tokenizer.batch_decode([[i] for i in ids])
    assert "".join(pieces) == text
    lines = token_lines([(p, -0.5) for p in pieces])
    assert [line.text for line in lines] == text.splitlines()
    assert [line.finished for line in lines] == [True, True, False]
