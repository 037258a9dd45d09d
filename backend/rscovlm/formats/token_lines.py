"""Which generated tokens wrote which line of an answer: the raw material of per-object scores.

A detection answer is one object per line, and the engines give the log-probability of
every token they chose. Tokens do not respect lines: one token may end a line and start
the next (``"\\n1"``), a line may be cut by the budget, and the end-of-answer token comes
last. :func:`token_lines` walks the tokens once and gives each line the log-probabilities
of the tokens that wrote any of its characters, the log-probability of the token that
started it (how sure the model was that there is another object at all) and whether the
line was finished (a newline or the end token followed it).

Special tokens (``<|im_end|>`` and the like) write no text; the end-of-answer token only
finishes the last line. The lines' texts, joined with newlines, are the answer's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["TokenLine", "token_lines", "is_special_token"]


def is_special_token(token: str) -> bool:
    """Qwen's control tokens (``<|im_end|>``, ``<|endoftext|>``) write no answer text."""
    return token.startswith("<|") and token.endswith("|>")


@dataclass
class TokenLine:
    """One line of an answer and the tokens behind it."""

    text: str
    logprobs: list[float] = field(default_factory=list)  # every token that wrote part of the line
    start_logprob: float | None = None  # the token that wrote the line's first character
    finished: bool = False  # a newline or the end of the answer followed it (False: cut off)


def token_lines(tokens: Sequence[tuple[str, float]]) -> list[TokenLine]:
    """Split ``(token, logprob)`` pairs into the answer's lines (as ``text.splitlines()``)."""
    lines: list[TokenLine] = [TokenLine("")]
    for token, logprob in tokens:
        if is_special_token(token):
            lines[-1].finished = True  # the model ended its answer here
            continue
        touched = False  # whether this token already counts for the current line
        for number, piece in enumerate(token.split("\n")):
            if number > 0:  # the token wrote a newline: the line before it is whole
                line = lines[-1]
                line.finished = True
                if not touched:
                    line.logprobs.append(logprob)
                lines.append(TokenLine(""))
                touched = False
            if piece:
                line = lines[-1]
                if not line.text:
                    line.start_logprob = logprob
                line.text += piece
                line.logprobs.append(logprob)
                touched = True
    if not lines[-1].text:
        lines.pop()  # nothing after the last newline (or an empty answer)
    return lines
