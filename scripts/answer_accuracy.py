"""Has a detector begun to localise? Teacher-forced accuracy of each part of its answers.

Generation and mAP take minutes and stay at zero for most of a from-scratch run. This
reads a split written by `rscovlm prepare`, feeds each tile's true answer to the model
(teacher forcing) and counts, for every answer line, how often the most likely next
token is right: the first digit of x1 and y1 (where the object is), the later
coordinates (its size and turn, given where it starts), the labels. Each figure is
printed beside what always guessing the commonest token would score on the same tiles,
so "0.44 against a prior of 0.44" reads as "has learnt nothing about where".

On the tiles holding one object it also asks where that knowledge is lost: a ridge
probe, layer by layer, of the object's centre from the state that predicts x1. A high
R^2 beside a first digit at its prior means the model knows where the object is but has
not learnt to write it.

    python scripts/answer_accuracy.py MODEL_DIR DATA_DIR [--split val] [--tiles 150]
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
import torch
from probe_positions import ridge_predictions

from rscovlm.training.dataset import DetectionCollator, DetectionDataset, load_records


def answer_parts(tokens: list[str]) -> list[str]:
    """The part of its line each answer token belongs to: x1 / y1 (first digit or rest), coords, label."""
    parts, field, first = [], 0, True
    for token in tokens:
        if token.isdigit():
            name = ("x1" if field == 0 else "y1" if field == 1 else "coords") + (" first digit" if first else "")
            first = False
        elif token == ",":
            name, field, first = "separator", field + 1, True
        else:
            name = "label"
            if "\n" in token:
                field, first = 0, True
        parts.append(name)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", help="a folder written by `rscovlm prepare`")
    parser.add_argument("--split", default="val")
    parser.add_argument("--tiles", type=int, default=150, help="tiles with objects to read")
    args = parser.parse_args()

    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(args.model, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(args.model, local_files_only=True).eval()
    records = [r for r in load_records(args.data, args.split) if r.objects][: args.tiles]
    dataset = DetectionDataset(records, args.data, processor)     # no augmentation: the exact prompt
    collate = DetectionCollator(processor.tokenizer.pad_token_id)
    right: dict[str, list[bool]] = defaultdict(list)
    seen: dict[str, Counter] = defaultdict(Counter)
    states, centres = [], []            # single-object tiles: the state predicting x1, per layer
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        with torch.inference_mode():
            out = model(**batch, output_hidden_states=True)
        guesses = out.logits.argmax(-1)                      # one row per labelled position
        if len(records[index].objects) == 1:
            before_answer = int(batch["logits_to_keep"][0].nonzero()[0])
            states.append(np.stack([h[0, before_answer].float().numpy() for h in out.hidden_states]))
            centres.append(np.asarray(records[index].objects[0].quad, dtype=float).reshape(4, 2).mean(axis=0))
        targets = batch["shift_labels"]
        tokens = [processor.tokenizer.decode([int(t)]) for t in targets]
        for part, guess, target in zip(answer_parts(tokens), guesses, targets):
            right[part].append(bool(guess == target))
            seen[part][int(target)] += 1
    print(f"{len(dataset)} {args.split} tiles with objects, teacher-forced, {args.model}")
    print(f"{'part':22s} {'right':>6s} {'prior':>6s} {'tokens':>7s}")
    for part in ("x1 first digit", "y1 first digit", "x1", "y1", "coords first digit", "coords", "separator", "label"):
        if right[part]:
            prior = seen[part].most_common(1)[0][1] / sum(seen[part].values())
            print(f"{part:22s} {sum(right[part]) / len(right[part]):6.2f} {prior:6.2f} {len(right[part]):7d}")
    if len(states) >= 8:
        x, y = np.stack(states), np.stack(centres)
        fit = np.arange(len(y)) < int(len(y) * 0.75)
        print(f"\n{len(y)} single-object tiles: R^2 of the object's centre from the state before the answer"
              " (fitted on 3/4, scored on the rest)")
        print("layer  R2 x  R2 y")
        for layer in range(x.shape[1]):
            where = ridge_predictions(x[fit, layer], y[fit], x[~fit, layer])
            r2 = 1 - ((where - y[~fit]) ** 2).sum(0) / ((y[~fit] - y[~fit].mean(0)) ** 2).sum(0)
            print(f"{layer:5d}  {r2[0]:4.2f}  {r2[1]:4.2f}")


if __name__ == "__main__":
    main()
