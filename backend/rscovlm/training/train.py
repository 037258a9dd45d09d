"""Fine-tune a Qwen2.5-VL detector (RSCoVLM or the tiny test model) with the Hugging Face Trainer.

Why the Trainer and not a loop of our own: accelerate, torchrun and DeepSpeed launch it
unchanged on several GPUs, and checkpoints, resumption, the cosine schedule and the
progress bar with ETA come with it. Defaults follow the paper where they apply: AdamW,
weight decay 0.1, cosine schedule with 5 % warm-up, bf16 and gradient checkpointing on a
GPU (fp32 on the CPU); LoRA r 64, alpha 16, dropout 0.05.

The output folder loads in ``detect``/``ask``/``serve``: a LoRA run writes an adapter
(``--adapter OUT`` with the same ``--model``), a full run writes a model with its
processor (``--model OUT``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rscovlm.errors import UserError

from .dataset import AugmentOptions, DetectionCollator, DetectionDataset, load_records
from .model_setup import METHODS, LoraSettings, load_for_training

log = logging.getLogger(__name__)

__all__ = ["TrainOptions", "TrainResult", "train", "default_learning_rate", "CHECKPOINTS"]

CHECKPOINTS = "checkpoints"


def default_learning_rate(method: str) -> float:
    """2e-6 for full fine-tuning (the paper's), 1e-4 for LoRA/QLoRA (usual for adapters)."""
    return 2e-6 if method == "full" else 1e-4


@dataclass
class TrainOptions:
    data_dir: str
    model: str
    output: str
    method: str = "lora"
    epochs: float = 1.0
    learning_rate: float | None = None
    batch_size: int = 1
    grad_accum: int = 1
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_steps: int = -1
    resume: bool = False
    device: str = "auto"
    deepspeed: str | None = None
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    save_steps: int = 200
    save_total_limit: int | None = 3
    logging_steps: int = 10
    evaluate: bool = True
    seed: int = 0
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    train_vision: bool = False
    gradient_checkpointing: bool | None = None   # None: on for GPU, off for CPU
    show_progress: bool = True


@dataclass
class TrainResult:
    output: Path
    kind: str                 # "adapter" or "model"
    global_step: int
    final_loss: float | None
    losses: list[float]
    log_path: Path
    curve_path: Path | None
    load_hint: str


def _device(device: str) -> bool:
    """True when training runs on CUDA."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return torch.cuda.is_available()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for but no CUDA GPU is visible; use --device auto or cpu.")
        return True
    if device == "cpu":
        return False
    raise UserError(f"Unknown device {device!r}; use auto, cuda or cpu.")


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)


def _check_options(options: TrainOptions, checkpoint_dir: Path) -> None:
    if options.method not in METHODS:
        raise UserError(f"Unknown training method {options.method!r}; use one of {', '.join(METHODS)}.")
    for name in ("batch_size", "grad_accum", "save_steps", "logging_steps"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(options, name)}.")
    if options.max_steps <= 0 and options.epochs <= 0:
        raise UserError("Give a positive --epochs or --max-steps.")
    if options.deepspeed:
        if not Path(options.deepspeed).is_file():
            raise UserError(f"The DeepSpeed config {options.deepspeed} does not exist; check --deepspeed.")
        try:
            import deepspeed  # noqa: F401
        except ImportError as exc:
            raise UserError("--deepspeed needs the deepspeed package: `pip install deepspeed`, or leave it out.") from exc
    existing = _checkpoints(checkpoint_dir)
    if options.resume and not existing:
        raise UserError(
            f"--resume was given but {checkpoint_dir} holds no checkpoint to continue from; "
            "run without --resume to start training."
        )
    if options.resume and existing:
        _warn_if_schedule_changes(options, existing[-1])
    if not options.resume and existing:
        raise UserError(
            f"{options.output} already holds checkpoints of an earlier run ({existing[-1].name}); pass --resume "
            "to continue it, or choose an empty --output folder."
        )


def _warn_if_schedule_changes(options: TrainOptions, checkpoint: Path) -> None:
    """Resuming with another --max-steps rebuilds the cosine schedule for the new length,
    so the learning rate jumps (on the demo model, from 4.5e-4 to 8.5e-4 at step 2,500 of
    a 4,500-step run resumed as a 9,000-step one)."""
    try:
        planned = int(json.loads((checkpoint / "trainer_state.json").read_text())["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if options.max_steps > 0 and options.max_steps != planned:
        log.warning(
            "Resuming %s, which was planned for %d steps, with --max-steps %d: the learning-rate "
            "schedule is rebuilt for %d steps, so the rate jumps to where the new schedule is at this "
            "step, and the loss can rise for a while. Resume with --max-steps %d to continue the run as planned.",
            checkpoint.name, planned, options.max_steps, options.max_steps, planned,
        )


def _trainer_class():
    """The Hugging Face Trainer, with full-model checkpoints reloaded under the model's own key names.

    transformers 5 writes Qwen2.5-VL weights under the original checkpoint names
    (``visual.*``, ``model.layers.*``) and its Trainer reloads a full-model checkpoint with
    a raw, non-strict ``load_state_dict``: no key matches, nothing is loaded, and a resumed
    full fine-tune would silently go on from the initial weights (its loss jumps back up).
    ``from_pretrained`` knows the renaming; adapters, DeepSpeed and FSDP keep their own paths.
    """
    from transformers import Trainer

    class DetectionTrainer(Trainer):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            model = model if model is not None else self.model
            if hasattr(model, "peft_config") or self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
            model.load_state_dict(saved.state_dict(), strict=True)
            log.info("Weights reloaded from %s", resume_from_checkpoint)
            return None

    return DetectionTrainer


def train(options: TrainOptions) -> TrainResult:
    """Fine-tune as ``options`` say; write the model/adapter, processor, loss log and curve to the output."""
    import torch
    from transformers import TrainingArguments

    from rscovlm.engines.transformers_engine import resolve_model_folder

    from .loss_log import LossLogCallback, plot_loss_curve, read_loss_log

    out = Path(options.output).expanduser()
    checkpoint_dir = out / CHECKPOINTS
    _check_options(options, checkpoint_dir)
    on_cuda = _device(options.device)
    model_folder = resolve_model_folder(str(options.model))
    train_records = load_records(options.data_dir, "train")
    if not train_records:
        raise UserError(f"{options.data_dir}/train.jsonl holds no samples; prepare more data or lower --val-fraction.")
    val_records = load_records(options.data_dir, "val") if (Path(options.data_dir) / "val.jsonl").is_file() else []

    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    fp16 = on_cuda and not bf16
    dtype = torch.bfloat16 if bf16 else (torch.float16 if fp16 else torch.float32)
    checkpointing = on_cuda if options.gradient_checkpointing is None else options.gradient_checkpointing
    model, processor = load_for_training(
        model_folder, options.method, on_cuda, dtype, options.lora, options.train_vision, checkpointing,
    )
    if not on_cuda:
        model.to("cpu")

    train_set = DetectionDataset(train_records, options.data_dir, processor, options.augment)
    eval_set = None
    if options.evaluate and val_records:
        eval_set = DetectionDataset(val_records, options.data_dir, processor, None)

    out.mkdir(parents=True, exist_ok=True)
    learning_rate = options.learning_rate or default_learning_rate(options.method)
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=learning_rate,
        weight_decay=options.weight_decay,
        lr_scheduler_type="cosine",
        warmup_steps=options.warmup_ratio,          # a float below 1 is a share of the steps
        optim="adamw_torch_fused" if on_cuda else "adamw_torch",
        bf16=bf16,
        fp16=fp16,
        use_cpu=not on_cuda,
        logging_steps=options.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=options.save_total_limit,
        eval_strategy="steps" if eval_set is not None else "no",
        eval_steps=options.save_steps if eval_set is not None else None,
        deepspeed=options.deepspeed,
        remove_unused_columns=False,
        dataloader_pin_memory=on_cuda,
        report_to="none",
        seed=options.seed,
        disable_tqdm=not options.show_progress,
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DetectionCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,      # saved into every checkpoint, so one loads in `detect` as it is
        callbacks=[LossLogCallback(out)],
    )
    trainer.train(resume_from_checkpoint=True if options.resume else None)

    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    kind = "model" if options.method == "full" else "adapter"
    rows = read_loss_log(out)
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    curve = plot_loss_curve(rows, out / "loss_curve.png")
    hint = (f"rscovlm detect RASTER --model {out}" if kind == "model"
            else f"rscovlm detect RASTER --model {options.model} --adapter {out}")
    info = {
        "method": options.method, "base_model": str(options.model), "kind": kind,
        "global_step": trainer.state.global_step, "learning_rate": learning_rate,
        "final_loss": losses[-1] if losses else None, "device": "cuda" if on_cuda else "cpu",
        "dtype": str(dtype).replace("torch.", ""), "lora": asdict(options.lora) if kind == "adapter" else None,
        "augment": asdict(options.augment), "classes": train_records[0].classes, "load": hint,
    }
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return TrainResult(
        output=out, kind=kind, global_step=trainer.state.global_step, final_loss=info["final_loss"],
        losses=losses, log_path=out / "loss_log.jsonl", curve_path=curve, load_hint=hint,
    )
