"""Reading ground truth and predictions into the evaluation data model (the I/O edge).

Sources understood:

* vector files (GeoPackage, Shapefile, GeoJSON, FlatGeobuf): one row per object with a
  class field, an optional difficult flag (truth) or score (predictions), and either one
  image per file or an image-id field;
* DOTA Task-1 text in image pixels: a folder (or one file) of per-image
  ``x1 y1 ... x4 y4 class [difficult]`` lines, with the optional ``imagesource:`` and
  ``gsd:`` header lines; or DOTA/mmrotate submission files ``Task1_{class}.txt`` with
  ``image score x1 ... y4`` lines;
* a per-tile responses JSONL written by ``rscovlm detect`` (predictions only): parsed,
  mapped to image pixels and merged exactly as the detection pipeline does.

Class names are normalised the way the model writes them ("small-vehicle" and
"small_vehicle" become "small vehicle") so files from different tools agree.
``align_predictions`` then makes both sides comparable: same coordinate space, the
truth's CRS, matching image ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from ..errors import UserError
from ..formats.prompts import normalize_class_name
from ..outputs import TASK1_PREFIX
from .objects import EvalObject, make_object

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
PIXEL, MAP = "pixel", "map"


@dataclass
class LoadedObjects:
    """Objects per image, plus where their coordinates live and what was done to read them."""

    objects: dict[str, list[EvalObject]]
    space: str  # PIXEL (image pixels) or MAP (a map CRS, possibly unknown)
    crs: object | None  # pyproj.CRS when known
    description: str
    single_image: bool  # the source is one image whose id is only the file name
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.objects.values())


# --------------------------------------------------------------------------- truth


def load_truth(
    path: str | Path,
    class_field: str = "class",
    difficult_field: str = "difficult",
    image_field: str | None = None,
) -> LoadedObjects:
    """Ground truth from a vector file or a DOTA labelTxt folder/file."""
    path = _existing(path, "ground truth")
    kind = _source_kind(path, "ground truth")
    if kind == "vector":
        return _load_vector(path, class_field, image_field, difficult_field=difficult_field)
    if kind in ("dota_folder", "dota_file"):
        return _load_dota_labels(path, keep_difficult=True)
    raise UserError(
        f"{path} holds {_KIND_WORDS[kind]}, which cannot be ground truth: give a vector file "
        "(GeoPackage, Shapefile, GeoJSON) or a DOTA labelTxt folder."
    )


# --------------------------------------------------------------------------- predictions


def load_predictions(
    path: str | Path,
    class_field: str = "class",
    score_field: str | None = None,
    image_field: str | None = None,
    classes: Sequence[str] | None = None,
    raster: str | Path | None = None,
    space: str | None = None,
) -> LoadedObjects:
    """Predictions from a vector file, DOTA text or a responses JSONL.

    ``score_field`` None means "use a field named score if there is one". ``classes``
    is the list the model was asked for (needed to parse a responses file). ``space`` is
    the truth's coordinate space: a responses file is placed on the map through ``raster``
    only when the truth is a map.
    """
    path = _existing(path, "predictions")
    kind = _source_kind(path, "predictions")
    if kind == "vector":
        return _load_vector(path, class_field, image_field, score_field=score_field)
    if kind in ("dota_folder", "dota_file"):
        return _load_dota_labels(path, keep_difficult=False)
    if kind in ("task1_folder", "task1_file"):
        return _load_task1(path)
    return _load_responses(path, classes, raster, space or PIXEL)


# --------------------------------------------------------------------------- alignment


def align_predictions(predictions: LoadedObjects, truth: LoadedObjects) -> LoadedObjects:
    """Put predictions in the truth's space, CRS and image ids, or say why that is impossible."""
    if predictions.space != truth.space:
        where = {PIXEL: "image pixels", MAP: "map coordinates"}
        raise UserError(
            f"The predictions ({predictions.description}) are in {where[predictions.space]} but "
            f"the ground truth ({truth.description}) is in {where[truth.space]}; compare DOTA "
            "text with DOTA text, or vector files with vector files (give --raster to place a "
            "responses file on the map)."
        )
    notes = list(predictions.notes)
    objects = predictions.objects
    if truth.space == MAP:
        objects, crs_note = _reproject(objects, predictions.crs, truth.crs)
        if crs_note:
            notes.append(crs_note)
    objects = _match_image_ids(objects, predictions, truth, notes)
    return LoadedObjects(
        objects, truth.space, truth.crs, predictions.description, predictions.single_image, notes
    )


