"""Training step time with the vocabulary projection on every position vs only where a label follows.

`rscovlm train`'s collator asks the model for logits only at the positions whose next
token is part of the answer (``logits_to_keep``): in a detection sample most positions
are the system prompt and the image. This times forward + backward of the same batches
both ways, interleaved so that a busy machine slows both alike, and prints the medians,
their ratio, and the share of positions kept. With no arguments it builds the `small`
demo-size model and a training set from a synthetic scene in a temporary folder.

    .venv/bin/python bench/bench_train_step.py [--model DIR] [--data DIR] [--batch-size 8] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _default_model_and_data(folder: Path) -> tuple[Path, Path]:
    from rscovlm.synth import make_scene
    from rscovlm.tiny_model import build_tiny_model
    from rscovlm.training.prepare import PrepareOptions, prepare_dataset
    from rscovlm.training.sources import vector_image

    model = build_tiny_model(folder / "model", size="small")
    make_scene(folder / "scene.tif", folder / "truth.gpkg", size=1024, seed=3)
    prepare_dataset([vector_image(folder / "scene.tif", folder / "truth.gpkg")], folder / "data",
                    PrepareOptions(tile_size=256, overlap=64, val_fraction=0.0), show_progress=False)
    return model, folder / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--data", help="a folder written by `rscovlm prepare`")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.training.dataset import DetectionCollator, DetectionDataset, load_records

    with tempfile.TemporaryDirectory() as scratch:
        if args.model and args.data:
            model_dir, data_dir = Path(args.model), Path(args.data)
        else:
            model_dir, data_dir = _default_model_and_data(Path(scratch))
        processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True).train()
        records = [r for r in load_records(data_dir, "train") if r.objects]
        dataset = DetectionDataset(records, data_dir, processor)
        collate = DetectionCollator(processor.tokenizer.pad_token_id)
        size = args.batch_size
        batches = [collate([dataset[(i * size + j) % len(dataset)] for j in range(size)]) for i in range(args.steps + 1)]

        def step(batch: dict) -> float:
            start = time.perf_counter()
            model(**batch).loss.backward()
            model.zero_grad(set_to_none=True)
            return time.perf_counter() - start

        times: dict[str, list[float]] = {"all positions": [], "answer only": []}
        for index, batch in enumerate(batches):
            full = {k: v for k, v in batch.items() if k not in ("logits_to_keep", "shift_labels")}
            pair = (("all positions", full), ("answer only", batch))
            for name, inputs in pair if index % 2 else pair[::-1]:
                seconds = step(inputs)
                if index:                       # the first batch warms up both
                    times[name].append(seconds)
        kept = sum(int(b["logits_to_keep"].sum()) for b in batches)
        positions = sum(int(b["attention_mask"].sum()) for b in batches)

    print(f"{model_dir}, batch {size}, {args.steps} steps each way, {torch.get_num_threads()} threads")
    print(f"positions projected onto the vocabulary: {kept / positions:.0%} of the real (unpadded) ones")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:14s} {value:.3f} s per forward + backward (median)")
    print(f"answer only / all positions: {medians['answer only'] / medians['all positions']:.2f}")


if __name__ == "__main__":
    main()
