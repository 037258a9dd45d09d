"""Raw per-tile model responses as JSON Lines, written as the run goes.

Keeping the model's exact words per tile lets post-processing (parsing, merging, export)
be re-run later without the GPU (``--from-responses``) and makes a result auditable.
Each tile is one line written with a single unbuffered ``write``, so a run that crashes
or is cancelled leaves a file of whole lines that can still be replayed or resumed.

The first line may be a header (``{"rscovlm_responses": 2, ...}``) naming the settings
the answers were asked with, so a resumed run can refuse a file made for other ones.
Each record says whether the model finished its answer or hit the budget, and whether
the pipeline split that tile into sub-tiles instead of keeping its answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rscovlm.errors import UserError

__all__ = ["ResponseRecord", "ResponsesWriter", "read_responses", "read_responses_header", "HEADER_KEY"]

_INT_FIELDS = ("col_off", "row_off", "width", "height", "input_width", "input_height")
HEADER_KEY = "rscovlm_responses"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ResponseRecord:
    """One tile: where it lies in the image, the model-input size it was resized to, the text."""

    col_off: int
    row_off: int
    width: int
    height: int
    input_width: int
    input_height: int
    response: str
    finished: bool = True  # False: the answer hit the token budget
    split: bool = False  # True: the tile was asked again as sub-tiles; this answer is not used
    tokens: int | None = None  # new tokens the engine generated, when it said
    #: (token, log-probability) per generated token when the engine gave them, so scores
    #: can be made and re-made without the model.
    logprobs: tuple[tuple[str, float], ...] | None = None

    @property
    def window(self):  # -> rscovlm.tiling.Window
        from rscovlm.tiling import Window

        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def input_wh(self) -> tuple[int, int]:
        return (self.input_width, self.input_height)

    def to_json_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"


def _record_from_object(obj: Any) -> ResponseRecord:
    """Validate one decoded line; raise ValueError with the problem in words."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, found {type(obj).__name__}")
    missing = [name for name in (*_INT_FIELDS, "response") if name not in obj]
    if missing:
        raise ValueError("missing field(s) " + ", ".join(missing))
    for name in _INT_FIELDS:
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"field {name!r} must be a whole number, found {value!r}")
        if value < 0 or (name != "col_off" and name != "row_off" and value == 0):
            raise ValueError(f"field {name!r} must be positive, found {value}")
    if not isinstance(obj["response"], str):
        raise ValueError(f"field 'response' must be text, found {type(obj['response']).__name__}")
    for name in ("finished", "split"):
        if name in obj and not isinstance(obj[name], bool):
            raise ValueError(f"field {name!r} must be true or false, found {obj[name]!r}")
    tokens = obj.get("tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        raise ValueError(f"field 'tokens' must be a whole number, found {tokens!r}")
    return ResponseRecord(
        **{name: obj[name] for name in (*_INT_FIELDS, "response")},
        finished=obj.get("finished", True),
        split=obj.get("split", False),
        tokens=tokens,
        logprobs=_logprobs(obj.get("logprobs")),
    )


def _logprobs(value: Any) -> tuple[tuple[str, float], ...] | None:
    if value is None:
        return None
    try:
        pairs = tuple((str(token), float(logprob)) for token, logprob in value)
    except (TypeError, ValueError) as exc:
        raise ValueError("field 'logprobs' must be a list of [token, log-probability] pairs") from exc
    if any(not (lp <= 0.0) for _, lp in pairs):  # NaN fails too
        raise ValueError("field 'logprobs' holds a log-probability above 0 or not a number")
    return pairs


class ResponsesWriter:
    """Append one JSON line per tile; each line reaches the OS before ``write`` returns."""

    def __init__(self, path: str | os.PathLike[str], append: bool = False, header: dict | None = None) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise UserError(
                f"Cannot write the model responses to {self.path}: {exc.strerror}. "
                "Choose a folder you can write to."
            ) from exc
        self.count = 0
        if header is not None and os.fstat(self._fd).st_size == 0:
            self._write_line(json.dumps({HEADER_KEY: FORMAT_VERSION, **header}, ensure_ascii=False) + "\n")

    def write(self, record: ResponseRecord) -> None:
        self._write_line(record.to_json_line())
        self.count += 1

    def _write_line(self, line: str) -> None:
        if self._fd is None:
            raise RuntimeError("ResponsesWriter is closed")
        data = line.encode("utf-8")
        # One write() call per line on an O_APPEND descriptor: no partial line is ever
        # left in a Python buffer when the process dies.
        written = os.write(self._fd, data)
        while written < len(data):  # short writes are rare (full disk, signals)
            written += os.write(self._fd, data[written:])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResponsesWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lines(path: Path) -> tuple[str, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"The responses file {path} does not exist; check the path.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the responses file {path}: {exc}.") from exc
    return text, text.split("\n")


def read_responses_header(path: str | os.PathLike[str]) -> dict | None:
    """The settings a responses file was written with, or None for a file without a header."""
    _, lines = _lines(Path(path))
    first = next((line for line in lines if line.strip()), "")
    try:
        obj = json.loads(first)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and HEADER_KEY in obj else None


def read_responses(path: str | os.PathLike[str], tolerate_cut_end: bool = False) -> list[ResponseRecord]:
    """Read and validate a responses file; a bad line is a UserError naming its number.

    ``tolerate_cut_end``: a last line without its newline (the process was killed while
    writing it) is left out instead of refused, for resuming an interrupted run.
    """
    path = Path(path)
    text, lines = _lines(path)
    records: list[ResponseRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cut_off = number == len(lines) and not text.endswith("\n")
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and HEADER_KEY in obj:
                continue
            records.append(_record_from_object(obj))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            if cut_off and tolerate_cut_end:
                break
            hint = " (the file looks cut off)" if cut_off else ""
            raise UserError(
                f"Line {number} of the responses file {path} is not a valid tile response"
                f"{hint}: {exc}. Re-run the detection to write a fresh responses file."
            ) from exc
    return records
