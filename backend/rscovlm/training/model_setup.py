"""Loading a Qwen2.5-VL model for fine-tuning: LoRA (default), QLoRA or full.

LoRA adapts only the language model's attention and MLP projections (the vision tower's
MLP has projections of the same names, so targets are matched by their full path); the
rest, vision tower included, stays frozen, as in the authors' LoRA setting. QLoRA loads
the base in 4 bits through bitsandbytes, which needs a CUDA GPU. Full fine-tuning trains
the language model and the vision-language merger; the vision tower is frozen unless
asked, to keep the visual features the model was pre-trained with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rscovlm.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["METHODS", "LoraSettings", "LORA_TARGETS", "load_for_training"]

METHODS = ("lora", "qlora", "full")
# Full module paths of the language model's projections (not the vision tower's).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass(frozen=True)
class LoraSettings:
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05


def _check_method(method: str, on_cuda: bool) -> None:
    if method not in METHODS:
        raise UserError(f"Unknown training method {method!r}; use one of {', '.join(METHODS)}.")
    if method == "qlora":
        if not on_cuda:
            raise UserError(
                "QLoRA loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU, and this "
                "run is on the CPU; use --method lora (or full), or run on a machine with an NVIDIA GPU."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise UserError("QLoRA needs the bitsandbytes package: `pip install bitsandbytes`, or use --method lora.") from exc


def _freeze_vision(model: Any, train_vision: bool) -> None:
    visual = getattr(getattr(model, "model", model), "visual", None)
    if visual is None:
        return
    for name, param in visual.named_parameters():
        # the merger maps vision features into the language model; it trains with the LM
        param.requires_grad = train_vision or name.startswith("merger")


def load_for_training(
    model_folder: Path,
    method: str,
    on_cuda: bool,
    dtype: Any,
    lora: LoraSettings = LoraSettings(),
    train_vision: bool = False,
    gradient_checkpointing: bool = False,
) -> tuple[Any, Any]:
    """``(model ready to train, processor)`` for ``method``; trainable parameters logged."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    _check_method(method, on_cuda)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=["visual", "lm_head"],
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        processor = AutoProcessor.from_pretrained(model_folder, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(model_folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"Could not load a vision-language model from {model_folder}: {exc}") from exc
    model.config.use_cache = False

    if method == "full":
        for param in model.parameters():
            param.requires_grad = True
        _freeze_vision(model, train_vision)
    else:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        config = LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("%s: %s of %s parameters train (%.2f %%)", method, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model, processor
