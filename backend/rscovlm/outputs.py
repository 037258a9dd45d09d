"""Detections as GIS data: a GeoDataFrame, vector files written atomically, GeoJSON, DOTA text.

Files are written next to the target under a temporary name and moved into place with
``os.replace`` (:mod:`rscovlm.atomic`), so a crash, a full disk or a cancelled job never
leaves a half-written GeoPackage that QGIS would open as if it were complete, nor destroys
a previous result. :func:`check_output_path` says before any model loads whether an
output path can be written at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS

from rscovlm.atomic import atomic_write, atomic_write_with
from rscovlm.errors import UserError

__all__ = [
    "DETECTION_COLUMNS",
    "VECTOR_DRIVERS",
    "build_detections_gdf",
    "check_output_path",
    "vector_driver",
    "write_vector",
    "to_geojson_dict",
    "write_dota",
    "write_task1",
    "TASK1_PREFIX",
]

#: DOTA / mmrotate submission files are named Task1_<class>.txt
TASK1_PREFIX = "Task1_"

DETECTION_COLUMNS = ("class", "support", "tile", "area_m2", "score")

#: file extension -> OGR driver
VECTOR_DRIVERS = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
}

_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml")


def build_detections_gdf(
    polygons: Sequence[Any] | np.ndarray,
    labels: Sequence[str],
    support: Sequence[int] | np.ndarray,
    tiles: Sequence[str],
    area_m2: Sequence[float] | np.ndarray,
    crs: CRS | None,
    scores: Sequence[float] | np.ndarray | None = None,
) -> gpd.GeoDataFrame:
    """One row per kept detection, in the raster's CRS, with typed columns even when empty.

    ``score`` is the object's confidence in [0, 1] (:mod:`rscovlm.scores`), null where the
    engine gave no token probabilities (``scores`` None: null throughout).
    """
    n = len(labels)
    if scores is None:
        scores = np.full(n, np.nan)
    for name, values in (("polygons", polygons), ("support", support), ("tiles", tiles), ("area_m2", area_m2),
                         ("scores", scores)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} items for {n} labels")
    data = {
        "class": pd.Series(list(labels), dtype=object),
        "support": pd.Series(np.asarray(support, dtype=np.int64).reshape(-1)),
        "tile": pd.Series([str(t) for t in tiles], dtype=object),  # e.g. "c412_r824": the tile's pixel offset
        "area_m2": pd.Series(np.asarray(area_m2, dtype=np.float64).reshape(-1)),
        "score": pd.Series(np.asarray(scores, dtype=np.float64).reshape(-1)),
    }
    geometry = gpd.GeoSeries(list(polygons), crs=crs)
    return gpd.GeoDataFrame(data, geometry=geometry, crs=crs)


def vector_driver(path: Path) -> str:
    """The OGR driver for an output path, or a sentence listing the supported extensions."""
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        supported = ", ".join(sorted(VECTOR_DRIVERS))
        raise UserError(
            f"Cannot write {path.name}: the extension {path.suffix or '(none)'!r} is not a "
            f"supported vector format; use one of {supported}."
        )
    return driver


def _geometry_type(gdf: gpd.GeoDataFrame) -> str:
    """The layer's geometry type, also for an empty frame (which has none to infer from)."""
    types = set(gdf.geometry.geom_type.dropna()) if len(gdf) else set()
    if not types or types == {"Polygon"}:
        return "Polygon"
    if types <= {"Polygon", "MultiPolygon"}:
        return "MultiPolygon"
    return types.pop() if len(types) == 1 else "Unknown"


def _write_with_pyogrio(gdf: gpd.GeoDataFrame, path: Path, driver: str, layer: str) -> None:
    import warnings

    import pyogrio

    with warnings.catch_warnings():
        # A CRS-less result is deliberate (the pipeline already told the user why).
        warnings.filterwarnings("ignore", message=".*'crs' was not provided.*")
        pyogrio.write_dataframe(gdf, path, driver=driver, layer=layer, geometry_type=_geometry_type(gdf))


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, with a sentence, a vector output that could not be written; else return it.

    Meant to run before a model loads, so a typo in ``-o`` costs a second, not the
    minutes of a model load and a whole detection. Checks, in order: a supported
    extension (:func:`vector_driver`), a folder that exists and is a folder, the target
    not being a folder itself, and that the folder is writable — tested for real by
    creating and removing a temporary file there, since permission bits lie (root, ACLs,
    read-only mounts, ``/proc``).
    """
    target = Path(path)
    vector_driver(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise UserError(f"Cannot write {target}: the folder {folder} does not exist.")
    if not folder.is_dir():
        raise UserError(f"Cannot write {target}: {folder} is not a folder.")
    if target.is_dir():
        raise UserError(f"Cannot write {target}: a folder of that name is in the way.")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"Cannot write {target}: the folder {folder} is not writable ({reason.lower()}).") from exc
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return target


def write_vector(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``gdf`` to GPKG / Shapefile / GeoJSON chosen by extension, atomically.

    A Shapefile's members are moved into place sidecars first, the ``.shp`` last, and
    sidecars of an older result that this one lacks (a ``.prj``) are removed.
    """
    target = Path(path)
    driver = vector_driver(target)
    layer = target.stem

    def write(staged: Path) -> None:
        try:
            _write_with_pyogrio(gdf, staged, driver, layer)
        except UserError:
            raise
        except Exception as exc:  # GDAL/OGR errors come in many types
            raise UserError(f"Could not write {target}: {exc}.") from exc

    companions = _SHAPEFILE_SIDECARS if driver == "ESRI Shapefile" else ()
    return atomic_write_with(target, write, companions=companions)


