"""A confidence score per detected object, from the probabilities the model gave its own tokens.

RSCoVLM writes boxes and labels and no confidence, yet every token it chose came with a
probability (the engines keep them; see :class:`rscovlm.engines.base.Answer`). An
object's score is made from the tokens that wrote it:

- ``coord``: the tokens of its coordinates (digits and commas);
- ``label``: the tokens of its class name;
- ``object``: both together;
- ``line``: every token of its line, the newline that ends it included;
- ``start``: the token that started its line, the model's choice to write another object
  rather than end the answer (for the first line: rather than "There are none."). Only
  the chosen token's probability is known, so this is a lower bound of that choice's
  probability: it also holds the first coordinate digit's uncertainty.

and summarised as the ``mean`` probability, the ``min`` probability (the weakest token)
or the ``geomean`` (the geometric mean: the exponential of the mean log-probability).
``DEFINITIONS`` names every candidate; ``start_x_...`` multiplies the start probability
with another one. Which is the default (``rscovlm.defaults.SCORE_DEFINITION``) was
decided by measurement (``bench/score_study.py``), not by taste.

Pure functions: answer text, ``(token, log-probability)`` pairs and the parser's
:class:`~rscovlm.formats.detection.ParsedDetections` in, scores in [0, 1] out. Without
log-probabilities (an engine that gives none, a replayed file from an older version), or
when the tokens do not spell the answer's text, every score is NaN: "no score", never a
made-up one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .formats.detection import ParsedDetections
from .formats.token_lines import is_special_token, token_lines

__all__ = ["DEFINITIONS", "ObjectTokens", "object_tokens", "score_of", "object_scores", "check_definition"]

_PARTS = ("coord", "label", "object")
_SUMMARIES = ("mean", "min", "geomean")
_COMBINED = ("coord_geomean", "object_geomean", "object_min")

#: name -> what it measures (every candidate the study compares)
DEFINITIONS: dict[str, str] = {
    **{f"{part}_{how}": f"{how} probability of the {part} tokens" for part in _PARTS for how in _SUMMARIES},
    "line_geomean": "geometric mean probability of every token of the line",
    "line_min": "lowest probability of any token of the line",
    "start": "probability of the token that started the line (another object rather than the end)",
    **{f"start_x_{base}": f"start probability x {base.replace('_', ' ')}" for base in _COMBINED},
}


def check_definition(name: str) -> str:
    """``name`` if it is a known definition, else a ValueError listing them."""
    if name not in DEFINITIONS:
        raise ValueError(f"unknown score definition {name!r}; use one of {', '.join(DEFINITIONS)}")
    return name


@dataclass(frozen=True)
class ObjectTokens:
    """The log-probabilities of the tokens that wrote one object."""

    coord: np.ndarray
    label: np.ndarray
    object: np.ndarray  # coordinates and label (a token writing both counts once)
    line: np.ndarray
    start: float  # NaN when unknown


def _spelled(logprobs: Sequence[tuple[str, float]]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The text the tokens write, each text token's [start, end) offsets in it, and its log-probability."""
    pieces = [(token, float(value)) for token, value in logprobs if not is_special_token(token)]
    lengths = np.fromiter((len(token) for token, _ in pieces), dtype=np.int64, count=len(pieces))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    values = np.fromiter((value for _, value in pieces), dtype=np.float64, count=len(pieces))
    return "".join(token for token, _ in pieces), starts, ends, values


def object_tokens(
    text: str, logprobs: Sequence[tuple[str, float]] | None, parsed: ParsedDetections
) -> list[ObjectTokens] | None:
    """Per kept detection, the tokens that wrote it; None when the tokens cannot tell.

    None means: no log-probabilities, or tokens that do not spell ``text`` (a tokenizer
    that decodes tokens differently one by one than together, a file edited by hand).
    """
    if logprobs is None or len(parsed.spans) != parsed.kept:
        return None
    spelled, starts, ends, values = _spelled(logprobs)
    lines = token_lines(logprobs)
    text_lines = text.splitlines()
    if spelled != text or [line.text for line in lines] != text_lines:
        return None
    found = []
    for (c0, c1, l0, l1), line_index in zip(parsed.spans, parsed.lines):
        coord = np.flatnonzero((starts < c1) & (ends > c0))
        label = np.flatnonzero((starts < l1) & (ends > l0)) if l1 > l0 else np.zeros(0, dtype=np.int64)
        line = lines[line_index]
        start = line.start_logprob
        found.append(ObjectTokens(
            coord=values[coord],
            label=values[label],
            object=values[np.union1d(coord, label)],
            line=np.asarray(line.logprobs, dtype=np.float64),
            start=np.nan if start is None else float(start),
        ))
    return found


def _summary(logprobs: np.ndarray, how: str) -> float:
    if not len(logprobs):
        return np.nan
    if how == "mean":
        return float(np.exp(logprobs).mean())
    if how == "min":
        return float(np.exp(logprobs.min()))
    return float(np.exp(logprobs.mean()))  # geomean


def score_of(tokens: ObjectTokens, definition: str) -> float:
    """One object's score in [0, 1] under a named definition (NaN when its tokens are missing)."""
    check_definition(definition)
    if definition == "start":
        return float(np.exp(tokens.start))
    if definition.startswith("start_x_"):
        return float(np.exp(tokens.start)) * score_of(tokens, definition[len("start_x_"):])
    part, how = definition.rsplit("_", 1)
    return _summary(getattr(tokens, part), how)


def object_scores(
    text: str, logprobs: Sequence[tuple[str, float]] | None, parsed: ParsedDetections, definition: str
) -> np.ndarray:
    """The score of each kept detection of one answer; all NaN when the tokens cannot tell."""
    check_definition(definition)
    found = object_tokens(text, logprobs, parsed)
    if found is None:
        return np.full(parsed.kept, np.nan)
    return np.array([score_of(tokens, definition) for tokens in found], dtype=np.float64)
