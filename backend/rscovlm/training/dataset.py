"""Training samples from ``prepare``'s JSONL, encoded for Qwen2.5-VL with answer-only labels.

Each sample is re-rendered when it is drawn: the tile may be resized (boxes scaled along,
answer rendered again at the new size) and the request paraphrased. Labels are -100 on
everything but the assistant's answer and its closing ``<|im_end|>``: the system and
user turns, the image tokens and padding teach nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rscovlm.errors import UserError
from rscovlm.formats.prompts import categories_text, detection_prompt

from .augment import DIHEDRAL, dihedral_quads, random_input_size, sample_user_prompt
from .records import TileRecord, read_jsonl
from .targets import render_answer, scale_quads

__all__ = ["IGNORE_INDEX", "AugmentOptions", "DetectionDataset", "DetectionCollator", "load_records"]

IGNORE_INDEX = -100
IMAGE_KEYS = ("pixel_values", "image_grid_thw")   # per image, concatenated; every other key is per token


@dataclass(frozen=True)
class AugmentOptions:
    resize: bool = True
    min_pixels: int = 224 * 224
    max_pixels: int = 1008 * 1008
    exact_prompt_probability: float = 0.5
    flip_rotate: bool = False    # a random one of the 8 flips / quarter turns per drawing
    seed: int = 0


def load_records(data_dir: str | Path, split: str) -> list[TileRecord]:
    path = Path(data_dir).expanduser() / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(
            f"{path} does not exist: DATA_DIR must be a folder written by `rscovlm prepare` "
            "(train.jsonl, val.jsonl, images/)."
        )
    return list(read_jsonl(path))


def _system_text(record: TileRecord) -> str:
    for message in record.messages:
        if message.get("role") == "system":
            content = message["content"]
            return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return detection_prompt(record.classes, record.form)[0]


class DetectionDataset:
    """A map-style dataset of encoded conversations (torch-compatible: ``len`` and ``[]``)."""

    def __init__(self, records: list[TileRecord], data_dir: str | Path, processor: Any,
                 augment: AugmentOptions | None = None) -> None:
        self.records = records
        self.data_dir = Path(data_dir)
        self.processor = processor
        self.augment = augment or AugmentOptions(resize=False, exact_prompt_probability=1.0)
        self._draws = 0

    def __len__(self) -> int:
        return len(self.records)

    def conversation(self, index: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
        """(prompt messages, full messages with the answer) for one drawing of a sample."""
        from PIL import Image

        record = self.records[index]
        image = Image.open(self.data_dir / record.image).convert("RGB")
        quads = np.array([obj.quad for obj in record.objects], dtype=np.float64).reshape(-1, 8)
        if self.augment.flip_rotate:
            transpose = rng.choice(DIHEDRAL)
            quads, _ = dihedral_quads(quads, (image.width, image.height), transpose)
            if transpose is not None:
                image = image.transpose(Image.Transpose[transpose])
        size = (image.width, image.height)
        new_size = size
        if self.augment.resize:
            new_size = random_input_size(size[0], size[1], rng, self.augment.min_pixels, self.augment.max_pixels)
            if new_size != size:
                image = image.resize(new_size, Image.Resampling.BICUBIC)
        labels = [o.label for o in record.objects]
        answer = render_answer(scale_quads(quads, size, new_size), labels, new_size, record.form)
        if record.form == "json":   # the JSON form has its own request; the paraphrases ask for plain text
            user = detection_prompt(record.classes, "json")[1]
        else:
            user = sample_user_prompt(categories_text(record.classes), rng, self.augment.exact_prompt_probability)
        prompt = [
            {"role": "system", "content": [{"type": "text", "text": _system_text(record)}]},
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": user}]},
        ]
        full = prompt + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        return prompt, full

    def _encode(self, messages: list[dict], image, add_generation_prompt: bool) -> dict:
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        area = image.width * image.height
        return self.processor(
            text=[text], images=[image], return_tensors="pt",
            # never let the processor resize what we sized: coordinates are its pixels
            size={"shortest_edge": min(area, 56 * 56), "longest_edge": max(area, 1008 * 1008)},
        )

    def __getitem__(self, index: int) -> dict:
        self._draws += 1
        rng = random.Random(hash((self.augment.seed, index, self._draws)) & 0xFFFFFFFF)
        prompt, full = self.conversation(index, rng)
        image = prompt[1]["content"][0]["image"]
        encoded = self._encode(full, image, add_generation_prompt=False)
        prompt_ids = self._encode(prompt, image, add_generation_prompt=True)["input_ids"][0]
        input_ids = encoded["input_ids"][0]
        n_prompt = len(prompt_ids)
        if not bool((input_ids[:n_prompt] == prompt_ids).all()):
            raise RuntimeError("the chat template does not render the prompt as a prefix of the conversation")
        labels = input_ids.clone()
        labels[:n_prompt] = IGNORE_INDEX
        im_end = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        ends = (input_ids == im_end).nonzero().flatten()
        if len(ends) and ends[-1] >= n_prompt:
            labels[int(ends[-1]) + 1:] = IGNORE_INDEX   # what follows the answer's <|im_end|>
        # Everything the processor gives goes to the model, as at inference: transformers 5
        # places image tokens on M-RoPE's 2-D grid only when it sees ``mm_token_type_ids``;
        # without it they get 1-D positions and the model learns a layout it never meets again.
        sample = {key: value if key in IMAGE_KEYS else value[0] for key, value in encoded.items()}
        sample["labels"] = labels
        return sample


class DetectionCollator:
    """Right-pads a batch; images' patches are concatenated as Qwen2.5-VL expects.

    The model projects onto the vocabulary only where a label follows (``logits_to_keep``
    as a mask, with those labels as ``shift_labels``): the system prompt and the image
    are most of a detection sample, and their logits would only be thrown away. The loss
    is the same. With the 7B's 152,064-word vocabulary the logits take about 6 bytes per
    word per position (bf16, and the loss's fp32 copy): 0.9 GB per 1,000 positions, most of
    them saved. A small model on the CPU gains little time (bench/bench_train_step.py).
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        length = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}   # others (masks, token types): 0

        def pad(key: str) -> torch.Tensor:
            out = torch.full((len(features), length), fill.get(key, 0), dtype=features[0][key].dtype)
            for row, f in enumerate(features):
                out[row, : len(f[key])] = f[key]
            return out

        batch = {key: torch.cat([f[key] for f in features]) if key in IMAGE_KEYS else pad(key) for key in features[0]}
        next_labels = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
        batch["logits_to_keep"] = next_labels != IGNORE_INDEX
        batch["shift_labels"] = next_labels[batch["logits_to_keep"]]
        return batch
