"""Build a training set: tiles, their conversations in the model's exact format, a split.

Flow per labelled image: window grid (the detect pipeline's own tiling) -> objects
assigned by the 0.7 area rule -> each tile read, resized to the model input exactly as
``detect`` resizes it, saved as PNG -> the answer rendered in pixels of that PNG. Tiles
that are all nodata are skipped (``detect`` never shows them to the model); tiles with
no object are kept and answer ``There are none.``, because dropping them teaches the
model to see objects everywhere.

Output folder: ``images/*.png``, ``train.jsonl``, ``val.jsonl``, ``summary.json``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rscovlm.errors import UserError
from rscovlm.formats.prompts import detection_prompt, normalize_class_name
from rscovlm.model_input import image_to_input, model_input_size
from rscovlm.tiling import tile_windows

from .assign import MIN_AREA_RATIO, assign_to_tiles
from .records import TileObject, TileRecord, build_messages, write_jsonl
from .sources import LabelledImage, restrict_classes
from .split import split_tiles
from .targets import render_answer

log = logging.getLogger(__name__)

__all__ = ["PrepareOptions", "PrepareSummary", "prepare_dataset", "format_summary"]

SPLITS = ("train", "val")

@dataclass(frozen=True)
class PrepareOptions:
    tile_size: int = 512
    overlap: int = 100
    val_fraction: float = 0.1
    seed: int = 0
    classes: tuple[str, ...] | None = None   # None: every class found in the labels
    min_area_ratio: float = MIN_AREA_RATIO
    form: str = "quad"

@dataclass
class PrepareSummary:
    out_dir: str
    classes: list[str]
    images: int = 0
    tiles: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    empty_tiles: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    objects: dict[str, dict[str, int]] = field(default_factory=dict)     # class -> split -> count
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)   # class -> split -> count
    tiles_skipped_nodata: int = 0
    objects_in_no_tile: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

def _tile_image(source, window, input_hw):
    """Read a tile and resize it to the model input the way ``detect`` does (bicubic)."""
    from PIL import Image

    rgb, valid = source.read_rgb(window)
    if not valid.any():
        return None
    image = Image.fromarray(rgb)
    in_h, in_w = input_hw
    if image.size != (in_w, in_h):
        image = image.resize((in_w, in_h), Image.Resampling.BICUBIC)
    return image

def _prompt_classes(images: Sequence[LabelledImage], options: PrepareOptions) -> list[str]:
    if options.classes:
        return sorted({normalize_class_name(c) for c in options.classes} - {""})
    found = sorted({label for image in images for label in image.labels})
    if not found:
        raise UserError(
            "The labels hold no objects, so there is no class to train on; check the labels, or name "
            "the classes with --classes to train a model that answers 'There are none.'."
        )
    return found

@dataclass(frozen=True)
class _ImagePlan:
    """Everything one process needs to cut one image."""

    image: LabelledImage
    windows: list
    out: Path
    classes: list[str]
    system: str
    user: str
    options: PrepareOptions


@dataclass
class _ImageCut:
    records: list[TileRecord]
    nodata_tiles: int
    unassigned: int


def _cut_image(plan: _ImagePlan) -> _ImageCut:
    """Assign one image's objects to its tiles; write each tile's PNG; return its records (split unset)."""
    from rscovlm.raster import RasterSource

    image, options = plan.image, plan.options
    assignments, unassigned = assign_to_tiles(image.quads, plan.windows, options.min_area_ratio)
    records: list[TileRecord] = []
    nodata = 0
    with RasterSource.open(image.image_path) as source:
        for assignment in assignments:
            window = assignment.window
            tile = _tile_image(source, window, model_input_size(window.height, window.width))
            if tile is None:
                nodata += 1
                continue
            tile_id = f"{image.name}_{window.col_off}_{window.row_off}"
            rel_path = f"images/{tile_id}.png"
            tile.save(plan.out / rel_path)
            size_wh = (tile.width, tile.height)
            idx = assignment.indexes
            quads = image_to_input(image.quads[idx], size_wh, window)
            labels = [image.labels[k] for k in idx]
            objects = [
                TileObject(quad=[round(float(v), 3) for v in quad], label=label,
                           truncated=bool(trunc), difficult=bool(image.difficult[k]))
                for quad, label, trunc, k in zip(quads, labels, assignment.truncated, idx)
            ]
            answer = render_answer(quads, labels, size_wh, options.form)
            records.append(TileRecord(
                id=tile_id, image=rel_path, source=str(image.image_path),
                window=list(window.as_tuple()), size=list(size_wh), classes=plan.classes,
                objects=objects, messages=build_messages(plan.system, plan.user, rel_path, answer),
                form=options.form,
            ))
    return _ImageCut(records, nodata, len(unassigned))


def _map(function, items: list, workers: int):
    """``map`` in order, in ``workers`` processes when there is more than one."""
    if workers <= 1 or len(items) <= 1:
        yield from map(function, items)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        yield from pool.map(function, items)


def prepare_dataset(
    images: Sequence[LabelledImage],
    out_dir: str | Path,
    options: PrepareOptions = PrepareOptions(),
    show_progress: bool = True,
    workers: int = 1,
) -> PrepareSummary:
    """Cut ``images`` into model-ready tiles with conversations; write them under ``out_dir``.

    ``workers`` > 1 cuts that many images at once, in separate processes (one image is
    always cut by one process); the output is the same whatever the number.
    """
    from tqdm.auto import tqdm

    from rscovlm.raster import RasterSource

    out = Path(out_dir).expanduser()
    (out / "images").mkdir(parents=True, exist_ok=True)
    classes = _prompt_classes(images, options)
    system, user = detection_prompt(classes, options.form)
    images = [restrict_classes(image, classes) for image in images]
    summary = PrepareSummary(out_dir=str(out), classes=classes, images=len(images))
    skipped: Counter = Counter()
    records: list[TileRecord] = []

    plans = []
    for image in images:
        skipped.update(image.skipped)
        summary.notes.extend(image.notes)
        with RasterSource.open(image.image_path) as source:
            windows = tile_windows(source.width, source.height, options.tile_size, options.overlap)
        plans.append(_ImagePlan(image, windows, out, classes, system, user, options))
    total = sum(len(plan.windows) for plan in plans)

    with tqdm(total=total, unit="tile", desc="prepare", disable=not show_progress) as bar:
        for plan, cut in zip(plans, _map(_cut_image, plans, workers)):
            records.extend(cut.records)
            summary.tiles_skipped_nodata += cut.nodata_tiles
            summary.objects_in_no_tile += cut.unassigned
            bar.update(len(plan.windows))

    if not records:
        raise UserError("No tile with valid pixels was found in the input imagery; check the images and their nodata.")
    splits = split_tiles([r.id for r in records], options.val_fraction, options.seed)
    for record in records:
        record.split = splits[record.id]
        summary.tiles[record.split] += 1
        if not record.objects:
            summary.empty_tiles[record.split] += 1
        for obj in record.objects:
            per_class = summary.objects.setdefault(obj.label, dict.fromkeys(SPLITS, 0))
            per_class[record.split] += 1
            if obj.truncated:
                summary.truncated.setdefault(obj.label, dict.fromkeys(SPLITS, 0))[record.split] += 1
    for name in SPLITS:
        write_jsonl([r for r in records if r.split == name], out / f"{name}.jsonl")
    summary.skipped = dict(skipped)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary

def format_summary(summary: PrepareSummary) -> str:
    """A terminal table: objects (truncated) per class and split, then tile counts."""
    rows = [("class", "train", "val", "truncated")]
    for name in sorted(set(summary.classes) | set(summary.objects)):
        counts = summary.objects.get(name, {})
        trunc = summary.truncated.get(name, {})
        rows.append((name, str(counts.get("train", 0)), str(counts.get("val", 0)), str(sum(trunc.values()))))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"tiles: {summary.tiles['train']} train ({summary.empty_tiles['train']} empty), "
        f"{summary.tiles['val']} val ({summary.empty_tiles['val']} empty); "
        f"{summary.tiles_skipped_nodata} all-nodata tiles skipped"
    )
    if summary.objects_in_no_tile:
        lines.append(
            f"{summary.objects_in_no_tile} objects are in no tile (outside the image, or split so that "
            "no tile holds 70 % of them)"
        )
    for reason, count in sorted(summary.skipped.items()):
        lines.append(f"skipped: {count} {reason}")
    lines.extend(summary.notes)
    return "\n".join(lines)
