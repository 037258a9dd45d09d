"""Many rasters in one run: which files, one engine, one failure never stops the others.

A user's job is a folder of orthophotos or a list of scenes. Each raster goes through
:func:`rscovlm.pipelines.detect.detect` with the engine loaded once; a raster that
cannot be read is reported with its sentence and the run goes on. The results can be
written one file per raster, or combined into one layer with a ``source`` field (in the
first raster's CRS; others are reprojected, and that is said).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

#: Files a folder is searched for (GDAL reads more; name them one by one to use others).
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg")


def expand_rasters(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders as the rasters directly inside them (sorted), duplicates once."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
            if not inside:
                raise UserError(
                    f"The folder {path} holds no rasters ({', '.join(RASTER_SUFFIXES)}); name the files instead."
                )
            found.extend(inside)
        else:
            found.append(path)  # a missing or unreadable file is reported when its turn comes
    unique = list(dict.fromkeys(p.resolve() if p.exists() else p for p in found))
    if not unique:
        raise UserError("No raster was given: name at least one raster file or folder.")
    return unique


def responses_name(raster: Path) -> str:
    """A responses file name for one raster of many: its stem and a short hash of its path."""
    digest = hashlib.sha1(str(raster).encode("utf-8")).hexdigest()[:8]
    return f"{raster.stem}-{digest}.jsonl"


@dataclass
class RasterOutcome:
    """One raster of a batch: its result, or the sentence that explains why there is none."""

    raster: Path
    result: object | None = None  # DetectionResult
    error: str | None = None
    responses_path: Path | None = None


@dataclass
class BatchPlan:
    """What a batch will ask for before any model runs: tiles per raster, and the bad ones."""

    rasters: list[Path]
    tiles: dict[Path, int] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)

    @property
    def total_tiles(self) -> int:
        return sum(self.tiles.values())


def plan_batch(rasters: list[Path], options) -> BatchPlan:
    """Open every raster and plan its tiles; a raster that fails is noted, not fatal."""
    from ..raster import RasterSource
    from .detect import plan_windows

    plan = BatchPlan(rasters)
    for raster in rasters:
        try:
            with RasterSource.open(raster, bands=options.bands) as source:
                plan.tiles[raster] = len(plan_windows(source, options))
        except UserError as exc:
            plan.errors[raster] = str(exc)
    return plan


def detect_many(
    plan: BatchPlan,
    engine,
    options,
    *,
    responses_dir: Path | None = None,
    resume: bool = False,
    progress: Callable[[Path, int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Iterator[RasterOutcome]:
    """Detect on each planned raster in turn, yielding an outcome per raster (failures included)."""
    from .detect import detect

    for raster in plan.rasters:
        if raster in plan.errors:
            yield RasterOutcome(raster, error=plan.errors[raster])
            continue
        responses = responses_dir / responses_name(raster) if responses_dir else None
        try:
            result = detect(
                raster, engine, options,
                progress=(lambda done, total, r=raster: progress(r, done, total)) if progress else None,
                should_cancel=should_cancel, responses_out=responses, resume=resume and bool(responses),
            )
        except UserError as exc:
            yield RasterOutcome(raster, error=str(exc), responses_path=responses)
            continue
        yield RasterOutcome(raster, result=result, responses_path=responses)


def combine(outcomes: list[RasterOutcome]):
    """One GeoDataFrame of every result with a ``source`` column, in the first raster's CRS.

    Returns ``(gdf, notes)``. Rasters in another CRS are reprojected (said in the notes);
    a raster without a CRS cannot join georeferenced ones and raises a UserError.
    """
    import geopandas as gpd
    import pandas as pd

    done = [o for o in outcomes if o.result is not None]
    if not done:
        raise UserError("No raster gave a result, so there is nothing to write.")
    crs = next((o.result.gdf.crs for o in done if o.result.gdf.crs is not None), None)
    frames, notes = [], []
    for outcome in done:
        gdf = outcome.result.gdf
        if crs is not None and gdf.crs is None:
            raise UserError(
                f"{outcome.raster.name} has no CRS, so its polygons cannot join the others' in one layer; "
                "write one file per raster instead (give a folder as --output)."
            )
        if crs is not None and gdf.crs != crs:
            notes.append(f"{outcome.raster.name}'s detections were reprojected from {gdf.crs.to_string()} "
                         f"to {crs.to_string()} to share one layer.")
            gdf = gdf.to_crs(crs)
        frames.append(gdf.assign(source=str(outcome.raster)))
    merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=crs)
    return merged, notes