def crs_urn(crs: CRS) -> str:
    """OGC URN naming the CRS (``urn:ogc:def:crs:EPSG::32633``), or its name without a code."""
    authority = crs.to_authority()
    if authority is None:
        epsg = crs.to_epsg()
        authority = ("EPSG", str(epsg)) if epsg is not None else None
    if authority is None:
        return crs.name
    return f"urn:ogc:def:crs:{authority[0]}::{authority[1]}"


def to_geojson_dict(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    """A FeatureCollection dict in the frame's own CRS, named in ``crs`` and given in ``crs_wkt``."""
    collection = json.loads(gdf.to_json(na="null", drop_id=True))
    collection.pop("crs", None)
    crs = CRS.from_user_input(gdf.crs) if gdf.crs is not None else None
    if crs is None:
        collection["crs"] = None
        collection["crs_wkt"] = None
    else:
        collection["crs"] = {"type": "name", "properties": {"name": crs_urn(crs)}}
        collection["crs_wkt"] = crs.to_wkt()
    return collection


def dota_class_name(name: str) -> str:
    """DOTA files separate fields by spaces, so class names use hyphens ("small-vehicle")."""
    return "-".join(str(name).strip().split())


def write_dota(
    path: str | os.PathLike[str],
    quads_img: np.ndarray,
    labels: Sequence[str],
    difficult: Sequence[int] | None = None,
) -> Path:
    """DOTA label text in image pixels: ``x1 y1 ... x4 y4 class difficult`` per line (no scores: see write_task1)."""
    quads = np.asarray(quads_img, dtype=np.float64).reshape(-1, 8)
    if len(quads) != len(labels):
        raise ValueError(f"{len(quads)} quads for {len(labels)} labels")
    flags = [0] * len(labels) if difficult is None else [int(d) for d in difficult]
    lines = [f"{_coordinates(quad)} {dota_class_name(label)} {flag}\n" for quad, label, flag in zip(quads, labels, flags)]
    target = Path(path)
    atomic_write(target, "".join(lines), newline="\n")
    return target


def _coordinates(quad: np.ndarray) -> str:
    return " ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in quad)


def write_task1(
    folder: str | os.PathLike[str],
    image_id: str,
    quads_img: np.ndarray,
    labels: Sequence[str],
    scores: Sequence[float] | np.ndarray | None,
    classes: Sequence[str],
) -> tuple[list[Path], str | None]:
    """DOTA Task-1 submission files: ``Task1_<class>.txt`` of ``image score x1 y1 ... x4 y4`` lines.

    One file per class asked for (empty when none was found, as the evaluation server
    expects), in image pixels. Objects without a score are written with score 1.0, and the
    returned sentence says so (their order then ranks nothing); else it is None.
    """
    target = Path(folder)
    if not target.is_dir():
        raise UserError(f"Cannot write DOTA Task-1 files into {target}: it is not an existing folder.")
    quads = np.asarray(quads_img, dtype=np.float64).reshape(-1, 8)
    values = np.full(len(labels), np.nan) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (len(quads) == len(labels) == len(values)):
        raise ValueError(f"{len(quads)} quads, {len(labels)} labels and {len(values)} scores")
    image = "_".join(str(image_id).split())  # fields are separated by spaces
    unscored = int(np.isnan(values).sum())
    lines: dict[str, list[str]] = {dota_class_name(c): [] for c in classes}
    for quad, label, score in zip(quads, labels, values):
        value = 1.0 if np.isnan(score) else float(score)
        lines.setdefault(dota_class_name(label), []).append(f"{image} {value:.6f} {_coordinates(quad)}\n")
    written = [atomic_write(target / f"{TASK1_PREFIX}{name}.txt", "".join(rows), newline="\n")
               for name, rows in lines.items()]
    note = None
    if unscored:
        note = (f"{unscored} of {len(labels)} objects have no score (the engine gave no token probabilities), so "
                "the Task-1 files give them score 1.0 and their order ranks nothing: judge them by mAP_nc "
                "(rscovlm evaluate) rather than by AP.")
    return written, note
