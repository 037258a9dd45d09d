"""Detections as GIS data: a GeoDataFrame, vector files written atomically, GeoJSON, DOTA text.

Files are written next to the target under a temporary name and moved into place with
``os.replace``, so a crash, a full disk or a cancelled job never leaves a half-written
GeoPackage that QGIS would open as if it were complete, nor destroys a previous result.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS

from rscovlm.errors import UserError

__all__ = [
    "DETECTION_COLUMNS",
    "VECTOR_DRIVERS",
    "build_detections_gdf",
    "write_vector",
    "to_geojson_dict",
    "write_dota",
]

DETECTION_COLUMNS = ("class", "support", "tile", "area_m2")

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
) -> gpd.GeoDataFrame:
    """One row per kept detection, in the raster's CRS, with typed columns even when empty."""
    n = len(labels)
    for name, values in (("polygons", polygons), ("support", support), ("tiles", tiles), ("area_m2", area_m2)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} items for {n} labels")
    data = {
        "class": pd.Series(list(labels), dtype=object),
        "support": pd.Series(np.asarray(support, dtype=np.int64).reshape(-1)),
        "tile": pd.Series([str(t) for t in tiles], dtype=object),  # e.g. "c412_r824": the tile's pixel offset
        "area_m2": pd.Series(np.asarray(area_m2, dtype=np.float64).reshape(-1)),
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


def write_vector(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``gdf`` to GPKG / Shapefile / GeoJSON chosen by extension, atomically."""
    target = Path(path)
    driver = vector_driver(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"Cannot write {target}: the folder {folder} does not exist.")
    layer = target.stem
    staging = Path(tempfile.mkdtemp(prefix=f".{layer}.", suffix=".tmp", dir=folder))
    try:
        staged = staging / target.name
        try:
            _write_with_pyogrio(gdf, staged, driver, layer)
        except UserError:
            raise
        except Exception as exc:  # GDAL/OGR errors come in many types
            raise UserError(f"Could not write {target}: {exc}.") from exc
        if driver == "ESRI Shapefile":
            _replace_shapefile(staged, target)
        else:
            os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_shapefile(staged: Path, target: Path) -> None:
    """Move every member of the staged shapefile into place; drop stale sidecars."""
    stem_staged = staged.with_suffix("")
    stem_target = target.with_suffix("")
    produced = {s for s in _SHAPEFILE_SIDECARS if Path(f"{stem_staged}{s}").exists()}
    for suffix in _SHAPEFILE_SIDECARS:  # a .prj from an older run must not outlive it
        old = Path(f"{stem_target}{suffix}")
        if suffix not in produced and old.exists():
            old.unlink()
    for suffix in sorted(produced):
        os.replace(f"{stem_staged}{suffix}", f"{stem_target}{suffix}")
    os.replace(staged, target)  # the .shp last: a reader never sees it before its sidecars


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


def _atomic_write_text(path: Path, text: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"Cannot write {path}: the folder {folder} does not exist.")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def dota_class_name(name: str) -> str:
    """DOTA files separate fields by spaces, so class names use hyphens ("small-vehicle")."""
    return "-".join(str(name).strip().split())


def write_dota(
    path: str | os.PathLike[str],
    quads_img: np.ndarray,
    labels: Sequence[str],
    difficult: Sequence[int] | None = None,
) -> Path:
    """DOTA Task-1 label text in image pixels: ``x1 y1 ... x4 y4 class difficult`` per line."""
    quads = np.asarray(quads_img, dtype=np.float64).reshape(-1, 8)
    if len(quads) != len(labels):
        raise ValueError(f"{len(quads)} quads for {len(labels)} labels")
    flags = [0] * len(labels) if difficult is None else [int(d) for d in difficult]
    lines = []
    for quad, label, flag in zip(quads, labels, flags):
        coords = " ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in quad)
        lines.append(f"{coords} {dota_class_name(label)} {flag}\n")
    target = Path(path)
    _atomic_write_text(target, "".join(lines))
    return target
