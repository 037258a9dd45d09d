"""Labelled images for training: a DOTA folder, or a raster with a vector layer in any CRS.

Both become the same thing, a :class:`LabelledImage`: an image path the project's raster
reader opens, and its objects as quads in that image's pixels. For a vector layer the
polygons are reprojected to the raster's CRS and taken through the inverse of the
raster's full affine geotransform (rotation and shear included), so the pixels are right
whatever CRS the layer was digitised in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.errors import UserError
from rscovlm.formats.prompts import normalize_class_name

__all__ = [
    "IMAGE_SUFFIXES",
    "LabelledImage",
    "parse_dota_labels",
    "dota_images",
    "map_polygons_to_pixels",
    "vector_image",
    "restrict_classes",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class LabelledImage:
    """One image and its objects in image pixels (x right, y down)."""

    image_path: Path
    name: str                              # stem used in tile ids
    quads: np.ndarray                      # (N, 8) float64
    labels: list[str]                      # normalised class names
    difficult: np.ndarray                  # (N,) bool
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    notes: list[str] = field(default_factory=list)     # what was assumed or done


def parse_dota_labels(text: str) -> tuple[np.ndarray, list[str], np.ndarray, Counter]:
    """DOTA labelTxt lines ``x1 y1 ... x4 y4 class [difficult]``; headers and bad lines skipped."""
    quads, labels, difficult = [], [], []
    skipped: Counter = Counter()
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or tokens[0].lower().startswith(("imagesource", "gsd")):
            continue
        if len(tokens) < 9:
            skipped["malformed label line"] += 1
            continue
        try:
            coords = [float(v) for v in tokens[:8]]
        except ValueError:
            skipped["malformed label line"] += 1
            continue
        if not np.all(np.isfinite(coords)):
            skipped["malformed label line"] += 1
            continue
        quads.append(coords)
        labels.append(normalize_class_name(tokens[8]))
        difficult.append(len(tokens) > 9 and tokens[9] not in ("0", "0.0"))
    return (
        np.asarray(quads, dtype=np.float64).reshape(-1, 8),
        labels,
        np.asarray(difficult, dtype=bool),
        skipped,
    )


def dota_images(folder: str | Path) -> list[LabelledImage]:
    """Every image of a DOTA folder (``images/`` + ``labelTxt/``); an image without labels is empty."""
    root = Path(folder).expanduser()
    images_dir, labels_dir = root / "images", root / "labelTxt"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise UserError(
            f"{root} is not a DOTA-format dataset: it needs an images/ folder and a labelTxt/ folder "
            "(one .txt of 'x1 y1 ... x4 y4 class difficult' lines per image)."
        )
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); check the dataset folder.")
    result = []
    for path in paths:
        label_file = labels_dir / f"{path.stem}.txt"
        text = label_file.read_text(encoding="utf-8", errors="replace") if label_file.is_file() else ""
        quads, labels, difficult, skipped = parse_dota_labels(text)
        if not label_file.is_file():
            skipped["image without a label file (kept as empty)"] += 1
        result.append(LabelledImage(path, path.stem, quads, labels, difficult, skipped))
    return result


def map_polygons_to_pixels(map_quads: np.ndarray, transform) -> np.ndarray:
    """Map-coordinate quads (N, 8) -> pixel quads through the inverse of the raster's transform
    (the full affine, or the GCP/RPC mapping RasterSource gives)."""
    from rscovlm.georef import map_to_pixel

    return map_to_pixel(np.asarray(map_quads, dtype=np.float64).reshape(-1, 8), transform)


def _geometries_to_map_quads(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Four-cornered polygons as they are; any other polygon as its minimum rotated rectangle."""
    import shapely

    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6)) & ~shapely.is_empty(geoms)
    quads = np.full((len(geoms), 8), np.nan)
    for k in np.flatnonzero(polygonal):
        geom = geoms[k]
        ring = None
        if shapely.get_type_id(geom) == 3 and shapely.get_num_interior_rings(geom) == 0:
            coords = np.asarray(geom.exterior.coords)
            if len(coords) == 5:
                ring = coords[:4]
        if ring is None:
            envelope = shapely.oriented_envelope(geom)
            if shapely.get_type_id(envelope) != 3:
                polygonal[k] = False
                continue
            ring = np.asarray(envelope.exterior.coords)[:4]
        quads[k] = ring.reshape(8)
    return quads, polygonal