def _reproject(objects, source_crs, target_crs) -> tuple[dict[str, list[EvalObject]], str]:
    if source_crs is None or target_crs is None:
        if source_crs is None and target_crs is None:
            return objects, "Neither file names a CRS; their coordinates were compared as they are."
        missing = "predictions" if source_crs is None else "ground truth"
        return objects, (
            f"The {missing} file names no CRS; both were assumed to share "
            f"{(target_crs or source_crs).to_string()}."
        )
    if source_crs == target_crs:
        return objects, ""
    from pyproj import Transformer

    transformer = Transformer.from_crs(source_crs, target_crs, always_xy=True)
    out: dict[str, list[EvalObject]] = {}
    for image_id, objs in objects.items():
        if not objs:
            out[image_id] = []
            continue
        quads = np.array([o.quad for o in objs], dtype=np.float64)
        xs, ys = transformer.transform(quads[:, 0::2], quads[:, 1::2])
        moved = np.empty_like(quads)
        moved[:, 0::2], moved[:, 1::2] = xs, ys
        if not np.isfinite(moved).all():
            raise UserError(
                f"Some predictions cannot be reprojected from {source_crs.to_string()} to "
                f"{target_crs.to_string()} (they fall outside that CRS's area); check both files' CRS."
            )
        out[image_id] = [make_object(q, o.cls, o.difficult, o.score) for q, o in zip(moved, objs)]
    return out, f"Predictions reprojected from {source_crs.to_string()} to {target_crs.to_string()}."


def _match_image_ids(objects, predictions: LoadedObjects, truth: LoadedObjects, notes: list[str]):
    truth_ids = set(truth.objects)
    if predictions.single_image and len(truth_ids) == 1:
        (only,) = truth_ids
        return {only: [o for objs in objects.values() for o in objs]}
    if truth.single_image and len(objects) > 1:
        raise UserError(
            f"The predictions cover {len(objects)} images but the ground truth "
            f"({truth.description}) is a single image; give --image-field naming the field "
            "that says which image each object belongs to."
        )
    pred_ids = set(objects)
    unknown = sorted(pred_ids - truth_ids)
    if pred_ids and truth_ids and not (pred_ids & truth_ids):
        raise UserError(
            "No prediction image matches a ground-truth image (predictions: "
            f"{_examples(pred_ids)}; truth: {_examples(truth_ids)}); name the images the same way "
            "on both sides (DOTA files are matched by file name without extension)."
        )
    if unknown:
        n = sum(len(objects[i]) for i in unknown)
        notes.append(
            f"{len(unknown)} prediction image(s) are not in the ground truth ({_examples(unknown)}); "
            f"their {n} detection(s) count as false positives."
        )
    return objects


def _examples(ids) -> str:
    ids = sorted(ids)
    shown = ", ".join(repr(i) for i in ids[:3])
    return shown + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


# --------------------------------------------------------------------------- formats

_KIND_WORDS = {
    "vector": "a vector file",
    "dota_folder": "DOTA label text",
    "dota_file": "DOTA label text",
    "task1_folder": "DOTA Task1 submission files",
    "task1_file": "a DOTA Task1 submission file",
    "responses": "model responses (JSONL)",
}


def _existing(path: str | Path, role: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"The {role} path {path} does not exist; check the path.")
    return path


