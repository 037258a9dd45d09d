"""One training sample as a JSONL line: the conversation plus what is needed to re-render it.

The ``messages`` are in OpenAI chat form with the tile image as a path relative to the
data folder (Qwen-VL fine-tuning style). ``objects`` keeps the unrounded quads in pixels
of the stored image, so training can resize the image and re-render the answer exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rscovlm.atomic import atomic_open
from rscovlm.errors import UserError

__all__ = ["TileObject", "TileRecord", "build_messages", "write_jsonl", "read_jsonl"]


@dataclass
class TileObject:
    quad: list[float]          # 8 numbers, pixels of the stored tile image
    label: str
    truncated: bool = False
    difficult: bool = False


@dataclass
class TileRecord:
    id: str
    image: str                 # path relative to the data folder
    source: str                # the image or raster the tile was cut from
    window: list[int]          # col_off, row_off, width, height in source pixels
    size: list[int]            # stored image width, height (the model-input size)
    classes: list[str]         # the classes the prompt asks for
    objects: list[TileObject] = field(default_factory=list)
    split: str = "train"
    messages: list[dict] = field(default_factory=list)
    form: str = "quad"         # the answer form (formats.prompts.FORMS); files without it are quad

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileRecord:
        objects = [TileObject(**obj) for obj in data.get("objects", [])]
        fields = {k: v for k, v in data.items() if k != "objects"}
        return cls(objects=objects, **fields)


def build_messages(system: str, user: str, image: str, answer: str) -> list[dict]:
    """OpenAI-style messages: system, user (image then text), assistant."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": user}]},
        {"role": "assistant", "content": answer},
    ]


def write_jsonl(records: Sequence[TileRecord], path: Path) -> Path:
    with atomic_open(path) as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
    return path


def read_jsonl(path: str | Path) -> Iterator[TileRecord]:
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield TileRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                raise UserError(
                    f"Line {number} of {path} is not a training record written by `rscovlm prepare` ({exc}); "
                    "prepare the data again."
                ) from exc