def vector_image(
    raster_path: str | Path,
    vector_path: str | Path,
    class_field: str = "class",
    layer: str | None = None,
) -> LabelledImage:
    """A raster and its objects from a vector layer (GPKG/SHP/GeoJSON) in any CRS."""
    import geopandas as gpd

    from rscovlm.raster import RasterSource

    vector_path = Path(vector_path).expanduser()
    if not vector_path.exists():
        raise UserError(f"The label layer {vector_path} does not exist; check the path given to --labels.")
    try:
        gdf = gpd.read_file(vector_path, layer=layer) if layer else gpd.read_file(vector_path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the user's file
        raise UserError(f"Could not read the label layer {vector_path.name}: {exc}") from exc
    if class_field not in gdf.columns:
        fields = ", ".join(c for c in gdf.columns if c != gdf.geometry.name) or "none"
        raise UserError(
            f"The label layer {vector_path.name} has no field {class_field!r} (its fields: {fields}); "
            "name the class field with --class-field."
        )
    with RasterSource.open(raster_path) as source:
        raster_crs, transform = source.crs, source.transform
        raster_file = source.path
    skipped: Counter = Counter()
    notes: list[str] = []
    if gdf.crs is not None and raster_crs is not None:
        if not raster_crs.equals(gdf.crs):
            notes.append(f"Labels reprojected from {gdf.crs.name} to {raster_crs.name}.")
            gdf = gdf.to_crs(raster_crs)
    elif gdf.crs is not None and raster_crs is None:
        raise UserError(
            f"The label layer is in {gdf.crs.name} but the raster {raster_file.name} has no CRS, "
            "so the labels cannot be placed on it; georeference the raster first."
        )
    elif gdf.crs is None and raster_crs is not None:
        notes.append(f"The label layer {vector_path.name} has no CRS; its coordinates were read in the raster's CRS.")

    names = gdf[class_field]
    has_class = names.notna().to_numpy() & (names.astype(str).str.strip() != "").to_numpy()
    skipped["feature without a class"] += int((~has_class).sum())
    geoms = gdf.geometry.to_numpy()
    map_quads, polygonal = _geometries_to_map_quads(geoms)
    skipped["feature that is not a polygon"] += int((has_class & ~polygonal).sum())
    keep = has_class & polygonal
    quads = map_polygons_to_pixels(map_quads[keep], transform)
    labels = [normalize_class_name(v) for v in names[keep]]
    difficult = np.zeros(len(labels), dtype=bool)
    if "difficult" in gdf.columns:
        difficult = gdf["difficult"].fillna(0).astype(bool).to_numpy()[keep]
    skipped = Counter({k: v for k, v in skipped.items() if v})
    return LabelledImage(raster_file, raster_file.stem, quads, labels, difficult, skipped, notes)


def restrict_classes(image: LabelledImage, classes: Sequence[str] | None) -> LabelledImage:
    """Keep only the objects of ``classes`` (all when None); the rest are counted as skipped."""
    if not classes:
        return image
    wanted = {normalize_class_name(c) for c in classes}
    keep = np.array([label in wanted for label in image.labels], dtype=bool)
    skipped = Counter(image.skipped)
    if (~keep).any():
        skipped["object of a class not asked for"] += int((~keep).sum())
    return LabelledImage(
        image.image_path, image.name, image.quads[keep],
        [lab for lab, k in zip(image.labels, keep) if k], image.difficult[keep], skipped, image.notes,
    )
