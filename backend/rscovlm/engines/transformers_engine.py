"""RSCoVLM in this process with Hugging Face transformers: load once, generate in batches.

Loading is where users get stuck, so every choice is made explicitly and reported:
which device (and whether it silently fell back to the CPU), which dtype, 4/8-bit
quantization, which attention kernel, which LoRA adapter. Every failure a user can fix
(no GPU for 4-bit, weights not downloaded, a folder that is not a model) is a UserError
sentence, never a stack trace.

Generation follows the authors' inference setting: left padding, greedy decoding, only
the new tokens decoded. Any other generation settings the weights ship with (e.g. a
repetition penalty) are kept, as the authors' code keeps them.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CancelledError, UserError
from .base import Answer, Conversation, ShouldCancel, WorkWaiting, chunks, conversation_images, description

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = (None, "4bit", "8bit")
ATTENTIONS = (None, "flash_attention_2", "sdpa", "eager")
# Hugging Face repository ids look like "owner/name".
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Modules left in full precision when quantizing: the vision tower is small and
# sensitive (box coordinates come from it), the output head decides every token.
_KEEP_FULL_PRECISION = ["visual", "lm_head"]
CPU_FALLBACK_NOTE = (
    "No CUDA GPU is available, so the model runs on the CPU in float32: a 7B model takes "
    "minutes per tile instead of seconds."
)


def is_offline() -> bool:
    """True when Hugging Face downloads are switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(value.strip().upper() in {"1", "ON", "YES", "TRUE"} for value in flags)


def download_hint(repo_id: str) -> str:
    return (
        f"Download it once with `huggingface-cli download {repo_id} --local-dir ./{repo_id.split('/')[-1]}` "
        f"and point --model at that folder."
    )