def _source_kind(path: Path, role: str) -> str:
    if path.is_dir():
        txts = sorted(path.glob("*.txt"))
        if any(p.name.startswith(TASK1_PREFIX) for p in txts):
            return "task1_folder"
        if txts:
            return "dota_folder"
        raise UserError(
            f"The {role} folder {path} holds no .txt files; a DOTA folder has one "
            "'<image>.txt' per image or 'Task1_<class>.txt' files."
        )
    suffix = path.suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        return "vector"
    if suffix == ".jsonl":
        return "responses"
    if suffix == ".txt":
        return "task1_file" if path.name.startswith(TASK1_PREFIX) else "dota_file"
    raise UserError(
        f"Cannot tell the format of the {role} file {path}: use a GeoPackage (.gpkg), "
        "Shapefile (.shp), GeoJSON (.geojson), DOTA text (.txt or a folder of them) or a "
        "responses file (.jsonl)."
    )


def _load_vector(
    path: Path,
    class_field: str,
    image_field: str | None,
    difficult_field: str | None = None,
    score_field: str | None = None,
) -> LoadedObjects:
    import geopandas as gpd
    import pyogrio

    notes: list[str] = []
    try:
        layers = pyogrio.list_layers(path)
        gdf = gpd.read_file(path, layer=layers[0][0]) if len(layers) else gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - GDAL's many failure types become one sentence
        raise UserError(f"Cannot read the vector file {path}: {exc}. Check that it opens in QGIS.") from exc
    if len(layers) > 1:
        notes.append(f"{path.name} has {len(layers)} layers; the first, {layers[0][0]!r}, was read.")
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    if class_field not in gdf.columns:
        raise UserError(
            f"{path} has no field {class_field!r} for the class; its fields are "
            f"{', '.join(map(repr, columns)) or 'none'}. Name the right one with --class-field."
        )
    if image_field and image_field not in gdf.columns:
        raise UserError(
            f"{path} has no image field {image_field!r}; its fields are "
            f"{', '.join(map(repr, columns)) or 'none'}."
        )
    if score_field and score_field not in gdf.columns:
        raise UserError(f"{path} has no score field {score_field!r}; leave --score-field out if there are no scores.")
    scores_column = score_field or ("score" if "score" in gdf.columns else None)

    quads, keep = _geometries_to_quads(gdf.geometry.values, path, notes)
    gdf = gdf.iloc[np.flatnonzero(keep)]
    classes = [normalize_class_name(c) for c in gdf[class_field]]
    if any(c in ("", "none", "nan") for c in classes):
        raise UserError(f"Some objects in {path} have no class in field {class_field!r}; fill it in or remove them.")
    difficult = (
        _flags(gdf[difficult_field]) if difficult_field and difficult_field in gdf.columns
        else np.zeros(len(gdf), dtype=bool)
    )
    scores = (
        np.asarray(gdf[scores_column], dtype=np.float64) if scores_column else np.full(len(gdf), np.nan)
    )
    images = [str(v) for v in gdf[image_field]] if image_field else [path.stem] * len(gdf)
    objects: dict[str, list[EvalObject]] = {} if image_field else {path.stem: []}
    for quad, cls, diff, score, image in zip(quads, classes, difficult, scores, images):
        objects.setdefault(image, []).append(
            make_object(quad, cls, bool(diff), None if math.isnan(score) else float(score))
        )
    from pyproj import CRS

    crs = CRS.from_user_input(gdf.crs) if gdf.crs is not None else None
    return LoadedObjects(
        objects, MAP, crs, f"{path.name} ({len(gdf)} objects)", image_field is None, notes
    )


