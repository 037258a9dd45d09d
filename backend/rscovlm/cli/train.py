"""``rscovlm train``: fine-tune the model on a folder written by ``rscovlm prepare``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune RSCoVLM (LoRA, QLoRA or full) on data from `rscovlm prepare`",
        description="Fine-tune a Qwen2.5-VL detector with the Hugging Face Trainer (launch it with "
        "accelerate/torchrun/deepspeed for several GPUs). Defaults follow the RSCoVLM recipe: "
        "AdamW, weight decay 0.1, cosine schedule with 5%% warm-up, bf16 and gradient "
        "checkpointing on a GPU, loss on the answer only, random tile resizing, paraphrased "
        "prompts. Writes an adapter (LoRA/QLoRA) or a model (full), checkpoints, "
        "loss_log.csv/jsonl and loss_curve.png into OUT.",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder written by `rscovlm prepare`")
    parser.add_argument("--model", required=True, metavar="M", help="base model folder or Hugging Face id")
    parser.add_argument("--output", required=True, metavar="OUT", help="folder for the adapter/model and logs")
    parser.add_argument("--method", choices=("lora", "qlora", "full"), default="lora",
                        help="LoRA (default), QLoRA (4-bit base, needs a CUDA GPU) or full fine-tuning")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training tiles (default 1)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default 1e-4 for LoRA/QLoRA, 2e-6 for full as in the paper)")
    parser.add_argument("--batch-size", type=int, default=1, help="tiles per device per step (default 1)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    parser.add_argument("--lora-r", type=int, default=64, help="LoRA rank (default 64)")
    parser.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (default 16)")
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default 0.05)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimiser steps")
    parser.add_argument("--save-steps", type=int, default=200, help="checkpoint (and validate) every N steps")
    parser.add_argument("--logging-steps", type=int, default=10, help="log the loss every N steps")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
    parser.add_argument("--device", default="auto", help="auto (default), cuda or cpu")
    parser.add_argument("--deepspeed", default=None, metavar="CONFIG",
                        help="DeepSpeed config json (e.g. resources/deepspeed_zero1.json)")
    parser.add_argument("--min-pixels", type=int, default=224 * 224, help="random resizing: smallest input area")
    parser.add_argument("--max-pixels", type=int, default=1008 * 1008, help="random resizing: largest input area")
    parser.add_argument("--no-resize", action="store_true", help="train at the prepared size only")
    parser.add_argument("--flip-rotate", action="store_true",
                        help="random flips and quarter turns of each tile, boxes moved along (overhead imagery has no 'up')")
    parser.add_argument("--exact-prompt", type=float, default=0.5, metavar="P",
                        help="probability of the exact prompt instead of a paraphrase (default 0.5)")
    parser.add_argument("--train-vision", action="store_true", help="full method: train the vision tower too")
    parser.add_argument("--no-eval", action="store_true", help="skip the validation loss")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rscovlm.errors import UserError
    from rscovlm.training.dataset import AugmentOptions
    from rscovlm.training.model_setup import LoraSettings
    from rscovlm.training.train import TrainOptions, train

    if not 0.0 <= args.exact_prompt <= 1.0:
        raise UserError(f"--exact-prompt is a probability between 0 and 1; got {args.exact_prompt}.")
    if args.min_pixels > args.max_pixels:
        raise UserError(f"--min-pixels ({args.min_pixels}) must not exceed --max-pixels ({args.max_pixels}).")
    options = TrainOptions(
        data_dir=args.data_dir, model=args.model, output=args.output, method=args.method,
        epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout),
        max_steps=args.max_steps, resume=args.resume, device=args.device, deepspeed=args.deepspeed,
        save_steps=args.save_steps, logging_steps=args.logging_steps, evaluate=not args.no_eval,
        seed=args.seed, train_vision=args.train_vision,
        augment=AugmentOptions(resize=not args.no_resize, min_pixels=args.min_pixels,
                               max_pixels=args.max_pixels, exact_prompt_probability=args.exact_prompt,
                               flip_rotate=args.flip_rotate, seed=args.seed),
    )
    result = train(options)
    final = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    print(f"trained {result.global_step} steps; last logged loss {final}")
    print(f"wrote the {result.kind} to {result.output}; loss log {result.log_path}"
          + (f", curve {result.curve_path}" if result.curve_path else ""))
    print(f"use it with: {result.load_hint}")
    return 0