def resolve_model_folder(model: str) -> Path:
    """A local folder holding the weights: ``model`` itself, or the cached/downloaded HF id."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"--model {model} is a file; give the folder that holds config.json and the weights.")
        if not (path / "config.json").is_file():
            if (path / "adapter_config.json").is_file():
                raise UserError(
                    f"{model} is a LoRA adapter, not a model: pass it as --adapter and point --model at "
                    "the base model (e.g. Qingyun/RSCoVLM-7B-2512)."
                )
            raise UserError(
                f"{model} is not a model folder (no config.json in it); point --model at the folder "
                "you downloaded the weights into."
            )
        return path
    if not _HF_ID.match(model):
        raise UserError(f"The model folder {model} does not exist; check the path given to --model.")
    return _hub_snapshot(model)


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if is_offline():
        raise UserError(
            f"The model {repo_id} is not in the local Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE=1). {download_hint(repo_id)}"
        )
    log.info("Downloading %s from the Hugging Face Hub (about 16 GB for a 7B model)...", repo_id)
    try:
        return Path(snapshot_download(repo_id))
    except RepositoryNotFoundError as exc:
        raise UserError(f"There is no model {repo_id} on the Hugging Face Hub; check the name given to --model.") from exc
    except GatedRepoError as exc:
        raise UserError(f"The model {repo_id} needs you to accept its licence on huggingface.co and log in first.") from exc
    except (HfHubHTTPError, OSError, ConnectionError) as exc:
        raise UserError(f"Could not download {repo_id} ({exc.__class__.__name__}). {download_hint(repo_id)}") from exc


@dataclass
class LoadPlan:
    """Every loading decision, made before touching the weights (so errors come early)."""

    device: str            # "cpu" or "cuda:N"
    dtype_name: str        # "bfloat16" | "float16" | "float32"
    quantization: str | None
    attention: str
    notes: list[str] = field(default_factory=list)


def plan_loading(
    device: str = "auto",
    dtype: str = "auto",
    quantization: str | None = None,
    attn_implementation: str | None = None,
) -> LoadPlan:
    """Choose device, dtype, quantization and attention from what this machine has."""
    import torch

    device = (device or "auto").lower()
    if not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise UserError(f"Unknown device {device!r}; use auto, cuda, cuda:N or cpu.")
    if dtype not in DTYPES:
        raise UserError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"Unknown quantization {quantization!r}; use 4bit or 8bit, or leave it out.")
    if attn_implementation not in ATTENTIONS:
        raise UserError(f"Unknown attention {attn_implementation!r}; use flash_attention_2, sdpa or eager.")

    has_cuda = torch.cuda.is_available()
    notes: list[str] = []
    if device == "auto":
        device = "cuda:0" if has_cuda else "cpu"
        if not has_cuda:
            notes.append(CPU_FALLBACK_NOTE)
    elif device.startswith("cuda"):
        if not has_cuda:
            raise UserError(f"--device {device} was asked for but no CUDA GPU is visible; use --device auto or cpu.")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
        device = f"cuda:{index}"
    else:
        notes.append("Running on the CPU as asked: a 7B model takes minutes per tile instead of seconds.")

    on_cuda = device.startswith("cuda")
    if dtype == "auto":
        if on_cuda:
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"

    if quantization is not None:
        if not on_cuda:
            raise UserError(
                f"{quantization} quantization needs a CUDA GPU (bitsandbytes), and this run is on the CPU; "
                "leave out --quantization, or run on a machine with an NVIDIA GPU."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise UserError(
                f"{quantization} quantization needs the bitsandbytes package: `pip install bitsandbytes`, "
                "or leave out --quantization."
            ) from exc
        if dtype == "float32":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            notes.append(f"{quantization} quantization computes in {dtype}, not float32.")

    has_flash = _flash_attn_available()
    if attn_implementation is None:
        attention = "flash_attention_2" if (has_flash and on_cuda and dtype != "float32") else "sdpa"
    else:
        attention = attn_implementation
        if attention == "flash_attention_2":
            if not has_flash:
                raise UserError("flash_attention_2 needs the flash-attn package: `pip install flash-attn`, or use sdpa.")
            if not on_cuda or dtype == "float32":
                raise UserError("flash_attention_2 runs only on a CUDA GPU in bfloat16 or float16; use sdpa.")
    return LoadPlan(device=device, dtype_name=dtype, quantization=quantization, attention=attention, notes=notes)


def _flash_attn_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def _quantization_config(plan: LoadPlan):
    import torch
    from transformers import BitsAndBytesConfig

    if plan.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, plan.dtype_name),
            llm_int8_skip_modules=_KEEP_FULL_PRECISION,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_KEEP_FULL_PRECISION)


class TransformersEngine:
    """A Qwen2.5-VL family model (RSCoVLM or the tiny test model) loaded in this process."""

    def __init__(self, model: Any, processor: Any, *, model_name: str, adapter: str | None,
                 plan: LoadPlan, batch_size: int = 8) -> None:
        self.model = model
        self.processor = processor
        self.model_name = model_name
        self.adapter = adapter
        self.plan = plan
        self.batch_size = max(1, int(batch_size))
        self.concurrency = 1  # one model, one thread: batching happens inside generate()
        self.device_note = " ".join(plan.notes) or None
        self.pixel_bounds = checkpoint_pixel_bounds(processor.image_processor)
        self.max_new_tokens_limit = _context_length(model)
        self._generation_config = self._greedy_config()
        self._eos_ids = _eos_token_ids(self._generation_config, processor.tokenizer)
        self.paused_rows = 0  # rows paused to make room for waiting work (see generate)
        self.pause_cost_factor = PAUSE_COST_FACTOR

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        quantization: str | None = None,
        attn_implementation: str | None = None,
        batch_size: int = 8,
    ) -> TransformersEngine:
        """Load weights from a folder or Hugging Face id (offline-aware), once."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        plan = plan_loading(device, dtype, quantization, attn_implementation)
        for note in plan.notes:
            log.warning(note)
        folder = resolve_model_folder(str(model))
        adapter_folder = _check_adapter(adapter)

        kwargs: dict[str, Any] = {
            "dtype": getattr(torch, plan.dtype_name),
            "attn_implementation": plan.attention,
            "local_files_only": True,
        }
        if plan.device.startswith("cuda"):
            kwargs["device_map"] = {"": plan.device}
        if plan.quantization:
            kwargs["quantization_config"] = _quantization_config(plan)
        try:
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
            network = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"Could not load a vision-language model from {folder}: {exc}") from exc
        if not hasattr(processor, "image_processor"):
            raise UserError(
                f"{folder} loaded as a text-only tokenizer: the Qwen2.5-VL processor needs torchvision "
                "(`pip install torchvision`), or the folder lacks its preprocessor config."
            )
        processor.tokenizer.padding_side = "left"

        if adapter_folder is not None:
            network = _apply_adapter(network, adapter_folder, merge=plan.quantization is None)
        network.eval()
        log.info("Loaded %s on %s (%s, %s attention%s)", model, plan.device, plan.dtype_name, plan.attention,
                 f", {plan.quantization}" if plan.quantization else "")
        return cls(network, processor, model_name=str(model),
                   adapter=str(adapter) if adapter else None, plan=plan, batch_size=batch_size)

    # -- generation ------------------------------------------------------------------

    def generate(
        self,
        conversations: list[Conversation],
        max_new_tokens: int = 1024,
        should_cancel: ShouldCancel | None = None,
        *,
        resume: list[Answer | None] | None = None,
        work_waiting: WorkWaiting | None = None,
    ) -> list[Answer]:
        """Greedy answers, ``batch_size`` conversations at a time, in input order.

        With ``work_waiting``, a batch whose ended rows have idled long enough (see
        :class:`_RowStops`) stops early when other work is waiting: its unfinished rows
        come back paused (``Answer.resume_ids``), to be continued in a later call with
        ``resume`` next to fresh conversations, so rows do not idle behind one long answer.
        """
        resume = list(resume) if resume is not None else [None] * len(conversations)
        if len(resume) != len(conversations):
            raise ValueError("resume needs one entry (an Answer or None) per conversation")
        answers: list[Answer] = []
        for batch in chunks(list(zip(conversations, resume)), self.batch_size):
            fresh, earlier = (list(part) for part in zip(*batch))
            answers.extend(self._generate_batch(fresh, earlier, max_new_tokens, should_cancel, work_waiting))
        return answers

    def _generate_batch(
        self, batch: list[Conversation], resume: list[Answer | None], max_new_tokens: int,
        should_cancel: ShouldCancel | None, work_waiting: WorkWaiting | None,
    ) -> list[Answer]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        if should_cancel and should_cancel():
            raise CancelledError("generation cancelled")
        inputs = self._prompt_inputs(batch)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        prefixes = [list(answer.resume_ids or ()) if answer is not None else [] for answer in resume]
        if any(prefixes):
            inputs = _append_tokens(inputs, prefixes, self.processor.tokenizer.pad_token_id)
        inputs = inputs.to(self.model.device)
        width = inputs["input_ids"].shape[1]
        # Each row's own budget: the asked one, lowered to what its context leaves, less
        # what it already generated before a pause.
        budgets = [self.clamp_budget(max_new_tokens, length) - len(prefix)
                   for length, prefix in zip(prompt_lengths, prefixes)]
        config = copy.deepcopy(self._generation_config)
        config.max_new_tokens = max(1, max(budgets))
        held = [length + len(prefix) for length, prefix in zip(prompt_lengths, prefixes)]
        stops = _RowStops(self._eos_ids, budgets, held, should_cancel, work_waiting, self.pause_cost_factor)
        chosen = _ChosenLogprobs()
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=config,
                                         stopping_criteria=StoppingCriteriaList([stops]),
                                         logits_processor=LogitsProcessorList([chosen]))
        if should_cancel and should_cancel():
            raise CancelledError("generation cancelled")
        self.paused_rows += stops.reasons.count(_PAUSE)
        logprobs = chosen.table()
        tokenizer = self.processor.tokenizer
        answers = []
        for index, row in enumerate(output[:, width:].tolist()):
            reason, length = stops.reasons[index], stops.lengths[index]
            if reason is None:  # stopped by a criterion of transformers' own (the max length)
                reason, length = _BUDGET, len(row)
            new = row[:length]
            pieces = tokenizer.batch_decode([[t] for t in new], skip_special_tokens=False,
                                            clean_up_tokenization_spaces=False)
            values = logprobs[index, :length].tolist() if logprobs is not None else [0.0] * length
            earlier = resume[index]
            ids = prefixes[index] + new
            answers.append(Answer(
                text=tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False),
                finished=reason == _END,
                tokens=len(ids),
                logprobs=((earlier.logprobs or ()) if earlier is not None else ())
                + tuple(zip(pieces, (round(v, 5) for v in values))),
                resume_ids=tuple(ids) if reason == _PAUSE else None,
            ))
        return answers

    def _prompt_inputs(self, batch: list[Conversation]):
        """The processor's batch: token ids left-padded, images at exactly the size given."""
        processor_kwargs: dict[str, Any] = {"padding": True, "padding_side": "left"}
        areas = [image.width * image.height for c in batch for image in conversation_images(c)]
        if areas:
            # Widen the processor's pixel range so it never resizes what the pipeline sized:
            # coordinates in the answer are then pixels of exactly the image we sent.
            min_pixels, max_pixels = self.pixel_bounds
            processor_kwargs["size"] = {
                "shortest_edge": min(min_pixels, *areas),
                "longest_edge": max(max_pixels, *areas),
            }
        return self.processor.apply_chat_template(
            batch,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs=processor_kwargs,
        )

    def clamp_budget(self, max_new_tokens: int, prompt_length: int) -> int:
        """The asked budget, lowered to what the model's context leaves after the prompt."""
        budget = max(1, int(max_new_tokens))
        if self.max_new_tokens_limit is not None:
            budget = max(1, min(budget, self.max_new_tokens_limit - prompt_length))
        return budget

    def _greedy_config(self):
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        config.temperature = None
        config.top_p = None
        config.top_k = None
        if config.pad_token_id is None:
            config.pad_token_id = self.processor.tokenizer.pad_token_id
        return config

    # -- reporting -------------------------------------------------------------------

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        import torch

        info = description(
            self, "transformers", model=self.model_name, adapter=self.adapter, device=self.plan.device,
            gpu_memory_used_gb=None, gpu_memory_total_gb=None, dtype=self.plan.dtype_name,
            quantization=self.plan.quantization, attention=self.plan.attention,
            parameters=self.parameter_count(), note=self.device_note,
        )
        if self.plan.device.startswith("cuda"):
            index = torch.device(self.plan.device).index or 0
            free, total = torch.cuda.mem_get_info(index)
            info["gpu"] = torch.cuda.get_device_name(index)
            info["gpu_memory_used_gb"] = round((total - free) / 2**30, 2)
            info["gpu_memory_total_gb"] = round(total / 2**30, 2)
        return info