def _geometries_to_quads(geoms: np.ndarray, path: Path, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Quads from polygons: 4-vertex rings as they are, anything else as its minimum-area rectangle."""
    geoms = np.asarray(geoms, dtype=object)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    type_ids = shapely.get_type_id(geoms)
    polygonal = np.isin(type_ids, (3, 6))  # Polygon, MultiPolygon
    wrong = present & ~polygonal
    if wrong.any():
        kinds = sorted({shapely.get_type_id(g) for g in geoms[wrong]})
        names = {0: "points", 1: "lines", 2: "rings", 4: "points", 5: "lines", 7: "collections"}
        raise UserError(
            f"{path} holds {', '.join(names.get(k, 'non-polygon') for k in kinds)}; evaluation "
            "needs polygons (oriented boxes)."
        )
    quads = np.zeros((len(geoms), 8))
    keep = present.copy()
    simple = present & (type_ids == 3)
    simple[simple] = (shapely.get_num_interior_rings(geoms[simple]) == 0) & (
        shapely.get_num_coordinates(geoms[simple]) == 5
    )
    if simple.any():
        rings = shapely.get_coordinates(shapely.get_exterior_ring(geoms[simple])).reshape(-1, 5, 2)
        quads[simple] = rings[:, :4, :].reshape(-1, 8)
    other = present & ~simple
    if other.any():
        rects = shapely.minimum_rotated_rectangle(geoms[other])
        is_polygon = shapely.get_type_id(rects) == 3
        idx = np.flatnonzero(other)
        good = idx[is_polygon]
        if good.size:
            rings = shapely.get_coordinates(shapely.get_exterior_ring(rects[is_polygon])).reshape(-1, 5, 2)
            quads[good] = rings[:, :4, :].reshape(-1, 8)
        keep[idx[~is_polygon]] = False
        notes.append(
            f"{int(other.sum())} object(s) in {path.name} were not 4-vertex polygons and were "
            "evaluated as their minimum-area rectangles"
            + (f"; {int((~is_polygon).sum())} without area were left out." if (~is_polygon).any() else ".")
        )
    if (~present).any():
        notes.append(f"{int((~present).sum())} object(s) in {path.name} have no geometry and were left out.")
    return quads[keep], keep


def _flags(values) -> np.ndarray:
    """Difficult flags from bool, number or text fields ("1", "true", "yes")."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(False)
        elif isinstance(v, str):
            out.append(v.strip().lower() in ("1", "true", "yes", "y", "t"))
        else:
            out.append(bool(v))
    return np.array(out, dtype=bool)


def _load_dota_labels(path: Path, keep_difficult: bool) -> LoadedObjects:
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    objects: dict[str, list[EvalObject]] = {}
    for file in files:
        objects[file.stem] = _parse_dota_label_file(file, keep_difficult)
    where = f"{path.name}/ ({len(files)} files)" if path.is_dir() else path.name
    return LoadedObjects(objects, PIXEL, None, f"DOTA labels {where}", not path.is_dir())


def _parse_dota_label_file(file: Path, keep_difficult: bool) -> list[EvalObject]:
    objects = []
    for number, line in enumerate(_read_lines(file), start=1):
        tokens = line.split()
        if not tokens or _is_header(tokens):
            continue
        if len(tokens) < 9:
            raise UserError(
                f"Line {number} of {file} is not a DOTA object line ('x1 y1 ... x4 y4 class "
                f"[difficult]'): {line.strip()!r}."
            )
        quad = _floats(tokens[:8], file, number)
        difficult = keep_difficult and len(tokens) > 9 and tokens[9].strip() not in ("0", "")
        objects.append(make_object(quad, normalize_class_name(tokens[8]), difficult))
    return objects


def _is_header(tokens: list[str]) -> bool:
    first = tokens[0].lower()
    return first.startswith("imagesource:") or first.startswith("gsd:") or (
        len(tokens) < 9 and ":" in tokens[0]
    )


def _load_task1(path: Path) -> LoadedObjects:
    files = (
        sorted(p for p in path.glob("*.txt") if p.name.startswith(TASK1_PREFIX))
        if path.is_dir()
        else [path]
    )
    objects: dict[str, list[EvalObject]] = {}
    for file in files:
        cls = normalize_class_name(file.stem[len(TASK1_PREFIX):])
        for number, line in enumerate(_read_lines(file), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 10:
                raise UserError(
                    f"Line {number} of {file} is not a Task1 line ('image score x1 y1 ... x4 y4'): "
                    f"{line.strip()!r}."
                )
            numbers = _floats(tokens[1:], file, number)
            objects.setdefault(tokens[0], []).append(make_object(numbers[1:], cls, False, numbers[0]))
    return LoadedObjects(objects, PIXEL, None, f"Task1 files in {path.name} ({len(files)} classes)", False)


def _read_lines(file: Path) -> list[str]:
    try:
        return file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"Cannot read {file}: {exc.strerror}.") from exc


def _floats(tokens: list[str], file: Path, number: int) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise UserError(f"Line {number} of {file} has a value that is not a number: {exc}.") from exc
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"Line {number} of {file} has a coordinate or score that is not finite.")
    return values


