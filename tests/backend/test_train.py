"""`rscovlm train`: answer-only labels, a real overfitting run, its adapter in `detect`, resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rscovlm.errors import UserError
from rscovlm.formats.detection import parse_detections
from rscovlm.tiling import Window
from rscovlm.training.augment import DIHEDRAL, dihedral_quads
from rscovlm.training.dataset import IGNORE_INDEX, AugmentOptions, DetectionCollator, DetectionDataset, load_records
from rscovlm.training.model_setup import LoraSettings
from rscovlm.training.prepare import PrepareOptions, prepare_dataset
from rscovlm.training.records import TileRecord, write_jsonl
from rscovlm.training.sources import vector_image
from rscovlm.training.train import TrainOptions, train

FAST = AugmentOptions(resize=False, exact_prompt_probability=1.0)


@pytest.fixture(scope="module")
def small_data(synth_scene, tmp_path_factory):
    """Four 252 px tiles with objects (a handful to overfit) and one validation tile."""
    raster, truth = synth_scene
    out = tmp_path_factory.mktemp("train-data")
    prepare_dataset([vector_image(raster, truth)], out, PrepareOptions(tile_size=256, overlap=0, val_fraction=0.0),
                    show_progress=False)
    records = [r for r in load_records(out, "train") if r.objects]
    write_jsonl(records[:4], out / "train.jsonl")
    for record in records[4:5]:
        record.split = "val"
    write_jsonl(records[4:5], out / "val.jsonl")
    return out


def _processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)


def test_labels_cover_only_the_answer(small_data, tiny_model_dir):
    processor = _processor(tiny_model_dir)
    records = load_records(small_data, "train")
    item = DetectionDataset(records, small_data, processor, FAST)[0]
    labelled = item["labels"][item["labels"] != IGNORE_INDEX]
    decoded = processor.tokenizer.decode(labelled, skip_special_tokens=False)
    assert decoded == records[0].messages[2]["content"] + "<|im_end|>"
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert not bool((item["labels"] == image_pad).any())
    batch = DetectionCollator(processor.tokenizer.pad_token_id)([item, DetectionDataset(records, small_data, processor, FAST)[1]])
    assert batch["input_ids"].shape == batch["labels"].shape
    assert int(batch["image_grid_thw"].shape[0]) == 2


def test_training_sees_the_positions_inference_sees(small_data, tiny_model_dir):
    """The answer's first token is predicted from the same state in a training batch as in generation.

    transformers 5 puts image tokens on M-RoPE's 2-D grid only when the batch carries
    ``mm_token_type_ids``; a collator that drops it trains on positions inference never uses.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    processor = _processor(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, local_files_only=True).eval()
    dataset = DetectionDataset(load_records(small_data, "train"), small_data, processor, FAST)
    batch = DetectionCollator(processor.tokenizer.pad_token_id)([dataset[0], dataset[1]])
    first = int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])
    prompt, _ = dataset.conversation(0, random.Random(0))
    image = prompt[1]["content"][0]["image"]
    area = image.width * image.height
    inference = processor.apply_chat_template(   # as TransformersEngine builds a request
        [prompt], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        processor_kwargs={"size": {"shortest_edge": min(area, 56 * 56), "longest_edge": max(area, 1008 * 1008)}},
    )
    assert bool(batch["logits_to_keep"][0, first - 1]) and not bool(batch["logits_to_keep"][0, : first - 1].any())
    with torch.no_grad():   # the batch keeps only labelled positions' logits: row 0's first is the answer's first
        generating = model(**inference).logits[0, -1]
        training = model(**batch).logits[0]
        without_types = model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits[0]
    torch.testing.assert_close(training, generating, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(without_types, generating, atol=1e-2)   # the check can tell the two apart


def test_answer_only_logits_give_the_full_loss(small_data, tiny_model_dir):
    """Projecting only the labelled positions onto the vocabulary changes the cost, not the loss."""
    import torch
    from transformers import AutoModelForImageTextToText

    processor = _processor(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, local_files_only=True).eval()
    dataset = DetectionDataset(load_records(small_data, "train"), small_data, processor, FAST)
    batch = DetectionCollator(processor.tokenizer.pad_token_id)([dataset[0], dataset[1], dataset[2]])
    full = {k: v for k, v in batch.items() if k not in ("logits_to_keep", "shift_labels")}
    with torch.no_grad():
        kept = model(**batch)
        reference = model(**full)
    labelled = int((batch["labels"] != IGNORE_INDEX).sum())
    assert kept.logits.shape[0] == len(batch["shift_labels"]) == labelled
    assert reference.logits.shape[:2] == batch["input_ids"].shape
    torch.testing.assert_close(kept.loss, reference.loss, atol=1e-5, rtol=1e-5)


def test_random_resize_scales_the_boxes_along(small_data, tiny_model_dir):
    records = load_records(small_data, "train")
    dataset = DetectionDataset(records, small_data, _processor(tiny_model_dir),
                               AugmentOptions(min_pixels=300 * 300, max_pixels=700 * 700, exact_prompt_probability=0.0))
    prompt, full = dataset.conversation(0, random.Random(5))
    image = prompt[1]["content"][0]["image"]
    assert image.size != tuple(records[0].size) and image.width % 28 == 0
    assert prompt[1]["content"][1]["text"] != "find the large vehicle, plane, ship, small vehicle, storage tank."
    parsed = parse_detections(full[2]["content"][0]["text"], records[0].classes)
    original = np.array([o.quad for o in records[0].objects])
    scaled = original * np.tile([image.width / records[0].size[0], image.height / records[0].size[1]], 4)
    scaled[:, 0::2] = scaled[:, 0::2].clip(0, image.width)
    scaled[:, 1::2] = scaled[:, 1::2].clip(0, image.height)
    got = np.sort(parsed.quads.reshape(-1, 4, 2).mean(axis=1), axis=0)
    want = np.sort(scaled.reshape(-1, 4, 2).mean(axis=1), axis=0)
    np.testing.assert_allclose(got, want, atol=1.0)


@pytest.mark.parametrize("transpose", DIHEDRAL)
def test_flips_and_quarter_turns_move_points_as_pil_moves_pixels(transpose):
    from PIL import Image

    width, height = 7, 4
    pixels = [(0, 0), (6, 1), (2, 3)]
    for px, py in pixels:
        image = Image.new("L", (width, height))
        image.putpixel((px, py), 255)
        moved = image if transpose is None else image.transpose(Image.Transpose[transpose])
        found = np.argwhere(np.asarray(moved) == 255)[0][::-1]          # (x, y) of the lit pixel
        centre = np.array([[px + 0.5, py + 0.5] * 4])
        mapped, size = dihedral_quads(centre, (width, height), transpose)
        assert size == moved.size
        np.testing.assert_allclose(mapped[0, :2], found + 0.5)


def _box_means(image: np.ndarray, quads: np.ndarray) -> list[float]:
    """The mean colour inside each box's bounds, sorted."""
    means = []
    for quad in quads.reshape(-1, 4, 2):
        (x0, y0), (x1, y1) = quad.min(axis=0).astype(int), np.ceil(quad.max(axis=0)).astype(int)
        means.append(image[y0:y1, x0:x1].mean())
    return sorted(means)


def test_flip_rotate_keeps_every_object_on_its_pixels(small_data, tiny_model_dir):
    """Each drawing's answer still marks the bright object pixels it marked before the turn."""
    records = load_records(small_data, "train")
    processor = _processor(tiny_model_dir)
    dataset = DetectionDataset(records, small_data, processor,
                               AugmentOptions(resize=False, exact_prompt_probability=1.0, flip_rotate=True))
    original_prompt, original = DetectionDataset(records, small_data, processor, FAST).conversation(0, random.Random(0))
    base = np.asarray(original_prompt[1]["content"][0]["image"], dtype=np.float64)
    base_parsed = parse_detections(original[2]["content"][0]["text"], records[0].classes)
    seen = set()
    for seed in range(12):
        prompt, full = dataset.conversation(0, random.Random(seed))
        image = np.asarray(prompt[1]["content"][0]["image"], dtype=np.float64)
        parsed = parse_detections(full[2]["content"][0]["text"], records[0].classes)
        assert sorted(parsed.labels) == sorted(base_parsed.labels)
        seen.add(image.tobytes())
        # the mean colour inside each box is the same as in the untouched tile, object by object
        np.testing.assert_allclose(_box_means(image, parsed.quads), _box_means(base, base_parsed.quads), rtol=0.02)
    assert len(seen) >= 5        # several of the eight symmetries were drawn


def test_hbb_form_is_drawn_in_its_own_form(synth_scene, tiny_model_dir, tmp_path):
    """`prepare --form hbb` records train with the hbb system prompt and x1,y1,x2,y2 answers, resized or turned."""
    from rscovlm.formats.prompts import SYSTEM_PROMPT_HBB

    raster, truth = synth_scene
    prepare_dataset([vector_image(raster, truth)], tmp_path, PrepareOptions(tile_size=256, overlap=0, form="hbb"),
                    show_progress=False)
    records = [r for r in load_records(tmp_path, "train") if r.objects]
    assert records and {r.form for r in records} == {"hbb"}
    assert records[0].messages[0]["content"] == SYSTEM_PROMPT_HBB
    dataset = DetectionDataset(records, tmp_path, _processor(tiny_model_dir),
                               AugmentOptions(min_pixels=300 * 300, max_pixels=700 * 700, flip_rotate=True))
    for seed in range(4):
        prompt, full = dataset.conversation(0, random.Random(seed))
        image = prompt[1]["content"][0]["image"]
        answer = full[2]["content"][0]["text"]
        assert prompt[0]["content"][0]["text"] == SYSTEM_PROMPT_HBB
        assert all(len(line.split(" ")[0].split(",")) == 4 for line in answer.splitlines())
        boxes = parse_detections(answer, records[0].classes, form="hbb").quads.reshape(-1, 4, 2)
        assert boxes.shape[0] == len(records[0].objects)
        assert (boxes[..., 0] <= image.width).all() and (boxes[..., 1] <= image.height).all()
        # every box is axis-aligned: two distinct x values and two distinct y values
        assert all(len(set(b[:, 0])) == 2 and len(set(b[:, 1])) == 2 for b in boxes)
    # untouched, each box is the rounded bounds of its object's quad (clipped to the tile)
    _, full = DetectionDataset(records, tmp_path, dataset.processor, FAST).conversation(0, random.Random(0))
    boxes = parse_detections(full[2]["content"][0]["text"], records[0].classes, form="hbb").quads.reshape(-1, 4, 2)
    quads = np.array([o.quad for o in records[0].objects]).reshape(-1, 4, 2).clip(0, records[0].size[0])
    got = sorted(map(tuple, np.c_[boxes.min(axis=1), boxes.max(axis=1)].tolist()))
    want = sorted(map(tuple, np.rint(np.c_[quads.min(axis=1), quads.max(axis=1)]).tolist()))
    np.testing.assert_allclose(got, want, atol=1.0)


def test_records_without_a_form_are_quad(small_data):
    line = json.loads((small_data / "train.jsonl").read_text().splitlines()[0])
    line.pop("form")
    assert TileRecord.from_dict(line).form == "quad"


def test_lora_overfits_then_its_adapter_detects(small_data, tiny_model_dir, synth_scene, tmp_path):
    from rscovlm.engines.transformers_engine import TransformersEngine
    from rscovlm.pipelines.detect import DetectOptions, detect

    out = tmp_path / "adapter"
    result = train(TrainOptions(
        str(small_data), str(tiny_model_dir), str(out), max_steps=12, learning_rate=5e-3, batch_size=4,
        logging_steps=1, save_steps=100, evaluate=False, device="cpu", warmup_ratio=0.0,
        lora=LoraSettings(r=64, alpha=64, dropout=0.0), augment=FAST, show_progress=False,
    ))
    logged = [json.loads(line)["loss"] for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert len(logged) == 12 and logged == result.losses
    assert logged[-1] <= logged[0] / 2, logged
    assert (out / "adapter_config.json").is_file() and (out / "loss_curve.png").stat().st_size > 1000
    assert (out / "loss_log.csv").read_text().startswith("step,epoch,loss")
    assert result.kind == "adapter" and "--adapter" in result.load_hint

    engine = TransformersEngine.from_pretrained(str(tiny_model_dir), adapter=str(out), device="cpu")
    raster, _truth = synth_scene
    detected = detect(raster, engine, DetectOptions(
        classes=("plane", "ship", "small vehicle", "large vehicle", "storage tank"),
        window=Window(0, 0, 256, 256), max_new_tokens=24, batch_size=1,
    ))
    assert detected.tiles_total == 1
    assert engine.describe()["adapter"] == str(out)


def test_resume_continues_from_the_checkpoint(small_data, tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "resumable"
    base = dict(data_dir=str(small_data), model=str(tiny_model_dir), output=str(out), batch_size=2,
                learning_rate=1e-3, logging_steps=1, save_steps=2, device="cpu", augment=FAST,
                show_progress=False, evaluate=True)
    first = train(TrainOptions(max_steps=2, **base))
    assert first.global_step == 2 and (out / "checkpoints" / "checkpoint-2").is_dir()
    # a checkpoint carries the processor, so it loads in `detect --model` as it is
    assert (out / "checkpoints" / "checkpoint-2" / "processor_config.json").is_file()
    with pytest.raises(UserError, match="--resume"):
        train(TrainOptions(max_steps=4, **base))
    with caplog.at_level("WARNING", logger="rscovlm.training.train"):
        second = train(TrainOptions(max_steps=4, resume=True, **base))
    assert second.global_step == 4
    # a longer --max-steps than the checkpoint was planned for rebuilds the LR schedule: say so
    assert "planned for 2 steps, with --max-steps 4" in caplog.text
    rows = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["loss"] is not None] == [1, 2, 3, 4]
    assert any(r["eval_loss"] is not None for r in rows)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_goes_on_from_the_checkpoint_weights(small_data, tiny_model_dir, tmp_path, method):
    """A resumed run starts from the checkpoint's weights, not the base model's.

    Resuming a finished run takes no step, so what it saves must equal the checkpoint.
    (transformers 5's Trainer reloads full Qwen2.5-VL checkpoints under the wrong key names
    and, unfixed, went on from the base weights.)
    """
    import torch
    from safetensors.torch import load_file

    out = tmp_path / method
    options = dict(data_dir=str(small_data), model=str(tiny_model_dir), output=str(out), method=method,
                   max_steps=2, save_steps=2, learning_rate=1e-2, batch_size=2, device="cpu", augment=FAST,
                   evaluate=False, show_progress=False)
    train(TrainOptions(**options))
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    checkpoint = load_file(out / "checkpoints" / "checkpoint-2" / weights)
    (out / weights).unlink()
    train(TrainOptions(resume=True, **options))
    resumed = load_file(out / weights)
    assert resumed.keys() == checkpoint.keys()
    for name, tensor in checkpoint.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)
    if method == "full":   # and the checkpoint differs from the base, so the check can fail
        base = load_file(tiny_model_dir / "model.safetensors")
        assert any(not torch.equal(base[name], tensor) for name, tensor in checkpoint.items())


def test_full_fine_tuning_writes_a_loadable_model(small_data, tiny_model_dir, tmp_path):
    from rscovlm.engines.transformers_engine import TransformersEngine

    out = tmp_path / "full"
    result = train(TrainOptions(str(small_data), str(tiny_model_dir), str(out), method="full", max_steps=1,
                                learning_rate=1e-4, device="cpu", augment=FAST, evaluate=False, show_progress=False))
    assert result.kind == "model" and (out / "config.json").is_file()
    engine = TransformersEngine.from_pretrained(str(out), device="cpu")
    assert engine.describe()["model"] == str(out)


def test_qlora_on_cpu_says_it_needs_a_gpu(small_data, tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        train(TrainOptions(str(small_data), str(tiny_model_dir), str(tmp_path / "q"), method="qlora", device="cpu"))


def test_resume_without_checkpoint_is_a_sentence(small_data, tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="holds no checkpoint"):
        train(TrainOptions(str(small_data), str(tiny_model_dir), str(tmp_path / "none"), resume=True, device="cpu"))
