"""``rscovlm make-tiny-model DIR``: a tiny random Qwen2.5-VL for trying the pipeline without weights."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny random Qwen2.5-VL (same architecture as RSCoVLM, a few MB) to a folder",
        description="Write a tiny randomly initialised Qwen2.5-VL with its own tokenizer and "
        "processor. Its answers are gibberish; use it to test installs, the server and the "
        "plugin end to end without downloading the real 16 GB weights.",
    )
    parser.add_argument("folder", metavar="DIR", help="folder to write the model into (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same weights")
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny",
                        help="tiny (~1 M parameters, default; for tests) or small (~6 M; trainable from "
                        "scratch on the synthetic scenes, see scripts/train_demo_model.sh)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..tiny_model import build_tiny_model, parameter_count

    folder = build_tiny_model(args.folder, seed=args.seed, size=args.size)
    print(f"Wrote a {args.size} Qwen2.5-VL to {folder.resolve()} ({parameter_count(folder):,} parameters).")
    print(f"Point --model at {folder} to use it in place of the real weights.")
    return 0