def _load_responses(
    path: Path, classes: Sequence[str] | None, raster: str | Path | None, space: str
) -> LoadedObjects:
    """Replay a responses file: parse, map to image pixels, merge (as ``rscovlm detect`` does)."""
    from ..formats.prompts import DOTA_CLASSES

    class_list = tuple(classes) if classes else DOTA_CLASSES
    if space == MAP:
        if raster is None:
            raise UserError(
                f"{path.name} holds detections in image pixels but the ground truth is on a map; "
                "give --raster with the image the responses came from so they can be georeferenced."
            )
        from ..pipelines.detect import DetectOptions, detect_from_responses

        result = detect_from_responses(raster, path, DetectOptions(classes=class_list))
        gdf = result.gdf
        notes = [f"{len(gdf)} detections replayed from {path.name} on {Path(raster).name}."]
        quads, keep = _geometries_to_quads(gdf.geometry.values, path, notes)
        labels = [normalize_class_name(c) for c in np.asarray(gdf["class"])[keep]]
        scores = _scores_or_none(np.asarray(gdf["score"], dtype=np.float64)[keep])
        objects = {path.stem: [make_object(q, c, score=s) for q, c, s in zip(quads, labels, scores)]}
        return LoadedObjects(objects, MAP, result.crs, f"{path.name} replayed", True, notes)
    quads, labels, scores, notes = _replay_in_pixels(path, class_list)
    objects = {path.stem: [make_object(q, c, score=s) for q, c, s in zip(quads, labels, scores)]}
    return LoadedObjects(objects, PIXEL, None, f"{path.name} replayed", True, notes)


def _scores_or_none(scores: np.ndarray) -> list[float | None]:
    """Scores for make_object: None where an object has none (NaN)."""
    return [None if math.isnan(v) else float(v) for v in np.asarray(scores, dtype=np.float64).tolist()]


def _replay_in_pixels(
    path: Path, classes: tuple[str, ...]
) -> tuple[np.ndarray, list[str], list[float | None], list[str]]:
    """The pipeline's own replay (parse, map, merge, score) on the image the tiles span."""
    from ..pipelines.detect import DetectOptions, merge_records
    from ..responses import read_responses

    records = read_responses(path)
    if not records:
        return np.zeros((0, 8)), [], [], [f"{path.name} holds no tile responses."]
    image_wh = (
        max(r.col_off + r.width for r in records),
        max(r.row_off + r.height for r in records),
    )
    merged = merge_records(records, image_wh, DetectOptions(classes=classes))
    notes = [
        f"{len(records)} tile responses read from {path.name}; {sum(merged.dropped.values())} unusable line(s) "
        "dropped.",
        f"{merged.kept} tile detections merged into {len(merged.quads)}.",
    ]
    return merged.quads, [str(c) for c in merged.labels], _scores_or_none(merged.scores), notes