#: A batch pauses its unfinished rows once its ended rows have idled as long as
#: prefilling the unfinished ones again would take, times this factor (the ski-rental
#: rule: it never wastes more than twice the better of pausing and not pausing). 0
#: pauses as soon as one row has ended and other work waits.
PAUSE_COST_FACTOR = 1.0
_END, _BUDGET, _PAUSE = "end", "budget", "pause"


class _RowStops:
    """A stopping criterion that decides, after each token, which rows stop and why.

    A row stops at its end token, at its own budget (rows continued after a pause have
    less left), or is paused with every unfinished row when other work waits and
    pausing has become cheaper than idling: the ended rows' idle time (measured, step
    by step) has reached ``cost_factor`` times the re-prefill of the unfinished rows
    (their tokens times this call's measured prefill time per token). The rule adapts
    to the hardware: a 7B model on a GPU, where a decode step is dear and a prefill
    cheap, pauses within a few steps; a small model on a CPU waits longer. A cancel
    stops all rows within one step. ``lengths`` records how many tokens each row
    generated when it stopped: transformers pads a stopped row with a token that is
    also an end token, so the tokens alone cannot tell.
    """

    def __init__(self, eos_ids: set[int], budgets: list[int], held: list[int], should_cancel: ShouldCancel | None,
                 work_waiting: WorkWaiting | None, cost_factor: float = PAUSE_COST_FACTOR,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.eos_ids = eos_ids
        self.budgets = budgets
        self.held = held  # tokens each row holds before generating: what prefilling it again costs
        self.should_cancel = should_cancel
        self.work_waiting = work_waiting
        self.cost_factor = cost_factor
        self.clock = clock
        self.reasons: list[str | None] = [None] * len(budgets)
        self.lengths: list[int] = [0] * len(budgets)
        self.step = 0
        self.started = self.last = clock()  # built just before generation starts
        self.prefill_s_per_token = 0.0
        self.idle_s = 0.0  # row-seconds the ended rows have waited, in batch-seconds

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        now = self.clock()
        ended = sum(reason is not None for reason in self.reasons)
        if self.step == 0:  # the first token comes right after the prefill
            self.prefill_s_per_token = (now - self.started) / max(1, sum(self.held))
        else:
            self.idle_s += (now - self.last) * ended / len(self.reasons)
        self.last = now
        self.step += 1
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.reasons[row] is None:
                if token in self.eos_ids:
                    self._stop(row, _END)
                elif self.step >= self.budgets[row]:
                    self._stop(row, _BUDGET)
        running = [row for row, reason in enumerate(self.reasons) if reason is None]
        if running and (self._cancelled() or self._pause_pays(running)):
            for row in running:
                self._stop(row, _PAUSE)
        return torch.tensor([reason is not None for reason in self.reasons], dtype=torch.bool,
                            device=input_ids.device)

    def _cancelled(self) -> bool:
        return self.should_cancel is not None and self.should_cancel()

    def _pause_pays(self, running: list[int]) -> bool:
        if self.work_waiting is None or len(running) == len(self.reasons):
            return False
        again = sum(self.held[row] + self.step for row in running) * self.prefill_s_per_token
        return self.idle_s >= self.cost_factor * again and self.work_waiting()

    def _stop(self, row: int, reason: str) -> None:
        self.reasons[row] = reason
        self.lengths[row] = self.step


def _append_tokens(inputs: Any, suffixes: list[list[int]], pad_id: int) -> Any:
    """The batch with each row's ``suffix`` (tokens it generated before a pause) after its
    prompt, left-padded again: the model continues exactly where it stopped."""
    import torch

    mask = inputs["attention_mask"].bool()
    per_token = [key for key, value in inputs.items()
                 if torch.is_tensor(value) and value.shape == mask.shape]
    width = max(int(m.sum()) + len(s) for m, s in zip(mask, suffixes))
    for key in per_token:
        # The suffix is text: attended to, no image or video token type.
        extra, padding = (1, 0) if key == "attention_mask" else (None, pad_id) if key == "input_ids" else (0, 0)
        rows = []
        for values, keep, suffix in zip(inputs[key], mask, suffixes):
            tail = suffix if extra is None else [extra] * len(suffix)
            row = values[keep].tolist() + tail
            rows.append([padding] * (width - len(row)) + row)
        inputs[key] = torch.tensor(rows, dtype=inputs[key].dtype)
    return inputs


class _ChosenLogprobs:
    """A logits processor that records the log-probability of the token greedy search picks.

    Placed after every other processor, it sees the final scores, whose argmax greedy
    decoding takes: the maximum of their log-softmax is the chosen token's log-probability
    (equal to the model's own when the weights ship no repetition penalty). One
    log-softmax per step: negligible beside the forward pass, and no logits are kept.
    """

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.steps.append(torch.log_softmax(scores.float(), dim=-1).max(dim=-1).values)
        return scores

    def table(self):
        """(batch, steps) log-probabilities on the CPU, or None when nothing was generated."""
        import torch

        return torch.stack(self.steps, dim=1).cpu() if self.steps else None


def checkpoint_pixel_bounds(settings: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) from the checkpoint's own preprocessor settings.

    ``settings`` is a loaded image processor or its config as a dict. Qwen2.5-VL keeps
    the bounds as ``size = {"shortest_edge", "longest_edge"}`` (pixel counts, despite the
    names); older configs as ``min_pixels`` / ``max_pixels``. The paper's
    224x224..1008x1008 is the fall-back only when the checkpoint says nothing.
    """
    from collections.abc import Mapping

    from ..model_input import MAX_PIXELS, MIN_PIXELS

    def get(key: str) -> Any:
        return settings.get(key) if isinstance(settings, Mapping) else getattr(settings, key, None)

    size = get("size") or {}
    low = size.get("shortest_edge") if isinstance(size, Mapping) else None
    high = size.get("longest_edge") if isinstance(size, Mapping) else None
    low = low or get("min_pixels") or MIN_PIXELS
    high = high or get("max_pixels") or MAX_PIXELS
    return int(low), int(high)


def _context_length(model: Any) -> int | None:
    """The language model's context (max positions), or None when the config does not say."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if value else None


def _eos_token_ids(config: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends an answer (the generation config may list several)."""
    eos = config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return {int(i) for i in ids}


def _check_adapter(adapter: str | None) -> Path | None:
    if not adapter:
        return None
    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise UserError(
            f"--adapter {adapter} is not a LoRA adapter folder (no adapter_config.json in it); "
            "give the folder that fine-tuning wrote."
        )
    return folder


def _apply_adapter(network: Any, folder: Path, merge: bool) -> Any:
    """Attach a PEFT LoRA; merged into the weights when not quantized (same answers, faster)."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise UserError("Loading a LoRA adapter needs the peft package: `pip install peft`.") from exc
    try:
        wrapped = PeftModel.from_pretrained(network, folder, is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"The adapter in {folder} does not fit this model: {exc}") from exc
    return wrapped.merge_and_unload() if merge else wrapped
