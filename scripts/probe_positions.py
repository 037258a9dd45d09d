"""Does the model know where each image token is, and what is on it? Linear probes, layer by layer.

Qwen2.5-VL gives the language model no absolute position: M-RoPE is relative, and so is
the vision tower's 2-D rope. A model must work out where a token sits before it can
write that place as coordinates. This fits a ridge regression from the states of the
image tokens at each layer (0 = the vision tower's output) to their (row, column) in
the 28 px token grid, on some tiles, and scores it on others: R^2 near 1 means the
position is there to be read; if it is, slow learning lies elsewhere (in telling objects
apart, or in attending to them).

    python scripts/probe_positions.py MODEL_DIR DATA_DIR [--tiles 48]
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from rscovlm.engines.transformers_engine import TransformersEngine
from rscovlm.formats.prompts import detection_prompt, messages
from rscovlm.training.dataset import load_records


def image_token_states(engine: TransformersEngine, conversation: list[dict]) -> tuple[list[np.ndarray], int]:
    """Per layer, the states of the image tokens (row-major), and the grid's width in tokens."""
    inputs = engine.processor.apply_chat_template(
        [conversation], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model(**inputs, output_hidden_states=True)
    pad = engine.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    mask = inputs["input_ids"][0] == pad
    merge = engine.model.config.vision_config.spatial_merge_size
    width = int(inputs["image_grid_thw"][0, 2]) // merge
    return [layer[0][mask].float().numpy() for layer in out.hidden_states], width


def ridge_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Fit a ridge regression (with bias) on one set; predict the other."""
    def with_bias(x):
        return np.c_[x, np.ones(len(x))]
    a = with_bias(train_x)
    weights = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ train_y)
    return with_bias(test_x) @ weights


def object_cells(record, width: int, height: int, classes: list[str], token_px: float) -> np.ndarray:
    """(tokens, classes) 0/1: does an object of the class have its centre on this token?"""
    cells = np.zeros((width * height, len(classes)))
    for obj in record.objects:
        if obj.label in classes:
            cx, cy = np.asarray(obj.quad, dtype=float).reshape(4, 2).mean(axis=0)
            col, row = min(int(cx // token_px), width - 1), min(int(cy // token_px), height - 1)
            cells[row * width + col, classes.index(obj.label)] = 1
    return cells


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[truth == 1], scores[truth == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", help="a folder written by `rscovlm prepare`")
    parser.add_argument("--tiles", type=int, default=48, help="tiles to probe; three quarters fit, one quarter scores")
    args = parser.parse_args()

    from PIL import Image

    engine = TransformersEngine.from_pretrained(args.model, device="cpu")
    records = load_records(args.data, "train")
    random.Random(1).shuffle(records)
    layers: list[list[np.ndarray]] = []
    targets, tile_of, objects = [], [], []
    classes = records[0].classes if records else []
    vision = engine.model.config.vision_config
    token_px = vision.patch_size * vision.spatial_merge_size
    for index, record in enumerate(records[: args.tiles]):
        image = Image.open(f"{args.data}/{record.image}").convert("RGB")
        system, user = detection_prompt(record.classes)
        states, width = image_token_states(engine, messages(system, user, image))
        layers = layers or [[] for _ in states]
        for kept, state in zip(layers, states):
            kept.append(state)
        rows, cols = np.divmod(np.arange(len(states[0])), width)
        objects.append(object_cells(record, width, len(states[0]) // width, classes, token_px))
        targets.append(np.stack([rows, cols], 1).astype(float))
        tile_of.append(np.full(len(rows), index))
    y, tiles, on = np.concatenate(targets), np.concatenate(tile_of), np.concatenate(objects)
    fit = tiles < int(args.tiles * 0.75)
    print("layer  R2 row  R2 col  error row  error col  " + "  ".join(f"AUC {c}" for c in classes))
    for number, states in enumerate(layers):
        x = np.concatenate(states)
        where = ridge_predictions(x[fit], y[fit], x[~fit])
        r2 = 1 - ((where - y[~fit]) ** 2).sum(0) / ((y[~fit] - y[~fit].mean(0)) ** 2).sum(0)
        error = np.abs(where - y[~fit]).mean(0)
        what = ridge_predictions(x[fit], on[fit], x[~fit])
        aucs = [roc_auc(what[:, k], on[~fit][:, k]) for k in range(len(classes))]
        print(f"{number:5d}  {r2[0]:6.2f}  {r2[1]:6.2f}  {error[0]:9.2f}  {error[1]:9.2f}  "
              + "  ".join(f"{v:{len(c) + 4}.2f}" for v, c in zip(aucs, classes)))
    print("errors in 28 px tokens; all scores on tiles the probes were not fitted on")


if __name__ == "__main__":
    main()
